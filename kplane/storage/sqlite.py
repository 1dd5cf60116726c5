"""SQLite backend for the Store protocol: the embedded default.

Layout (kine-like MVCC, one database file in WAL mode):

- ``log``: one row per write, ``revision`` is the global revision. A put row
  holds the new value; a delete row (``deleted=1``) holds the value that was
  deleted, so a DELETED event can be rebuilt from its row alone.
  ``prev_revision`` is the key's mod_revision before the write (0 for a create).
- ``current``: the live value of every key, so latest reads never touch the log.
- ``expiry``: when each key under a TTL prefix (Events) is due to be deleted:
  its last write plus the TTL, as an etcd lease attached at each write gives.
- ``meta``: the current and the compacted revision. The current revision is
  stored rather than derived from MAX(log.revision) because compaction may
  delete the newest row (a delete), and revisions must never be reused.

Writes run inline, on the calling (event loop) thread, through a writer
connection: they are serialized by the loop, revisions strictly increase, and a
write's event is dispatched before the write returns. A write is a few inserts
and a commit into the WAL, which does not wait for the disk (synchronous=NORMAL);
the WAL is checkpointed (the part that does sync) on the worker thread, never by
a commit. Handing each write to a thread instead cost more than the write
itself: in kplane serve, 0.25-0.4 ms of CPU per create in GIL hand-offs between
a busy loop and the thread (docs/performance.md).

Reads run on one worker thread through a reader connection, so a long list or a
watch replay does not hold up the loop and its SQLite work runs beside the
loop's Python. Each read is one snapshot (WAL readers see the last commit) and
takes the revision it reflects from ``meta`` in that same snapshot.

Watch fan-out: by the time ``create``/``update``/``delete`` returns, every
watcher's mailbox holds its event (in commit order). A watcher registers
its mailbox when ``watch()`` is called, then replays the log from
``from_revision``; events then come from the mailbox, skipping revisions the
replay already yielded, so nothing is lost or duplicated.

Cancelling a pending ``__anext__`` (e.g. ``asyncio.wait_for``) loses nothing: the
next call picks up where the iterator was.

Slow watchers never block writers: when a mailbox exceeds ``watch_queue_limit``
it is emptied and marked for resync, and the watcher replays the missed events
from the log (losslessly; CompactedError if they were compacted meanwhile).

Extension beyond the Store protocol (used by the watch cache, mirrors etcd's
progress notifications): ``watch(..., progress_notify=True)`` may also yield
``Progress(revision)`` items, meaning "every event up to ``revision`` under this
prefix has been yielded"; ``request_progress()`` sends one to every such watcher.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from kplane.aio import cancel_and_wait
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
    StoreClosedError,
    StoreInUseError,
)
from kplane.storage.mailbox import CLOSED, RESYNC, Mailbox

try:
    import fcntl
except ImportError:  # not POSIX: no lock (see _lock)
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")
log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision);
CREATE TABLE IF NOT EXISTS current (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS expiry (key BLOB PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expiry_at ON expiry (at);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);
"""

_REPLAY_BATCH = 1000
_CHECKPOINT_EVERY = 500  # writes between WAL checkpoints (SQLite's own default is ~1000 pages)
_COMPACT_CHUNK = 5000  # revisions per compaction transaction: the loop runs other work between them


@contextlib.contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[tuple[int, int]]:
    """One read transaction; yields the (current, compacted) revisions it sees."""
    conn.execute("BEGIN")
    try:
        meta = dict(conn.execute("SELECT name, value FROM meta"))
        yield meta["revision"], meta["compacted"]
    finally:
        conn.execute("COMMIT")


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back if the body raises (this thread is the only writer)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _prefix_range(prefix: str) -> tuple[bytes, bytes | None]:
    """Byte range [start, end) of keys with this prefix (etcd's prefix-end rule)."""
    start = prefix.encode()
    end = bytearray(start)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return start, bytes(end)
        end.pop()
    return start, None  # empty or all-0xff prefix: no upper bound


