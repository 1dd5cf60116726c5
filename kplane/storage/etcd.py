"""etcd v3 backend for the Store protocol: the distributed backend.

Client: etcd's own v3 JSON gateway (``/v3/kv/range|put|txn|deleterange|compaction``
and the ``/v3/watch`` stream, base64 keys and values), spoken by the small HTTP/1.1
client in etcd_http.py. No gRPC or protobuf dependency, asyncio native, and the
gateway is part of every etcd v3 server (3.4 and later serve it under /v3/). The
long-popular ``etcd3`` package is unmaintained and breaks with protobuf >= 4; the
other Python clients are either thread-based wrappers of it or unmaintained too.

Layout: kube-apiserver's. The registry builds keys ``/registry/<resource>/...``;
they are stored under ``--etcd-prefix`` (default ``/registry``) by replacing the
``root`` (``/registry``) with the prefix, so with the defaults a key is stored
as is and ``etcdctl get --prefix /registry/configmaps`` shows kplane's objects.
Values are the registry's JSON; resourceVersion is etcd's mod_revision.

Writes are single transactions: create = ``txn(create_revision == 0 → put)``,
update = ``txn(mod_revision == expected → put, else get)`` (the failure branch
returns the actual revision for the conflict error), delete likewise.

Watch: one etcd watch per store covers the whole prefix (started at open, resumed
after a disconnect from the last revision it delivered). Its events are fanned
out to every ``watch()`` by key prefix, exactly like SQLiteStore's mailboxes, and
the most recent ones are kept in a bounded in-memory log, so a watch from a
recent revision replays locally. A watch from before that log opens its own
etcd watch (etcd replays the history or reports the compaction).

Progress (the extension the watch cache uses to make ``wait_until_fresh`` work
across prefixes, see SQLiteStore): because the one etcd watch sees every write
under the prefix in revision order, its position is exact and
``Progress(position)`` is always true. ``request_progress()`` moves the position
to etcd's current revision (which may belong to writes outside the prefix, e.g.
kube's ``compact_rev_key``) with an etcd progress request on that watch. etcd
before 3.4.25/3.5.8 may send a progress response ahead of events already queued
for the stream (etcd-io/etcd#15220); a second progress round trip after the
first flushes them, so the first response's revision is only used after it.

Leases: keys under configured prefixes (events, by default for 1 h like kube-apiserver's
``--event-ttl``) are written with an etcd lease, shared by the writes of one minute, so etcd
deletes them (and the watch reports DELETED) when it expires.

Errors: etcd unreachable, timed out or without a leader → UnavailableError (the API answers
503); a compacted revision → CompactedError (410); a future one → FutureRevisionError.

Compaction: ``compact()`` compacts etcd; ``start_compactor(interval)`` runs
kube-apiserver's compactor (each interval, compact to the revision seen one
interval earlier, coordinated across replicas through ``compact_rev_key``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from kplane.aio import cancel_and_wait, wait_for
from kplane.storage.etcd_http import EtcdError, EtcdHTTP, WatchStream, tls_context
from kplane.storage.interface import (
    KV,
    CompactedError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    ListResult,
    Progress,
    RevisionConflictError,
    StorageError,
    StoreClosedError,
    UnavailableError,
)
from kplane.storage.mailbox import CLOSED, RESYNC, Mailbox

log = logging.getLogger(__name__)

COMPACT_REV_KEY = "compact_rev_key"  # kube-apiserver's compaction coordination key (outside the prefix)

_UNAVAILABLE_CODES = {4, 14}  # gRPC DeadlineExceeded, Unavailable
_PROGRESS_TIMEOUT = 2.0



def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _unb64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def _prefix_end(prefix: bytes) -> bytes:
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # etcd: range_end "\0" means every key >= key


class _Lost:
    """Mailbox marker: the store's watch lost history (compacted while disconnected)."""

    def __init__(self, compacted: int):
        self.compacted = compacted


