"""SQLiteStore: the shared conformance suite plus SQLite-specific behaviour."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kplane.storage import sqlite as sqlite_module
from kplane.storage.interface import CompactedError, Progress, Store, StoreClosedError, StoreInUseError
from kplane.storage.sqlite import SQLiteStore, open_sqlite_store
from tests.unit.storage_conformance import Reopen, StoreConformance, collect, next_event


class TestSQLiteConformance(StoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        s = SQLiteStore(str(tmp_path / "kplane.db"))
        yield s
        await s.close()

    @pytest.fixture
    async def reopen(self, tmp_path: Path) -> AsyncIterator[Reopen]:
        opened: list[Store] = []

        async def _reopen(old: Store) -> Store:
            await old.close()
            new = await open_sqlite_store(str(tmp_path / "kplane.db"))
            opened.append(new)
            return new

        yield _reopen
        for s in opened:
            await s.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "kplane.db"), watch_queue_limit=16)
    yield s
    await s.close()


async def test_wal_mode(store: SQLiteStore, tmp_path: Path) -> None:
    mode = await store._run(lambda: store._db().execute("PRAGMA journal_mode").fetchone()[0])
    assert mode == "wal"


async def test_slow_watcher_resyncs_from_log(store: SQLiteStore) -> None:
    w = store.watch("/s/", 0)
    kvs = [await store.create(f"/s/k{i}", b"v") for i in range(100)]  # overflows the limit of 16
    assert len(store._mailboxes) == 1 and len(next(iter(store._mailboxes)).items) <= 17
    got = await collect(w, 100)
    assert [e.kv for e in got] == kvs


async def test_slow_watcher_compacted_meanwhile(store: SQLiteStore) -> None:
    w = store.watch("/s/", 0)
    for i in range(40):
        await store.create(f"/s/k{i}", b"v")
    await store.compact(await store.current_revision())
    with pytest.raises(CompactedError):
        await collect(w, 40)


async def test_progress_notify(store: SQLiteStore) -> None:
    w = store.watch("/p/", 0, progress_notify=True)
    plain = store.watch("/p/", 0)
    await store.create("/other/a", b"v")
    kv = await store.create("/other/b", b"v")
    await store.request_progress()
    item = await next_event(w)
    assert isinstance(item, Progress) and item.revision == kv.mod_revision
    mine = await store.create("/p/a", b"v")
    assert (await next_event(w)).kv == mine
    assert (await next_event(plain)).kv == mine  # plain watchers never see Progress


async def test_progress_after_replay(store: SQLiteStore) -> None:
    start = (await store.create("/seed", b"v")).mod_revision
    mine = await store.create("/p/a", b"v")
    other = await store.create("/other/a", b"v")
    w = store.watch("/p/", start, progress_notify=True)
    assert (await next_event(w)).kv == mine
    item = await next_event(w)
    assert isinstance(item, Progress) and item.revision == other.mod_revision


async def test_abandoned_watch_unregisters(store: SQLiteStore) -> None:
    w = store.watch("/a/", 0)
    assert len(store._mailboxes) == 1
    del w
    assert not store._mailboxes


async def test_operations_after_close_raise(store: SQLiteStore) -> None:
    await store.close()
    with pytest.raises(StoreClosedError):
        await store.get("/x")
    with pytest.raises(StopAsyncIteration):
        await store.watch("/x/", 0).__anext__()


async def test_a_writer_in_a_loop_lets_other_tasks_run_between_writes(store: SQLiteStore) -> None:
    """Writes run on the loop (see the module docstring) but yield before each one, so a long
    run of writes (a namespace deletion) does not hold up other requests."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    t = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    for i in range(200):
        await store.create(f"/t/{i}", b"v" * 1000)
    t.cancel()
    assert ticks >= 200


@pytest.mark.parametrize("every", [50, 10**9])
async def test_wal_is_checkpointed_off_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  every: int) -> None:
    """Commits never checkpoint (that would sync on the loop); the worker thread does, every
    _CHECKPOINT_EVERY writes, so the WAL is reused instead of growing with every write."""
    monkeypatch.setattr(sqlite_module, "_CHECKPOINT_EVERY", every)
    s = SQLiteStore(str(tmp_path / "kplane.db"))
    try:
        for i in range(1000):
            await s.create(f"/c/{i}", b"v" * 2000)
            if i % 50 == 0:
                await s._run(lambda: None)  # let a scheduled checkpoint finish
        wal_pages = (tmp_path / "kplane.db-wal").stat().st_size // 4096
    finally:
        await s.close()
    if every == 50:
        assert wal_pages < 1000  # ~50 writes (several pages each) between checkpoints, then reused
    else:
        assert wal_pages > 3000  # without checkpoints: every page of every write