class SQLiteStore:
    """Store backed by one SQLite file. See the module docstring for the design."""

    def __init__(self, path: str, *, watch_queue_limit: int = 10_000, ttls: dict[str, float] | None = None):
        self._path = path
        self._watch_queue_limit = watch_queue_limit
        self._ttls = dict(ttls or {})  # key prefix -> seconds a key lives after its last write
        self._expirer: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kplane-sqlite")
        self._conn: sqlite3.Connection | None = None  # reader: the worker thread's
        self._writer: sqlite3.Connection | None = None  # writer: the loop's (see _write)
        # Written by the writer only (after commit).
        self._rev = 0
        self._compacted = 0
        self._writes_since_checkpoint = 0
        self._checkpointing = False
        self._compactor: asyncio.Task[None] | None = None
        self._lock_file: Any = None
        # Loop-thread state.
        self._dispatched_rev = 0  # newest revision handed to the watchers
        self._mailboxes: set[Mailbox] = set()
        self._closed = False
        # Opening is quick (a few pragmas and a schema check); doing it here keeps
        # the store usable straight after construction. open_sqlite_store() runs
        # it off the loop.
        self._executor.submit(self._open).result()
        self._dispatched_rev = self._rev

    # -- worker thread ------------------------------------------------------

    def _open(self) -> None:
        self._lock()
        conn = sqlite3.connect(self._path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        meta = dict(conn.execute("SELECT name, value FROM meta"))
        self._rev, self._compacted = meta["revision"], meta["compacted"]
        # Used from one thread at a time (the loop's), just not the one that opens it.
        writer = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        writer.execute("PRAGMA synchronous=NORMAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")  # a commit never checkpoints: see _checkpoint
        self._conn, self._writer = conn, writer

    def _lock(self) -> None:
        """One process per database: revisions are counted in memory, so a second server on the
        same file would hand out the same ones. An exclusive lock on <db>.lock (released by the
        OS when the process ends, however it ends), as etcd locks its data dir."""
        if fcntl is None:
            return
        lock_file = open(self._path + ".lock", "a+b")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            raise StoreInUseError(self._path) from None
        self._lock_file = lock_file

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosedError()
        return self._conn

    def _checkpoint(self, loop: asyncio.AbstractEventLoop) -> None:
        """Copy the WAL into the database file and sync both, beside the writer (some
        milliseconds per hundred writes: never on the loop)."""
        try:
            if self._conn is not None:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone: so is the store
                loop.call_soon_threadsafe(self._finish_checkpoint)

    # -- writer (the loop thread) -------------------------------------------------

    def _writer_db(self) -> sqlite3.Connection:
        if self._writer is None or self._closed:
            raise StoreClosedError()
        return self._writer

    async def _write(self, key: str, mutate: Callable[..., tuple[Event, KV]]) -> KV:
        """Run `mutate(conn, key_bytes, current_row, rev)` in a transaction, publish its event,
        then yield to the loop before returning: the watchers woken by the event (the watch
        cache first) take it before the writer resumes, and a caller writing in a loop (a
        namespace's deletion, a deletecollection) lets every other task run between writes."""
        conn = self._writer_db()
        kb = key.encode()
        with _transaction(conn):
            row = conn.execute(
                "SELECT value, create_revision, mod_revision FROM current WHERE key = ?", (kb,)).fetchone()
            rev = self._rev + 1
            event, result = mutate(conn, kb, row, rev)
            conn.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (rev,))
            if self._ttls:
                self._note_expiry(conn, key, kb, event)
        self._rev = rev
        self._dispatch(event)  # in commit order, before the writer has its result
        self._writes_since_checkpoint += 1
        if self._writes_since_checkpoint >= _CHECKPOINT_EVERY and not self._checkpointing:
            self._writes_since_checkpoint = 0
            self._checkpointing = True
            self._executor.submit(self._checkpoint, asyncio.get_running_loop())
        await asyncio.sleep(0)
        return result

    def _finish_checkpoint(self) -> None:
        """After the worker's checkpoint: copy what was written meanwhile (a few writes, about a
        millisecond). Only a WAL copied in full is started over by the next write; else, under a
        steady stream of writes, it would grow without end."""
        self._checkpointing = False
        if self._writer is not None and not self._closed:
            self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _note_expiry(self, conn: sqlite3.Connection, key: str, kb: bytes, event: Event) -> None:
        ttl = next((t for prefix, t in self._ttls.items() if key.startswith(prefix)), None)
        if ttl is None:
            return
        if event.type == "DELETED":
            conn.execute("DELETE FROM expiry WHERE key = ?", (kb,))
        else:
            conn.execute("INSERT OR REPLACE INTO expiry VALUES (?, ?)", (kb, time.time() + ttl))

    # -- TTL expiry (the loop) ---------------------------------------------------

    def start_expirer(self, interval: float = 10.0) -> None:
        """Delete keys whose TTL ran out (Events, --event-ttl), every `interval` seconds. Each is
        an ordinary delete: watchers see DELETED, as when an etcd lease expires."""
        if self._ttls and self._expirer is None:
            self._expirer = asyncio.create_task(self._every(interval, self.expire_due, "expiry"),
                                                name="sqlite expirer")

    async def _every(self, interval: float, step: Callable[[], Awaitable[Any]], what: str) -> None:
        """Run `step` every `interval` seconds until the store closes; a failed step is logged
        and the next one tries again (the compactor and the expirer)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await step()
            except StoreClosedError:
                return
            except Exception:
                log.exception("msg=%r", f"sqlite {what} failed")

    async def expire_due(self) -> int:
        """Delete every key due to expire now; returns how many were deleted."""
        now = time.time()
        due = self._writer_db().execute("SELECT key FROM expiry WHERE at <= ? ORDER BY at", (now,)).fetchall()
        deleted = 0
        for (kb,) in due:
            key = kb.decode()

            def mutate(conn: sqlite3.Connection, kb: bytes, row: Any, rev: int, key: str = key
                       ) -> tuple[Event, KV]:
                at = conn.execute("SELECT at FROM expiry WHERE key = ?", (kb,)).fetchone()
                if row is None or at is None or at[0] > now:
                    raise _NotDue()  # deleted or written again since the query
                return _delete_row(conn, key, kb, row, rev)

            try:
                await self._write(key, mutate)
                deleted += 1
            except _NotDue:
                continue
        return deleted

    # -- reads (worker thread) ----------------------------------------------------

    def _list(self, prefix: str, revision: int, start_after: str | None, limit: int) -> ListResult:
        with _snapshot(self._db()) as (current, compacted):
            return self._list_in(prefix, revision, start_after, limit, current, compacted)

    def _list_in(self, prefix: str, revision: int, start_after: str | None, limit: int, current: int,
                 compacted: int) -> ListResult:
        conn = self._db()
        if revision > current:
            raise FutureRevisionError(revision, current)
        if revision and revision < compacted:
            raise CompactedError(revision, compacted)
        start, end = _prefix_range(prefix)
        where, args = ["key >= ?"], [start]
        if end is not None:
            where.append("key < ?")
            args.append(end)
        if start_after is not None:
            where.append("key > ?")
            args.append(start_after.encode())
        cond = " AND ".join(where)
        if revision == 0 or revision == current:
            rows_sql = f"FROM current WHERE {cond}"
            sql = f"SELECT key, value, create_revision, mod_revision {rows_sql}"
        else:
            # State as of `revision`: each key's newest row at or before it, unless a delete.
            rows_sql = ("FROM log WHERE deleted = 0 AND revision IN "
                        f"(SELECT MAX(revision) FROM log WHERE {cond} AND revision <= ? GROUP BY key)")
            sql = f"SELECT key, value, create_revision, revision {rows_sql}"
            args.append(revision)
        # One extra row tells whether the limit cut the list short.
        limit_rows = min(limit + 1, 2**63 - 1) if limit > 0 else -1  # SQLite integers are 64-bit
        rows = conn.execute(sql + " ORDER BY key LIMIT ?", [*args, limit_rows]).fetchall()
        more = limit > 0 and len(rows) > limit
        remaining = 0
        if more:
            rows = rows[:limit]
            remaining = conn.execute(f"SELECT COUNT(*) {rows_sql}", args).fetchone()[0] - limit
        items = [KV(k.decode(), v, c, m) for k, v, c, m in rows]
        return ListResult(items, revision or current, more, remaining)

    def _read_log(self, prefix: str, after: int) -> tuple[list[Event], int]:
        """Up to _REPLAY_BATCH events under prefix with revision > after, and the current revision."""
        with _snapshot(self._db()) as (current, compacted):
            if after < compacted:
                raise CompactedError(after, compacted)
            return self._read_log_in(prefix, after), current

    def _read_log_in(self, prefix: str, after: int) -> list[Event]:
        conn = self._db()
        start, end = _prefix_range(prefix)
        sql = ("SELECT l.revision, l.key, l.value, l.create_revision, l.prev_revision, l.deleted, p.value "
               "FROM log l LEFT JOIN log p ON p.revision = l.prev_revision AND l.deleted = 0 "
               "WHERE l.revision > ? AND l.key >= ?")
        args: list[Any] = [after, start]
        if end is not None:
            sql += " AND l.key < ?"
            args.append(end)
        sql += " ORDER BY l.revision LIMIT ?"
        args.append(_REPLAY_BATCH)
        events = []
        for rev, kb, value, create_rev, prev_rev, deleted, prev_value in conn.execute(sql, args):
            key = kb.decode()
            if deleted:
                events.append(Event("DELETED", KV(key, value, create_rev, rev), KV(key, value, create_rev, prev_rev)))
            elif prev_rev == 0:
                events.append(Event("ADDED", KV(key, value, create_rev, rev)))
            else:
                # The previous row survives compaction (it is the key's newest row at or
                # before any compaction point below `rev`), but stay defensive.
                prev = KV(key, prev_value, create_rev, prev_rev) if prev_value is not None else None
                events.append(Event("MODIFIED", KV(key, value, create_rev, rev), prev))
        return events

    def _close_db(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- loop thread --------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreClosedError()
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _dispatch(self, event: Event) -> None:
        self._dispatched_rev = event.revision
        key = event.kv.key
        # Iterate a snapshot: an abandoned watch's __del__ may run (via GC) mid-loop.
        for box in tuple(self._mailboxes):
            if key.startswith(box.prefix):
                box.push(event)

    async def get(self, key: str) -> KV | None:
        def read() -> KV | None:
            row = self._db().execute(
                "SELECT value, create_revision, mod_revision FROM current WHERE key = ?", (key.encode(),)
            ).fetchone()
            return KV(key, row[0], row[1], row[2]) if row else None

        return await self._run(read)

    async def list(self, prefix: str, *, revision: int = 0, start_after: str | None = None,
                   limit: int = 0) -> ListResult:
        return await self._run(self._list, prefix, revision, start_after, limit)

    async def create(self, key: str, value: bytes) -> KV:
        def mutate(conn: sqlite3.Connection, kb: bytes, row: Any, rev: int) -> tuple[Event, KV]:
            if row is not None:
                raise KeyExistsError(key)
            conn.execute("INSERT INTO log VALUES (?, ?, ?, ?, 0, 0)", (rev, kb, value, rev))
            conn.execute("INSERT INTO current VALUES (?, ?, ?, ?)", (kb, value, rev, rev))
            kv = KV(key, value, rev, rev)
            return Event("ADDED", kv), kv

        value = bytes(value)
        return await self._write(key, mutate)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KV:
        def mutate(conn: sqlite3.Connection, kb: bytes, row: Any, rev: int) -> tuple[Event, KV]:
            if row is None:
                raise KeyNotFoundError(key)
            old_value, create_rev, mod_rev = row
            if expected_revision and expected_revision != mod_rev:
                raise RevisionConflictError(key, expected_revision, mod_rev)
            conn.execute("INSERT INTO log VALUES (?, ?, ?, ?, ?, 0)", (rev, kb, value, create_rev, mod_rev))
            conn.execute("UPDATE current SET value = ?, mod_revision = ? WHERE key = ?", (value, rev, kb))
            kv = KV(key, value, create_rev, rev)
            return Event("MODIFIED", kv, KV(key, old_value, create_rev, mod_rev)), kv

        value = bytes(value)
        return await self._write(key, mutate)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KV:
        def mutate(conn: sqlite3.Connection, kb: bytes, row: Any, rev: int) -> tuple[Event, KV]:
            if row is None:
                raise KeyNotFoundError(key)
            if expected_revision and expected_revision != row[2]:
                raise RevisionConflictError(key, expected_revision, row[2])
            return _delete_row(conn, key, kb, row, rev)

        return await self._write(key, mutate)

    def watch(self, prefix: str, from_revision: int, *, progress_notify: bool = False
              ) -> AsyncIterator[Event]:
        return _Watch(self, prefix, from_revision, progress_notify)

    async def request_progress(self) -> None:
        """Send Progress(current revision) to every progress_notify watcher.

        Writes dispatch their events before they return, so the progress covers
        every write committed before this call.
        """
        if self._closed:
            raise StoreClosedError()
        for box in tuple(self._mailboxes):
            if box.progress:
                box.push(Progress(self._dispatched_rev))

    async def current_revision(self) -> int:
        # Every write whose result a caller has seen was dispatched before that result was
        # delivered (see _write), so the dispatched revision covers it; reading it here
        # saves a worker round trip on every consistent read. Events up to the returned
        # revision have been dispatched, as before.
        if self._closed:
            raise StoreClosedError()
        return self._dispatched_rev

    async def compacted_revision(self) -> int:
        if self._closed:
            raise StoreClosedError()
        return self._compacted

    async def compact(self, revision: int) -> None:
        """Forget history up to `revision`: keep each key's newest row at or before it (lists at
        revisions from there on need it) unless that row is a delete, and drop every other row
        at or before it. The compacted revision is recorded first, so readers refuse the history
        being deleted from then on; the rows then go in chunks, with the loop free in between."""
        conn = self._writer_db()
        if revision <= self._compacted:
            return
        if revision > self._rev:
            raise FutureRevisionError(revision, self._rev)
        with _transaction(conn):
            conn.execute("UPDATE meta SET value = ? WHERE name = 'compacted'", (revision,))
        self._compacted = revision
        low = conn.execute("SELECT MIN(revision) FROM log").fetchone()[0] or revision
        for start in range(low - 1, revision, _COMPACT_CHUNK):
            conn = self._writer_db()  # the store may have closed while other tasks ran
            with _transaction(conn):
                conn.execute(
                    "DELETE FROM log WHERE revision > ? AND revision <= ? AND (deleted = 1 OR EXISTS "
                    "(SELECT 1 FROM log newer WHERE newer.key = log.key AND newer.revision > log.revision "
                    "AND newer.revision <= ?))", (start, min(start + _COMPACT_CHUNK, revision), revision))
            await asyncio.sleep(0)

    def start_compactor(self, interval: float) -> None:
        """kube-apiserver's compactor, for one process: every `interval` seconds, forget the
        history before the revision of one interval ago, so watches and continue tokens stay
        good for at least an interval and the log does not grow without end."""
        if interval > 0 and self._compactor is None:
            seen_at_last_tick = 0

            async def tick() -> None:
                nonlocal seen_at_last_tick
                try:
                    if seen_at_last_tick:
                        await self.compact(seen_at_last_tick)
                        log.info("msg=%r revision=%d", "sqlite compacted", seen_at_last_tick)
                finally:
                    seen_at_last_tick = self._rev

            self._compactor = asyncio.create_task(self._every(interval, tick, "compaction"),
                                                  name="sqlite compactor")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait([self._compactor, self._expirer])
        for box in tuple(self._mailboxes):
            box.push(CLOSED)
        self._mailboxes.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_db)
        self._executor.shutdown(wait=False)


def _delete_row(conn: sqlite3.Connection, key: str, kb: bytes, row: Any, rev: int) -> tuple[Event, KV]:
    """The delete of a key whose current row is `row`: a log row holding the deleted value."""
    old_value, create_rev, mod_rev = row
    conn.execute("INSERT INTO log VALUES (?, ?, ?, ?, ?, 1)", (rev, kb, old_value, create_rev, mod_rev))
    conn.execute("DELETE FROM current WHERE key = ?", (kb,))
    kv = KV(key, old_value, create_rev, rev)
    return Event("DELETED", kv, KV(key, old_value, create_rev, mod_rev)), kv


class _NotDue(Exception):
    """A key picked for expiry was written or deleted again before its turn."""


async def open_sqlite_store(path: str, **kwargs: Any) -> SQLiteStore:
    """Open (creating if needed) a SQLiteStore without blocking the event loop."""
    return await asyncio.to_thread(SQLiteStore, path, **kwargs)


class _Watch:
    """Iterator of one watch: log replay, then the live mailbox (see module docstring)."""

    def __init__(self, store: SQLiteStore, prefix: str, from_revision: int, progress: bool):
        self._store = store
        self._box = Mailbox(prefix, progress, store._watch_queue_limit)
        self._pending: deque[Any] = deque()
        self._started = False
        self._done = store._closed
        # Registered now, not on first __anext__, so "from now" (0) means the moment
        # watch() was called: a write made before the first __anext__ is still seen.
        if not self._done:
            store._mailboxes.add(self._box)
        # Every event after _dispatched_rev will arrive in the mailbox; older ones
        # must come from the log.
        self._from = from_revision or store._dispatched_rev
        self._replaying = self._from < store._dispatched_rev
        self._last = self._from  # newest revision yielded (or known to be covered)

    def __aiter__(self) -> _Watch:
        return self

    async def __anext__(self) -> Event:
        if not self._started:
            self._started = True
            compacted = self._store._compacted
            if not self._done and self._from < compacted:
                self._finish()
                raise CompactedError(self._from, compacted)
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._done:
                raise StopAsyncIteration
            if self._replaying:
                await self._replay_batch()
                continue
            item = await self._box.pop()
            if item is CLOSED:
                self._finish()
            elif item is RESYNC:
                self._replaying = True
            elif item.revision > self._last:  # an Event or a Progress
                self._last = item.revision
                return item

    async def _replay_batch(self) -> None:
        """Queue the next logged events after self._last; stop replaying when caught up."""
        try:
            events, current = await self._store._run(self._store._read_log, self._box.prefix, self._last)
        except StoreClosedError:
            self._finish()
            raise StopAsyncIteration from None
        except asyncio.CancelledError:
            raise  # the caller gave up on this __anext__; the next one re-reads the batch
        except BaseException:
            self._finish()
            raise
        self._pending.extend(events)
        if events:
            self._last = events[-1].revision
        if len(events) < _REPLAY_BATCH:
            # The log held every event up to `current`; later ones are in the mailbox.
            self._replaying = False
            if self._box.progress and current > self._last:
                self._pending.append(Progress(current))
                self._last = current

    def _finish(self) -> None:
        self._done = True
        self._pending.clear()
        self._store._mailboxes.discard(self._box)

    async def aclose(self) -> None:
        self._finish()

    def __del__(self) -> None:
        # An abandoned iterator (e.g. `break` out of `async for`) must stop
        # receiving events.
        store = getattr(self, "_store", None)
        if store is not None:
            store._mailboxes.discard(self._box)