class EtcdStore:
    """Store on an etcd v3 cluster. See the module docstring for the design."""

    def __init__(self, client: EtcdHTTP, *, prefix: str = "/registry", root: str = "/registry",
                 history_limit: int = 10_000, watch_queue_limit: int = 10_000,
                 lease_ttls: dict[str, int] | None = None, lease_reuse: float = 60.0):
        self._http = client
        self._prefix = prefix.rstrip("/")
        self._root = root.rstrip("/")
        self._history_limit = history_limit
        self._watch_queue_limit = watch_queue_limit
        pfx = (self._prefix + "/").encode()
        self._range = (_b64(pfx), _b64(_prefix_end(pfx)))
        self._nokey = _b64(self._prefix.encode() + b"\0")  # a key that never exists
        self._seen_rev = 0  # newest revision seen in any response
        self._compacted = 0  # newest compaction known to this client
        # The store's watch: position, recent history, subscribers.
        self._dispatched = 0  # every event under the prefix up to here has been dispatched
        self._floor = 0  # the log holds every event with revision > _floor
        self._log: deque[Event] = deque()
        self._mailboxes: set[Mailbox] = set()
        self._stream: WatchStream | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._stream_up = asyncio.Event()
        self._progress_waiters: deque[asyncio.Future[int]] = deque()
        self._progress_lock = asyncio.Lock()
        self._compactor: asyncio.Task[None] | None = None
        self._closed = False
        # Keys under these (logical) prefixes get an etcd lease of that many seconds, like
        # kube-apiserver's --event-ttl for events; one lease is shared for `lease_reuse` seconds.
        self._lease_ttls = dict(lease_ttls or {})
        self._lease_reuse = lease_reuse
        self._leases: dict[int, tuple[str, float]] = {}  # ttl -> (lease id, expiry on the monotonic clock)

    # -- keys -----------------------------------------------------------------

    def _ekey(self, key: str) -> str:
        if not key.startswith(self._root + "/") and self._root:
            raise ValueError(f"key {key!r} is not under {self._root}/")
        return self._prefix + key[len(self._root):]

    def _lkey(self, ekey: bytes) -> str:
        return self._root + ekey.decode()[len(self._prefix):]

    def _kv(self, d: dict[str, Any]) -> KV:
        return KV(self._lkey(_unb64(d["key"])), _unb64(d.get("value")), int(d.get("create_revision", 0)),
                  int(d.get("mod_revision", 0)))

    # -- requests ---------------------------------------------------------------

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._closed:
            raise StoreClosedError()
        try:
            resp = await self._http.call(path, body)
        except EtcdError as e:
            if e.code in _UNAVAILABLE_CODES or e.http_status in (502, 503, 504):
                raise UnavailableError(f"etcd: {e.message}") from None
            raise
        rev = int(resp.get("header", {}).get("revision", 0))
        if rev > self._seen_rev:
            self._seen_rev = rev
        return resp

    async def _txn(self, compare: list[dict], success: list[dict], failure: list[dict]
                   ) -> tuple[bool, int, list[dict]]:
        resp = await self._call("/v3/kv/txn", {"compare": compare, "success": success, "failure": failure})
        return bool(resp.get("succeeded")), int(resp["header"]["revision"]), resp.get("responses", [])

    async def _lease_for(self, key: str) -> str | None:
        ttl = next((t for p, t in self._lease_ttls.items() if key.startswith(p)), None)
        if ttl is None:
            return None
        now = time.monotonic()
        held = self._leases.get(ttl)
        if held is not None and held[1] - now > ttl:
            return held[0]
        # Upstream's lease manager: one lease serves the writes of a window of min(60 s, 5% of
        # the TTL), so an object outlives its TTL by at most that (not a minute on a 10 s TTL).
        reuse = min(self._lease_reuse, int(ttl * 0.05))
        resp = await self._call("/v3/lease/grant", {"TTL": int(ttl + reuse)})
        lease = str(resp["ID"])
        self._leases[ttl] = (lease, now + int(resp.get("TTL", ttl + reuse)))
        return lease

    async def _put_op(self, key: str, k: str, value: bytes, prev_kv: bool = False) -> dict[str, Any]:
        op: dict[str, Any] = {"key": k, "value": _b64(bytes(value))}
        if prev_kv:
            op["prev_kv"] = True
        lease = await self._lease_for(key)
        if lease is not None:
            op["lease"] = lease
        return {"request_put": op}

    async def start(self) -> None:
        """Check that etcd answers and start the store's watch from the current revision."""
        rev = await self.current_revision()
        self._dispatched = self._floor = rev
        self._stream_task = asyncio.create_task(self._follow(), name="etcd watch")
        try:
            await wait_for(self._stream_up.wait(), 10)
        except TimeoutError:
            log.warning("msg=%r", "etcd watch not established yet; continuing")

    # -- Store ------------------------------------------------------------------

    async def get(self, key: str) -> KV | None:
        resp = await self._call("/v3/kv/range", {"key": _b64(self._ekey(key))})
        kvs = resp.get("kvs")
        return self._kv(kvs[0]) if kvs else None

    async def list(self, prefix: str, *, revision: int = 0, start_after: str | None = None,
                   limit: int = 0) -> ListResult:
        ep = self._ekey(prefix).encode()
        start = ep if start_after is None else max(ep, self._ekey(start_after).encode() + b"\0")
        body: dict[str, Any] = {"key": _b64(start), "range_end": _b64(_prefix_end(ep))}
        if revision:
            body["revision"] = revision
        if limit:
            body["limit"] = limit
        try:
            resp = await self._call("/v3/kv/range", body)
        except EtcdError as e:
            raise await self._revision_error(e, revision) from None
        items = [self._kv(d) for d in resp.get("kvs", ())]
        more = bool(resp.get("more"))
        # etcd counts every key in the range, whatever the limit.
        remaining = int(resp.get("count") or 0) - len(items) if more else 0
        return ListResult(items, revision or int(resp["header"]["revision"]), more, remaining)

    async def _revision_error(self, e: EtcdError, revision: int) -> StorageError:
        if "compacted" in e.message:
            return CompactedError(revision, await self.compacted_revision())
        if "future revision" in e.message:
            return FutureRevisionError(revision, await self.current_revision())
        return e

    async def create(self, key: str, value: bytes) -> KV:
        k = _b64(self._ekey(key))
        ok, rev, _ = await self._txn(
            [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": 0}],
            [await self._put_op(key, k, value)], [])
        if not ok:
            raise KeyExistsError(key)
        return KV(key, bytes(value), rev, rev)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KV:
        k = _b64(self._ekey(key))
        ok, rev, responses = await self._txn(
            [self._precondition(k, expected_revision)],
            [await self._put_op(key, k, value, prev_kv=True)],
            [{"request_range": {"key": k}}])
        if not ok:
            raise self._failed(key, expected_revision, responses)
        prev = responses[0]["response_put"].get("prev_kv")
        if prev is None:  # deleted between the compare and the put: impossible in one txn
            raise StorageError(f"etcd put of {key} returned no previous value")
        return KV(key, bytes(value), int(prev["create_revision"]), rev)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KV:
        k = _b64(self._ekey(key))
        ok, rev, responses = await self._txn(
            [self._precondition(k, expected_revision)],
            [{"request_delete_range": {"key": k, "prev_kv": True}}],
            [{"request_range": {"key": k}}])
        if not ok:
            raise self._failed(key, expected_revision, responses)
        prev = self._kv(responses[0]["response_delete_range"]["prev_kvs"][0])
        return KV(key, prev.value, prev.create_revision, rev)

    @staticmethod
    def _precondition(k: str, expected_revision: int) -> dict[str, Any]:
        if expected_revision:
            return {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": expected_revision}
        return {"key": k, "target": "CREATE", "result": "GREATER", "create_revision": 0}

    @staticmethod
    def _failed(key: str, expected: int, responses: list[dict]) -> StorageError:
        kvs = responses[0]["response_range"].get("kvs") if responses else None
        if not kvs:
            return KeyNotFoundError(key)
        return RevisionConflictError(key, expected, int(kvs[0]["mod_revision"]))

    async def current_revision(self) -> int:
        # Any range answers with the current revision in its header; this key never exists.
        resp = await self._call("/v3/kv/range", {"key": self._nokey, "count_only": True})
        return int(resp["header"]["revision"])

    async def compacted_revision(self) -> int:
        """etcd does not report it directly: the oldest revision a range can still read."""
        current = await self.current_revision()
        key = self._nokey

        async def readable(rev: int) -> bool:
            try:
                await self._call("/v3/kv/range", {"key": key, "count_only": True, "revision": rev})
                return True
            except EtcdError as e:
                if "compacted" in e.message:
                    return False
                raise

        c = self._compacted
        if c > 1 and await readable(c) and not await readable(c - 1):
            return c  # still the one we know of
        if await readable(1):
            return 0
        lo, hi = 1, current  # invariant: lo unreadable, hi readable
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if await readable(mid):
                hi = mid
            else:
                lo = mid
        self._compacted = hi
        return hi

    async def compact(self, revision: int) -> None:
        if revision <= self._compacted:
            return
        try:
            await self._call("/v3/kv/compaction", {"revision": revision})
        except EtcdError as e:
            if "compacted" in e.message:
                return  # someone compacted further already
            if "future revision" in e.message:
                raise FutureRevisionError(revision, await self.current_revision()) from None
            raise
        self._compacted = max(self._compacted, revision)

    def watch(self, prefix: str, from_revision: int, *, progress_notify: bool = False
              ) -> AsyncIterator[Event]:
        return _Watch(self, prefix, from_revision, progress_notify)

    async def request_progress(self) -> None:
        """Send Progress(revision) to every progress_notify watcher, with revision at least
        the newest revision this client has seen when the watch can confirm it."""
        target = self._seen_rev
        if self._dispatched < target:
            async with self._progress_lock:
                if self._dispatched < target:
                    try:
                        await self._progress_round()
                    except (TimeoutError, StorageError, OSError) as e:
                        log.debug("msg=%r error=%r", "etcd progress request failed", str(e))
        rev = self._dispatched
        for box in tuple(self._mailboxes):
            if box.progress:
                box.push(Progress(rev))

    async def _progress_round(self) -> None:
        first = await self._ask_progress()
        await self._ask_progress()  # flushes events etcd < 3.4.25 may queue behind the first answer
        self._advance(first)

    async def _ask_progress(self) -> int:
        stream = self._stream
        if stream is None:
            raise UnavailableError("etcd watch is not connected")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._progress_waiters.append(fut)
        try:
            await stream.send({"progress_request": {}})
            return await wait_for(asyncio.shield(fut), _PROGRESS_TIMEOUT)
        finally:
            if not fut.done():
                fut.cancel()
            try:
                self._progress_waiters.remove(fut)
            except ValueError:
                pass

    async def check(self) -> None:
        """The /readyz etcd check: etcd answers a read and the store's watch is connected."""
        await wait_for(self.current_revision(), 2.0)
        if self._stream is None:
            raise UnavailableError("etcd watch is not connected")

    def start_compactor(self, interval: float) -> None:
        if interval > 0 and self._compactor is None:
            self._compactor = asyncio.create_task(self._compact_loop(interval), name="etcd compactor")

    async def _compact_loop(self, interval: float) -> None:
        """kube-apiserver's compactor (storage/etcd3/compact.go), coordinated through compact_rev_key."""
        version, rev = 0, 0
        key = _b64(COMPACT_REV_KEY)
        while True:
            await asyncio.sleep(interval)
            try:
                ok, cur, responses = await self._txn(
                    [{"key": key, "target": "VERSION", "result": "EQUAL", "version": version}],
                    [{"request_put": {"key": key, "value": _b64(str(rev))}}],
                    [{"request_range": {"key": key}}])
                if not ok:
                    kvs = responses[0]["response_range"].get("kvs") or [{}]
                    version = int(kvs[0].get("version", 0))
                else:
                    version += 1
                    if rev:
                        await self.compact(rev)
                        log.info("msg=%r revision=%d", "etcd compacted", rev)
                rev = cur
            except StorageError as e:
                log.warning("msg=%r error=%r", "etcd compaction failed", str(e))
            except Exception:
                log.exception("msg=%r", "etcd compactor error")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait([self._compactor, self._stream_task])
        for box in tuple(self._mailboxes):
            box.push(CLOSED)
        self._mailboxes.clear()
        await self._http.close()

    # -- the store's watch --------------------------------------------------------

    async def _follow(self) -> None:
        delay = 0.05
        while not self._closed:
            stream: WatchStream | None = None
            try:
                key, end = self._range
                stream = await self._http.open_watch({"create_request": {
                    "key": key, "range_end": end, "prev_kv": True, "start_revision": self._dispatched + 1}})
                while True:
                    res = await stream.recv()
                    if res.get("compact_revision"):
                        compacted = int(res["compact_revision"])
                        self._lose_history(compacted)
                        self._restart_at(compacted)
                        break
                    if res.get("canceled"):
                        raise ConnectionResetError(str(res.get("cancel_reason", "watch canceled")))
                    if res.get("created"):
                        self._stream = stream
                        self._stream_up.set()
                        delay = 0.05
                        log.info("msg=%r endpoint=%s revision=%d", "etcd watch established",
                                 stream.endpoint, self._dispatched)
                        continue
                    events = res.get("events")
                    if events:
                        for ev in events:
                            self._dispatch(self._event(ev))
                    else:
                        self._progress_response(int(res["header"]["revision"]))
            except asyncio.CancelledError:
                raise
            except (StorageError, OSError, EOFError, asyncio.IncompleteReadError, ValueError, KeyError) as e:
                if not self._closed:
                    log.warning("msg=%r error=%r retry_in=%.2f", "etcd watch failed", str(e), delay)
            finally:
                self._stream = None
                self._stream_up.clear()
                for fut in self._progress_waiters:
                    if not fut.done():
                        fut.set_exception(UnavailableError("etcd watch disconnected"))
                if stream is not None:
                    stream.close()
            if not self._closed:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _event(self, ev: dict[str, Any]) -> Event:
        kv = self._kv(ev["kv"])
        prev = self._kv(ev["prev_kv"]) if ev.get("prev_kv") else None
        if ev.get("type") == "DELETE":
            if prev is None:
                return Event("DELETED", KV(kv.key, b"", 0, kv.mod_revision))
            return Event("DELETED", KV(kv.key, prev.value, prev.create_revision, kv.mod_revision), prev)
        if kv.create_revision == kv.mod_revision:
            return Event("ADDED", kv)
        return Event("MODIFIED", kv, prev)

    def _dispatch(self, event: Event) -> None:
        rev = event.revision
        if rev < self._dispatched:
            log.warning("msg=%r revision=%d position=%d", "etcd event older than the watch position", rev,
                        self._dispatched)
            return
        self._log.append(event)
        if len(self._log) > self._history_limit:
            self._floor = self._log.popleft().revision
        self._dispatched = rev
        if rev > self._seen_rev:
            self._seen_rev = rev
        key = event.kv.key
        for box in tuple(self._mailboxes):
            if key.startswith(box.prefix):
                box.push(event)

    def _advance(self, revision: int) -> None:
        if revision > self._dispatched:
            self._dispatched = revision
            if not self._log:
                self._floor = max(self._floor, revision)

    def _progress_response(self, revision: int) -> None:
        while self._progress_waiters:
            fut = self._progress_waiters.popleft()
            if not fut.done():
                fut.set_result(revision)
                return

    def _lose_history(self, compacted: int) -> None:
        log.warning("msg=%r from=%d compacted=%d", "etcd watch history compacted while disconnected",
                    self._dispatched, compacted)
        self._compacted = max(self._compacted, compacted)
        for box in tuple(self._mailboxes):
            box.push(_Lost(compacted))

    def _restart_at(self, compacted: int) -> None:
        """Follow on from the oldest revision etcd still has. The watchers that needed the lost
        events were told to relist; one opened since then must still see every later event,
        so the stream resumes at `compacted` rather than at the current revision (a write
        between the two would be missed)."""
        self._log.clear()
        self._dispatched = self._floor = compacted - 1


async def open_etcd_store(servers: list[str], *, prefix: str = "/registry", cafile: str | None = None,
                          certfile: str | None = None, keyfile: str | None = None,
                          root: str = "/registry", request_timeout: float = 10.0, event_ttl: int = 3600,
                          **kwargs: Any) -> EtcdStore:
    """Connect to etcd (UnavailableError if no server answers) and start the store's watch.

    Events (keys under <root>/events/) expire after `event_ttl` seconds through an etcd
    lease, like kube-apiserver's --event-ttl (default 1h); 0 keeps them forever."""
    if event_ttl and "lease_ttls" not in kwargs:
        kwargs["lease_ttls"] = {root.rstrip("/") + "/events/": event_ttl}
    ctx = tls_context(cafile, certfile, keyfile) if (cafile or certfile) else None
    client = EtcdHTTP(servers, ssl_context=ctx, timeout=request_timeout)
    store = EtcdStore(client, prefix=prefix, root=root, **kwargs)
    deadline = time.monotonic() + request_timeout
    while True:
        try:
            await store.start()
            return store
        except UnavailableError:
            if time.monotonic() >= deadline:
                await store.close()
                raise
            await asyncio.sleep(0.2)


class _Watch:
    """One watch: local history replay then the live mailbox, or an own etcd watch
    for history older than the store's log."""

    def __init__(self, store: EtcdStore, prefix: str, from_revision: int, progress: bool):
        self._store = store
        self._box = Mailbox(prefix, progress, store._watch_queue_limit, keep=(_Lost,))
        self._pending: deque[Any] = deque()
        self._started = False
        self._done = store._closed
        if not self._done:
            store._mailboxes.add(self._box)
        # "From now": after every revision this client has seen (a write it made may not
        # have come back through the store's watch yet).
        self._from = from_revision or max(store._dispatched, store._seen_rev)
        self._explicit = from_revision != 0
        self._last = self._from
        self._catch_up = self._from < store._dispatched
        self._remote: asyncio.Task[None] | None = None
        self._rbox = self._box

    def __aiter__(self) -> _Watch:
        return self

    async def __anext__(self) -> Event:
        store = self._store
        if not self._started:
            self._started = True
            if not self._done and self._explicit and self._from < store._compacted:
                self._finish()
                raise CompactedError(self._from, store._compacted)
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._done:
                raise StopAsyncIteration
            if self._catch_up:
                await self._replay()
                continue
            if self._remote is not None:
                await self._next_remote()
                continue
            item = await self._box.pop()
            if item is CLOSED:
                self._finish()
            elif item is RESYNC:
                self._catch_up = True
            elif isinstance(item, _Lost):
                self._finish()
                raise CompactedError(self._last, item.compacted)
            elif item.revision > self._last:
                self._last = item.revision
                return item

    async def _replay(self) -> None:
        store = self._store
        self._drop_remote()
        if self._last >= store._floor:
            prefix, last = self._box.prefix, self._last
            self._pending.extend(e for e in store._log if e.revision > last and e.kv.key.startswith(prefix))
            self._catch_up = False
            top = store._dispatched
            if self._box.progress and (not self._pending or self._pending[-1].revision < top):
                self._pending.append(Progress(top))
            self._last = max(top, last)
            return
        # Older than the log: etcd replays it on a watch of our own, read by a task so
        # that a cancelled __anext__ never leaves a half-read response behind.
        self._rbox = Mailbox(self._box.prefix, False, 1 << 62, keep=(_Lost,))
        self._remote = asyncio.create_task(
            self._read_remote(store, self._rbox, self._last), name="etcd history watch")
        self._catch_up = False

    @staticmethod
    async def _read_remote(store: EtcdStore, box: Mailbox, after: int) -> None:
        # A static method: the task must not keep an abandoned _Watch alive.
        stream: WatchStream | None = None
        try:
            ek = store._ekey(box.prefix).encode()
            stream = await store._http.open_watch({"create_request": {
                "key": _b64(ek), "range_end": _b64(_prefix_end(ek)), "start_revision": after + 1,
                "prev_kv": True}})
            while True:
                res = await stream.recv()
                if res.get("compact_revision"):
                    box.push(_Lost(int(res["compact_revision"])))
                    return
                if res.get("canceled"):
                    raise ConnectionResetError(str(res.get("cancel_reason", "watch canceled")))
                for ev in res.get("events", ()):
                    box.push(store._event(ev))
        except asyncio.CancelledError:
            raise
        except (OSError, EOFError, asyncio.IncompleteReadError, StorageError, ValueError, KeyError) as e:
            log.info("msg=%r error=%r", "etcd history watch failed, retrying", str(e))
            await asyncio.sleep(0.1)
            box.push(RESYNC)  # resume from the last yielded revision
        finally:
            if stream is not None:
                stream.close()

    async def _next_remote(self) -> None:
        item = await self._rbox.pop()
        if item is RESYNC:
            self._catch_up = True
        elif isinstance(item, _Lost):
            self._finish()
            raise CompactedError(self._last, item.compacted)
        elif item.revision > self._last:
            self._last = item.revision
            self._pending.append(item)
            if self._last >= self._store._floor:
                self._drop_remote()  # the store's log continues from here: leave etcd's watch
                self._catch_up = True

    def _drop_remote(self) -> None:
        if self._remote is not None:
            self._remote.cancel()
            self._remote = None

    def _finish(self) -> None:
        self._done = True
        self._pending.clear()
        self._drop_remote()
        self._store._mailboxes.discard(self._box)

    async def aclose(self) -> None:
        self._finish()

    def __del__(self) -> None:
        store = getattr(self, "_store", None)
        if store is not None:
            store._mailboxes.discard(self._box)
            remote = getattr(self, "_remote", None)
            if remote is not None:
                remote.cancel()
