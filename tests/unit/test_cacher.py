"""The watch cache over a real SQLiteStore."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kplane.storage.cacher import Bookmark, CacheEvent, Cacher, TooLargeResourceVersionError
from kplane.storage.interface import KV, CompactedError, Event
from kplane.storage.sqlite import SQLiteStore

PREFIX = "/registry/configmaps/"
decoded: list[KV] = []


def decode(kv: KV) -> dict[str, Any]:
    decoded.append(kv)
    return {**json.loads(kv.value), "rv": kv.mod_revision}


def val(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


async def nxt(it: AsyncIterator[Any], timeout: float = 5.0) -> Any:
    return await asyncio.wait_for(it.__anext__(), timeout)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "kplane.db"))
    await s.create("/registry/seed", b"{}")  # revision 0 would mean "from now" to watch()
    yield s
    await s.close()


@pytest.fixture
async def cacher(store: SQLiteStore) -> AsyncIterator[Cacher]:
    c = Cacher(store, PREFIX, decode, capacity=50)
    await c.start()
    yield c
    await c.stop()


async def test_initial_list(store: SQLiteStore) -> None:
    for i in range(2500):  # more than one list page
        await store.create(f"{PREFIX}ns/cm{i:04d}", val(n=i))
    await store.create("/registry/configmapsx/ns/a", val(n=-1))
    await store.create("/registry/secrets/ns/a", val(n=-1))
    c = Cacher(store, PREFIX, decode)
    await c.start()
    try:
        assert c.revision == await store.current_revision()
        items, rev, more = c.list(PREFIX)
        assert len(items) == 2500 and rev == c.revision and not more
        assert [kv for kv, _ in items] == (await store.list(PREFIX)).items
        kv, obj = c.get(f"{PREFIX}ns/cm0007") or (None, None)
        assert obj == {"n": 7, "rv": kv.mod_revision}
        assert c.get("/registry/configmapsx/ns/a") is None
    finally:
        await c.stop()


async def test_reads_are_fresh_after_writes(store: SQLiteStore, cacher: Cacher) -> None:
    a = await store.create(f"{PREFIX}ns/a", val(v=1))
    b = await store.create(f"{PREFIX}ns/b", val(v=1))
    a2 = await store.update(a.key, val(v=2), expected_revision=a.mod_revision)
    d = await store.delete(b.key)
    t0 = time.monotonic()
    await cacher.wait_until_fresh(d.mod_revision)
    assert time.monotonic() - t0 < 0.1
    assert cacher.get(b.key) is None
    assert cacher.get(a.key) == (a2, {"v": 2, "rv": a2.mod_revision})
    items, rev, _ = cacher.list(PREFIX)
    assert rev == d.mod_revision
    assert [kv for kv, _ in items] == (await store.list(PREFIX)).items == [a2]


async def test_fresh_after_write_under_another_prefix(store: SQLiteStore, cacher: Cacher) -> None:
    other = await store.create("/registry/secrets/ns/s", val(v=1))
    t0 = time.monotonic()
    await cacher.wait_until_fresh(other.mod_revision)
    assert time.monotonic() - t0 < 0.1
    assert cacher.revision == other.mod_revision


async def test_wait_until_fresh_times_out(cacher: Cacher) -> None:
    with pytest.raises(TooLargeResourceVersionError) as e:
        await cacher.wait_until_fresh(cacher.revision + 100, timeout=0.2)
    assert e.value.requested == cacher.revision + 100 and e.value.current == cacher.revision


async def test_list_paging(store: SQLiteStore, cacher: Cacher) -> None:
    for ns, name in [("a", "x"), ("a", "y"), ("a", "z"), ("ab", "x"), ("b", "x")]:
        kv = await store.create(f"{PREFIX}{ns}/{name}", val(ns=ns))
    await cacher.wait_until_fresh(kv.mod_revision)
    page, _, more = cacher.list(f"{PREFIX}a/", limit=2)
    assert [kv.key for kv, _ in page] == [f"{PREFIX}a/x", f"{PREFIX}a/y"] and more
    page, _, more = cacher.list(f"{PREFIX}a/", start_after=page[-1][0].key, limit=2)
    assert [kv.key for kv, _ in page] == [f"{PREFIX}a/z"] and not more
    assert len(cacher.list(PREFIX)[0]) == 5


async def test_watch_from_now(store: SQLiteStore, cacher: Cacher) -> None:
    w = cacher.watch(PREFIX, 0)
    a = await store.create(f"{PREFIX}ns/a", val(v=1))
    a2 = await store.update(a.key, val(v=2), expected_revision=0)
    d = await store.delete(a.key)
    added, modified, deleted = [await nxt(w) for _ in range(3)]
    assert (added.type, added.kv, added.obj, added.prev_obj) == ("ADDED", a, {"v": 1, "rv": a.mod_revision}, None)
    assert (modified.type, modified.obj["v"], modified.prev_obj) == ("MODIFIED", 2, added.obj)
    # DELETED carries the last object, at the delete revision.
    assert deleted.type == "DELETED" and deleted.obj == {"v": 2, "rv": d.mod_revision}
    assert deleted.prev_obj is modified.obj and deleted.revision == d.mod_revision
    del a2


async def test_watch_from_ring(store: SQLiteStore, cacher: Cacher) -> None:
    kvs = [await store.create(f"{PREFIX}ns/k{i}", val(i=i)) for i in range(10)]
    await cacher.wait_until_fresh(kvs[-1].mod_revision)
    mailboxes = len(store._mailboxes)
    w = cacher.watch(PREFIX, kvs[3].mod_revision)
    got = [await nxt(w) for _ in range(6)]
    assert [e.kv for e in got] == kvs[4:]
    assert len(store._mailboxes) == mailboxes  # served without a store watch
    # From the cache's current revision: only what comes next.
    w2 = cacher.watch(PREFIX, cacher.revision)
    more = await store.create(f"{PREFIX}ns/more", val(i=99))
    assert (await nxt(w2)).kv == more
    assert (await nxt(w)).kv == more


async def test_watch_prefix_filter(store: SQLiteStore, cacher: Cacher) -> None:
    w = cacher.watch(f"{PREFIX}ns1/", 0)
    await store.create(f"{PREFIX}ns10/a", val())
    await store.create(f"{PREFIX}ns2/a", val())
    kv = await store.create(f"{PREFIX}ns1/a", val())
    assert (await nxt(w)).kv == kv
    with pytest.raises(asyncio.TimeoutError):
        await nxt(w, 0.1)


async def test_watch_older_than_ring_falls_back_to_store(store: SQLiteStore, cacher: Cacher) -> None:
    start = cacher.revision
    kvs = [await store.create(f"{PREFIX}ns/k{i:03d}", val(i=i)) for i in range(120)]  # capacity is 50
    await cacher.wait_until_fresh(kvs[-1].mod_revision)
    w = cacher.watch(PREFIX, start)
    got = [await nxt(w) for _ in range(120)]
    assert [e.kv for e in got] == kvs
    assert got[5].obj == {"i": 5, "rv": kvs[5].mod_revision}


async def test_watch_compacted_revision_is_410(store: SQLiteStore, cacher: Cacher) -> None:
    start = (await store.create("/registry/other", val())).mod_revision
    kvs = [await store.create(f"{PREFIX}ns/k{i:03d}", val(i=i)) for i in range(60)]
    await store.compact(kvs[-1].mod_revision)
    await cacher.wait_until_fresh(kvs[-1].mod_revision)
    with pytest.raises(CompactedError):
        await nxt(cacher.watch(PREFIX, start))


async def test_lapped_watcher_resumes_from_store(store: SQLiteStore, cacher: Cacher) -> None:
    w = cacher.watch(PREFIX, 0)
    kvs = [await store.create(f"{PREFIX}ns/k{i:03d}", val(i=i)) for i in range(200)]  # laps the ring
    await cacher.wait_until_fresh(kvs[-1].mod_revision)
    got = [await nxt(w) for _ in range(200)]
    assert [e.kv for e in got] == kvs


async def test_bookmarks(store: SQLiteStore, cacher: Cacher) -> None:
    w = cacher.watch(f"{PREFIX}ns/", 0, bookmark_interval=0.05)
    other = await store.create("/registry/secrets/ns/s", val())
    await cacher.wait_until_fresh(other.mod_revision)
    item = await nxt(w)
    assert item == Bookmark(other.mod_revision)
    mine = await store.create(f"{PREFIX}ns/a", val())
    item = await nxt(w)
    assert isinstance(item, CacheEvent) and item.kv == mine
    assert await nxt(w) == Bookmark(mine.mod_revision)


async def test_stop_and_store_close_end_watchers(store: SQLiteStore) -> None:
    c = Cacher(store, PREFIX, decode)
    await c.start()
    ring = c.watch(PREFIX, 0)
    start = (await store.create("/registry/x", val())).mod_revision
    fallback = c.watch(PREFIX, 0)
    fallback._fallback = store.watch(PREFIX, start)  # type: ignore[attr-defined]
    pending = [asyncio.create_task(nxt(w)) for w in (ring, fallback)]
    await asyncio.sleep(0.05)
    await c.stop()
    for t in pending:
        with pytest.raises(StopAsyncIteration):
            await t
    c2 = Cacher(store, PREFIX, decode)
    await c2.start()
    w = c2.watch(PREFIX, 0)
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await nxt(w)
    assert not c2.running
    await c2.stop()


class _CompactOnce:
    """A store whose first watch fails with CompactedError, as after falling behind etcd."""

    def __init__(self, store: SQLiteStore):
        self._store = store
        self.watches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        self.watches += 1
        if self.watches == 1:
            return self._fail(from_revision)
        return self._store.watch(prefix, from_revision)

    async def _fail(self, rev: int) -> AsyncIterator[Event]:
        await asyncio.sleep(0.05)
        raise CompactedError(rev, rev + 1)
        yield  # pragma: no cover


async def test_relist_after_compacted_watch(store: SQLiteStore) -> None:
    flaky = _CompactOnce(store)
    c = Cacher(flaky, PREFIX, decode)  # type: ignore[arg-type]
    await c.start()
    try:
        w = c.watch(PREFIX, 0)
        kv = await store.create(f"{PREFIX}ns/a", val())
        await asyncio.sleep(0.1)  # the first watch fails, the cache re-lists
        assert c.get(kv.key) is not None and c.revision == kv.mod_revision
        # The ring watcher resumes from the store and still sees the event.
        assert (await nxt(w)).kv == kv
        kv2 = await store.create(f"{PREFIX}ns/b", val())
        assert (await nxt(w)).kv == kv2
        await c.wait_until_fresh(kv2.mod_revision, timeout=1)
    finally:
        await c.stop()


async def test_thousand_watchers(store: SQLiteStore, cacher: Cacher) -> None:
    watchers = [cacher.watch(PREFIX, 0) for _ in range(1000)]
    received: list[float] = []

    async def consume(w: AsyncIterator[CacheEvent]) -> CacheEvent:
        ev = await nxt(w)
        received.append(time.monotonic())
        return ev

    tasks = [asyncio.create_task(consume(w)) for w in watchers]  # type: ignore[arg-type]
    await asyncio.sleep(0.05)  # all waiting
    decoded.clear()
    t0 = time.monotonic()
    kv = await store.create(f"{PREFIX}ns/hot", val(v=1))
    events = await asyncio.gather(*tasks)
    assert max(received) - t0 < 1.0
    assert all(e.kv == kv for e in events)
    assert len({id(e.obj) for e in events}) == 1 and decoded == [kv]  # decoded once, shared


async def test_stop_releases_store_watches(store: SQLiteStore) -> None:
    c = Cacher(store, PREFIX, decode, capacity=5)
    await c.start()
    await asyncio.sleep(0.01)
    assert len(store._mailboxes) == 1  # the reflector's watch
    start = (await store.create(f"{PREFIX}ns/a", val())).mod_revision
    for i in range(10):
        await store.create(f"{PREFIX}ns/k{i}", val())
    await c.wait_until_fresh(await store.current_revision())
    w = c.watch(PREFIX, start)  # older than the ring: a store watch
    assert (await nxt(w)).kv.key == f"{PREFIX}ns/k0"
    assert len(store._mailboxes) == 2
    # A consumer that gives up mid-wait (client disconnect) must not leak the store watch.
    with pytest.raises(asyncio.TimeoutError):
        for _ in range(20):
            await nxt(w, 0.05)
    await w.aclose()  # type: ignore[attr-defined]
    assert len(store._mailboxes) == 1
    with pytest.raises(StopAsyncIteration):
        await nxt(w)
    await c.stop()
    assert not store._mailboxes


async def test_lapped_watcher_on_empty_store_gets_410(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "empty.db"))
    c = Cacher(store, PREFIX, decode, capacity=5)
    await c.start()
    try:
        w = c.watch(PREFIX, 0)  # at revision 0: no revision to resume the store's watch from
        for i in range(10):
            kv = await store.create(f"{PREFIX}ns/k{i}", val())
        await c.wait_until_fresh(kv.mod_revision)
        with pytest.raises(CompactedError):
            await nxt(w)
    finally:
        await c.stop()
        await store.close()
