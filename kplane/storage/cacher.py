"""Watch cache for one resource prefix (like k8s.io/apiserver/pkg/storage/cacher).

A `Cacher` lists the store once, then follows the store's watch from the list
revision (a reflector). It keeps:

- every current object under the prefix, as (KV, decoded dict), with the keys
  kept sorted so `list` can page by key without sorting;
- `revision`: the newest revision the cache has seen. It advances with every
  event under the prefix and, when the backend offers progress notifications
  (see SQLiteStore.request_progress), also with writes elsewhere; that is how
  `wait_until_fresh` completes for a revision written under another prefix;
- a ring buffer of the most recent events (decoded once each).

Watchers do not get a queue each. A watcher is a cursor into the ring: on every
new event the cacher resolves one shared future, each waiting watcher wakes and
reads the ring from its cursor. A write thus costs one decode and one wake-up
per watcher, and a slow watcher costs nothing until the ring laps it; then (or
when the cache had to re-list) it continues from the store's own watch at the
revision it had reached, which may raise CompactedError (HTTP 410 upstream).
A watch starting before the ring's oldest event also starts on the store.

Bookmarks: `watch(..., bookmark_interval=s)` yields `Bookmark(revision)`
whenever the watcher is caught up and has yielded nothing for `s` seconds. Its
revision is the cache's revision, so every event under the watcher's prefix up
to it has been delivered; it never goes backwards. Watchers served from the
store (the fallback above) get no bookmarks. `Cacher.revision` can also be read
at any time.

Objects in the cache and in events are shared by every reader: never mutate them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sortedcontainers import SortedList

from kplane.storage.interface import KV, CompactedError, Event, EventType, StorageError, Store

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Decode = Callable[[KV], Obj]

_LIST_PAGE = 1000
_PROGRESS_RETRY = 0.1  # seconds between progress requests while a reader waits


class TooLargeResourceVersionError(StorageError):
    """The cache did not reach the requested revision in time (upstream: 504 ResourceVersionTooLarge)."""

    def __init__(self, requested: int, current: int):
        super().__init__(f"Too large resource version: {requested}, current: {current}")
        self.requested = requested
        self.current = current


class CacheNotReadyError(StorageError):
    def __init__(self, prefix: str):
        super().__init__(f"watch cache for {prefix} is not running")


@dataclass(frozen=True, slots=True)
class CacheEvent:
    type: EventType
    kv: KV  # as in interface.Event: for DELETED, the last state at the delete revision
    obj: Obj  # decode(kv)
    prev_obj: Obj | None = None  # the object before this event, when known

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class Bookmark:
    revision: int


class Cacher:
    def __init__(self, store: Store, prefix: str, decode: Decode, *, capacity: int = 1000):
        self._store = store
        self._prefix = prefix
        self._decode = decode
        self._capacity = capacity
        self._objects: dict[str, tuple[KV, Obj]] = {}
        # The keys of _objects in order, for paged lists. A SortedList: adding or removing a key
        # stays ~2 µs at any size, where a plain list's insort moves every later key (40 µs per
        # create at 100,000 objects, growing with the resource).
        self._keys: SortedList = SortedList()
        # Called with every event the cache applies (loop thread; must be quick and must not
        # modify the event's objects): e.g. the garbage collector's wake-up on deletions.
        self.listeners: list[Callable[[CacheEvent], None]] = []
        self._revision = 0
        # Ring: event with absolute sequence number s lives in _ring[s % capacity];
        # it holds seqs [_seq_start, _seq_end) and covers every event with revision > _floor.
        self._ring: list[CacheEvent | None] = [None] * capacity
        self._seq_start = 0
        self._seq_end = 0
        self._floor = 0
        self._epoch = 0  # bumped on re-list: ring watchers must then resume from the store
        self._changed: asyncio.Future[None] | None = None
        self._stopped_fut: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._request_progress: Callable[[], Awaitable[None]] | None = None
        watch_params = inspect.signature(store.watch).parameters
        if "progress_notify" in watch_params and hasattr(store, "request_progress"):
            self._request_progress = store.request_progress  # type: ignore[attr-defined]

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def running(self) -> bool:
        return self._running

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """List the store and start following its watch. Raises what the initial list raises."""
        self._stopped_fut = asyncio.get_running_loop().create_future()
        await self._relist()
        self._running = True
        self._task = asyncio.create_task(self._reflect(), name=f"cacher {self._prefix}")

    async def stop(self) -> None:
        """Stop following the store and end every watcher."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._halt()

    def _halt(self) -> None:
        self._running = False
        if self._stopped_fut is not None and not self._stopped_fut.done():
            self._stopped_fut.set_result(None)
        self._notify()

    async def _relist(self) -> None:
        """Replace the cached state with a fresh, paged list taken at one revision."""
        res = await self._store.list(self._prefix, limit=_LIST_PAGE)
        items, revision = list(res.items), res.revision
        while res.more:
            res = await self._store.list(self._prefix, revision=revision, start_after=items[-1].key,
                                         limit=_LIST_PAGE)
            items.extend(res.items)
        self._objects = {kv.key: (kv, self._decode(kv)) for kv in items}
        self._keys = SortedList(kv.key for kv in items)
        self._revision = revision
        # The old ring may not connect to the new state: empty it, and make every
        # ring watcher resume from the store at the revision it had reached.
        self._ring = [None] * self._capacity
        self._seq_start = self._seq_end
        self._floor = revision
        self._epoch += 1
        self._notify()

    async def _reflect(self) -> None:
        """Follow the store's watch; re-list when it was compacted away, retry on errors."""
        delay, relist = 0.1, False
        try:
            while True:
                try:
                    if relist:
                        await self._relist()
                        relist = False
                    if self._request_progress is not None:
                        stream = self._store.watch(self._prefix, self._revision,
                                                   progress_notify=True)  # type: ignore[call-arg]
                    else:
                        stream = self._store.watch(self._prefix, self._revision)
                    try:
                        async for item in stream:
                            if isinstance(item, Event):
                                self._apply(item)
                            else:  # a progress notification: nothing changed under the prefix
                                self._advance(item.revision)
                            delay = 0.1
                    finally:
                        await _aclose(stream)  # release it now, even when cancelled by stop()
                    return  # the store closed
                except CompactedError as e:
                    log.info("msg=%r prefix=%s error=%r", "watch cache re-listing", self._prefix, str(e))
                    relist = True
                except StorageError as e:
                    log.warning("msg=%r prefix=%s error=%r", "watch cache watch failed", self._prefix, str(e))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        except Exception:
            # A bug (e.g. a value that does not decode): stop loudly rather than serve a stale cache.
            log.exception("msg=%r prefix=%s", "watch cache failed", self._prefix)
        finally:
            self._halt()

    # -- state updates (loop thread) -----------------------------------------

    def _apply(self, event: Event) -> None:
        if event.revision <= self._revision:
            return  # already reflected (e.g. overlaps a re-list)
        key = event.kv.key
        old = self._objects.get(key)
        obj = self._decode(event.kv)
        if event.type == "DELETED":
            if old is not None:
                del self._objects[key]
                self._keys.remove(key)
        else:
            if old is None:
                self._keys.add(key)
            self._objects[key] = (event.kv, obj)
        cache_event = CacheEvent(event.type, event.kv, obj, old[1] if old is not None else None)
        self._append(cache_event)
        for listener in self.listeners:
            listener(cache_event)

    def _append(self, event: CacheEvent) -> None:
        if self._seq_end - self._seq_start == self._capacity:
            evicted = self._ring[self._seq_start % self._capacity]
            assert evicted is not None
            self._floor = evicted.revision
            self._seq_start += 1
        self._ring[self._seq_end % self._capacity] = event
        self._seq_end += 1
        self._revision = event.revision
        self._notify()

    def _advance(self, revision: int) -> None:
        if revision > self._revision:
            self._revision = revision
            self._notify()

    def _notify(self) -> None:
        fut, self._changed = self._changed, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def _wait_changed(self, timeout: float | None) -> bool:
        """Wait for the next event, revision change or stop; False on timeout."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        # asyncio.wait, not a bare await: a cancelled waiter must not cancel the shared future.
        done, _ = await asyncio.wait((self._changed,), timeout=timeout)
        return bool(done)

    def _seq_after(self, revision: int) -> int:
        """Sequence number of the first ring event with revision > `revision`."""
        lo, hi = self._seq_start, self._seq_end
        while lo < hi:
            mid = (lo + hi) // 2
            ev = self._ring[mid % self._capacity]
            assert ev is not None
            if ev.revision <= revision:
                lo = mid + 1
            else:
                hi = mid
        return lo

    # -- reads ----------------------------------------------------------------

    async def wait_until_fresh(self, revision: int, timeout: float = 3.0) -> None:
        """Return once the cache has seen `revision`; TooLargeResourceVersionError after `timeout`."""
        if self._revision >= revision:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_request = loop.time()
        while self._revision < revision:
            now = loop.time()
            if not self._running or now >= deadline:
                raise TooLargeResourceVersionError(revision, self._revision)
            if self._request_progress is not None and now >= next_request:
                # The revision may belong to a write under another prefix: ask the
                # store to tell our watch how far it has got.
                next_request = now + _PROGRESS_RETRY
                await self._request_progress()
                continue
            wake = deadline if self._request_progress is None else min(deadline, next_request)
            await self._wait_changed(wake - now)

    def get(self, key: str) -> tuple[KV, Obj] | None:
        return self._objects.get(key)

    def count(self) -> int:
        """How many objects the cache holds (apiserver_storage_objects)."""
        return len(self._objects)

    def snapshot(self) -> list[tuple[KV, Obj]]:
        """Every cached object now (shared: read, do not modify)."""
        return list(self._objects.values())

    def list(self, prefix: str, *, start_after: str | None = None, limit: int = 0
             ) -> tuple[list[tuple[KV, Obj]], int, bool]:
        """Current objects under `prefix` sorted by key, strictly after `start_after`.

        Returns (items, the cache revision they reflect, whether `limit` cut the list short).
        """
        keys = self._keys
        i = keys.bisect_left(prefix)
        if start_after is not None:
            i = max(i, keys.bisect_right(start_after))
        items: list[tuple[KV, Obj]] = []
        for key in keys.islice(i):
            if not key.startswith(prefix):
                break
            if limit and len(items) == limit:
                return items, self._revision, True
            items.append(self._objects[key])
        return items, self._revision, False

    def watch(self, prefix: str, from_revision: int, *, bookmark_interval: float | None = None
              ) -> AsyncIterator[CacheEvent | Bookmark]:
        """Events under `prefix` with revision > from_revision (0: from now), in order.

        Served from the ring when it reaches back to `from_revision`, else from the
        store, whose watch raises CompactedError on the first iteration if that
        history is gone. A revision newer than the cache waits for it; call
        wait_until_fresh first to get the upstream "too large" error instead.
        """
        if not self._running:
            raise CacheNotReadyError(self._prefix)
        return _CacheWatch(self, prefix, from_revision, bookmark_interval)


async def _aclose(it: AsyncIterator[Any]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()


class _CacheWatch:
    """One watcher: a cursor into the cacher's ring, or a decoded store watch."""

    def __init__(self, cacher: Cacher, prefix: str, from_revision: int, bookmark_interval: float | None):
        self._c = cacher
        self._prefix = prefix
        self._interval = bookmark_interval
        self._pending: list[CacheEvent] = []
        self._pos = 0
        self._fallback: AsyncIterator[Event] | None = None
        self._epoch = cacher._epoch
        self._closed = False
        if from_revision == 0:
            self._last, self._cursor = cacher._revision, cacher._seq_end
        elif from_revision >= cacher._floor:
            self._last, self._cursor = from_revision, cacher._seq_after(from_revision)
        else:
            self._last, self._cursor = from_revision, cacher._seq_end
            self._fallback = cacher._store.watch(prefix, from_revision)
        self._bookmark_at = self._deadline()

    def _deadline(self) -> float | None:
        if self._interval is None:
            return None
        return asyncio.get_running_loop().time() + self._interval

    def __aiter__(self) -> _CacheWatch:
        return self

    async def __anext__(self) -> CacheEvent | Bookmark:
        if self._closed:
            raise StopAsyncIteration
        item = await (self._next_fallback() if self._fallback is not None else self._next_from_ring())
        self._bookmark_at = self._deadline()
        return item

    async def _next_from_ring(self) -> CacheEvent | Bookmark:
        c = self._c
        while True:
            if self._pos < len(self._pending):
                self._pos += 1
                return self._pending[self._pos - 1]
            if not c._running:
                raise StopAsyncIteration
            if self._epoch != c._epoch or self._cursor < c._seq_start:
                # Lapped by the ring, or the cache re-listed: the store has the history.
                if self._last == 0:
                    # Started on an empty store: "after revision 0" means "from now" to
                    # the store, so the history cannot be asked for. Make the client re-list.
                    raise CompactedError(0, c._floor)
                self._fallback = c._store.watch(self._prefix, self._last)
                return await self._next_fallback()
            if self._cursor < c._seq_end:
                self._read_ring()
                continue
            timeout = None
            if self._bookmark_at is not None:
                timeout = self._bookmark_at - asyncio.get_running_loop().time()
                if timeout <= 0:
                    self._last = max(self._last, c._revision)
                    return Bookmark(self._last)
            await c._wait_changed(timeout)

    def _read_ring(self) -> None:
        c, prefix, last = self._c, self._prefix, self._last
        ring, cap = c._ring, c._capacity
        batch = []
        for seq in range(self._cursor, c._seq_end):
            ev = ring[seq % cap]
            assert ev is not None
            if ev.revision > last and ev.kv.key.startswith(prefix):
                batch.append(ev)
        self._cursor = c._seq_end
        self._last = max(last, c._revision)  # every event up to here has been looked at
        self._pending, self._pos = batch, 0

    async def aclose(self) -> None:
        """Release the store watch, if any (dropping the iterator does too, less promptly)."""
        self._closed = True
        if self._fallback is not None:
            await _aclose(self._fallback)
            self._fallback = None

    async def _next_fallback(self) -> CacheEvent:
        assert self._fallback is not None
        stopped = self._c._stopped_fut
        assert stopped is not None
        nxt = asyncio.ensure_future(self._fallback.__anext__())
        # Also end when the cacher stops, even if the store keeps running.
        try:
            await asyncio.wait((nxt, stopped), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            nxt.cancel()  # else it would wait on the store watch forever
            raise
        if not nxt.done():
            nxt.cancel()
            raise StopAsyncIteration
        ev = nxt.result()
        self._last = ev.revision
        decode = self._c._decode
        return CacheEvent(ev.type, ev.kv, decode(ev.kv), decode(ev.prev) if ev.prev is not None else None)