async def test_compaction_in_chunks_keeps_what_later_revisions_need(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Compaction deletes in chunks of revisions (the loop runs between them): lists at and after
    the compaction point and the history after it are what they were, whatever the chunking."""
    monkeypatch.setattr(sqlite_module, "_COMPACT_CHUNK", 7)
    s = SQLiteStore(str(tmp_path / "kplane.db"))
    try:
        kvs = {}
        for i in range(60):  # creates, updates, deletes and re-creates over 12 keys
            key = f"/k/{i % 12}"
            if key not in kvs:
                kvs[key] = await s.create(key, f"v{i}".encode())
            elif i % 5 == 0:
                await s.delete(key)
                del kvs[key]
            else:
                kvs[key] = await s.update(key, f"v{i}".encode(), expected_revision=0)
        top = await s.current_revision()
        point = top - 20
        before = {rev: (await s.list("/k/", revision=rev)).items for rev in range(point, top + 1)}
        history = await collect(s.watch("/k/", point), top - point)
        await s.compact(point)
        assert {rev: (await s.list("/k/", revision=rev)).items for rev in range(point, top + 1)} == before
        assert await collect(s.watch("/k/", point), top - point) == history
        with pytest.raises(CompactedError):
            await s.list("/k/", revision=point - 1)
        rows = await s._run(lambda: s._db().execute("SELECT COUNT(*) FROM log WHERE revision <= ?",
                                                    (point,)).fetchone()[0])
        assert rows <= 12  # at most the newest row of each key at the point
    finally:
        await s.close()


async def test_compactor_forgets_history_older_than_one_interval(store: SQLiteStore) -> None:
    """As kube-apiserver's compactor: each tick compacts to the revision seen at the tick before,
    so nothing is compacted at the first tick and history stays available for an interval."""
    older = await store.create("/p/old", b"0")
    await store.create("/p/a", b"1")
    store.start_compactor(0.2)
    second = await store.update("/p/a", b"2", expected_revision=0)
    assert await store.compacted_revision() == 0
    deadline = time.monotonic() + 10
    while await store.compacted_revision() == 0:
        assert time.monotonic() < deadline, "the compactor never compacted"
        await asyncio.sleep(0.05)
    # The first tick saw `second` (nothing was written since), the next one compacted to it.
    assert await store.compacted_revision() == second.mod_revision
    with pytest.raises(CompactedError):
        await store.list("/p/", revision=older.mod_revision)
    listed = await store.list("/p/", revision=second.mod_revision)
    assert [(kv.key, kv.value) for kv in listed.items] == [("/p/a", b"2"), ("/p/old", b"0")]


async def test_keys_under_a_ttl_prefix_expire_after_their_last_write(tmp_path: Path) -> None:
    """--event-ttl on SQLite: a key lives `ttl` seconds after its last write (each write
    restarts the clock, like the lease upstream attaches at each write), then is deleted with a
    DELETED event; other keys and a restart keep what they should."""
    path = str(tmp_path / "kplane.db")
    s = SQLiteStore(path, ttls={"/registry/events/": 1.0})
    try:
        w = s.watch("/registry/events/", 0)
        await s.create("/registry/events/ns/old", b"1")  # t=0: due at 1.0
        await s.create("/registry/configmaps/ns/cm", b"kept")
        await asyncio.sleep(0.5)
        await s.create("/registry/events/ns/young", b"1")  # due at 1.5
        kept = await s.update("/registry/events/ns/old", b"2", expected_revision=0)  # due at 1.5 now
        await asyncio.sleep(0.7)
        assert await s.expire_due() == 0  # t=1.2: "old" would be gone without its second write
        await asyncio.sleep(0.5)
        assert await s.expire_due() == 2  # t=1.7
        events = await collect(w, 5)
        assert [(e.type, e.kv.key) for e in events[3:]] == [
            ("DELETED", "/registry/events/ns/young"), ("DELETED", "/registry/events/ns/old")]
        assert events[4].prev is not None and events[4].prev.mod_revision == kept.mod_revision
        assert [kv.key for kv in (await s.list("/registry/")).items] == ["/registry/configmaps/ns/cm"]
        await s.create("/registry/events/ns/later", b"1")
    finally:
        await s.close()
    reopened = SQLiteStore(path, ttls={"/registry/events/": 1.0})
    try:
        reopened.start_expirer(0.1)  # the deadline was stored with the write: it survives a restart
        deadline = time.monotonic() + 10
        while (await reopened.list("/registry/events/")).items:
            assert time.monotonic() < deadline, "the event outlived its TTL across a restart"
            await asyncio.sleep(0.1)
    finally:
        await reopened.close()


async def test_one_process_per_database(tmp_path: Path) -> None:
    """Revisions are counted in memory: a second store on the same file is refused until the
    first is closed."""
    path = str(tmp_path / "kplane.db")
    first = SQLiteStore(path)
    try:
        with pytest.raises(StoreInUseError):
            SQLiteStore(path)
        await first.create("/k", b"v")
    finally:
        await first.close()
    second = SQLiteStore(path)
    try:
        assert (await second.get("/k")).value == b"v"  # type: ignore[union-attr]
    finally:
        await second.close()
