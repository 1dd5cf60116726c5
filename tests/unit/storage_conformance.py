"""Backend-independent conformance suite for the Store protocol.

Use it by subclassing `StoreConformance` in a test module and providing fixtures:

    class TestMyStore(StoreConformance):
        @pytest.fixture
        async def store(self):          # a fresh, empty store; closed afterwards
            ...
        @pytest.fixture
        def reopen(self):               # optional: async (old_store) -> new store on
            ...                         # the same data, or None if not persistent

The file is not named test_*.py, so pytest only collects it through subclasses.
Every test uses keys under its own prefix so it also works on a shared backend.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from kplane.storage.interface import (
    KV,
    CompactedError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    RevisionConflictError,
    Store,
)

Reopen = Callable[[Store], Awaitable[Store]]


async def next_event(it: AsyncIterator[Event], timeout: float = 5.0) -> Event:
    return await asyncio.wait_for(it.__anext__(), timeout)


async def collect(it: AsyncIterator[Event], n: int, timeout: float = 5.0) -> list[Event]:
    return [await next_event(it, timeout) for _ in range(n)]


async def assert_no_event(it: AsyncIterator[Event], wait: float = 0.1) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(it.__anext__(), wait)


async def base_revision(store: Store) -> int:
    """A non-zero current revision to watch from (0 would mean "from now")."""
    await store.create(f"/unrelated/{await store.current_revision()}", b"seed")
    return await store.current_revision()


class StoreConformance:
    @pytest.fixture
    def reopen(self) -> Reopen | None:
        return None  # backends that persist override this

    # -- single-key operations ---------------------------------------------

    async def test_create_and_get(self, store: Store) -> None:
        kv = await store.create("/c/a", b"one")
        assert kv.key == "/c/a" and kv.value == b"one"
        assert kv.create_revision == kv.mod_revision > 0
        assert await store.get("/c/a") == kv
        assert await store.get("/c/missing") is None

    async def test_create_existing_raises(self, store: Store) -> None:
        kv = await store.create("/c/a", b"one")
        with pytest.raises(KeyExistsError) as e:
            await store.create("/c/a", b"two")
        assert e.value.key == "/c/a"
        assert await store.get("/c/a") == kv

    async def test_update_with_expected_revision(self, store: Store) -> None:
        kv1 = await store.create("/u/a", b"1")
        kv2 = await store.update("/u/a", b"2", expected_revision=kv1.mod_revision)
        assert kv2.value == b"2" and kv2.mod_revision > kv1.mod_revision
        assert kv2.create_revision == kv1.create_revision
        with pytest.raises(RevisionConflictError) as e:
            await store.update("/u/a", b"3", expected_revision=kv1.mod_revision)
        assert (e.value.expected, e.value.actual) == (kv1.mod_revision, kv2.mod_revision)
        assert await store.get("/u/a") == kv2

    async def test_unconditional_update(self, store: Store) -> None:
        kv1 = await store.create("/u/a", b"1")
        await store.update("/u/a", b"2", expected_revision=0)
        kv3 = await store.update("/u/a", b"3", expected_revision=0)
        assert kv3.value == b"3" and kv3.create_revision == kv1.create_revision
        with pytest.raises(KeyNotFoundError):
            await store.update("/u/missing", b"x", expected_revision=0)
        assert await store.get("/u/missing") is None

    async def test_delete_with_preconditions(self, store: Store) -> None:
        kv1 = await store.create("/d/a", b"1")
        kv2 = await store.update("/d/a", b"2", expected_revision=0)
        with pytest.raises(RevisionConflictError):
            await store.delete("/d/a", expected_revision=kv1.mod_revision)
        assert await store.get("/d/a") == kv2
        deleted = await store.delete("/d/a", expected_revision=kv2.mod_revision)
        assert deleted.value == b"2" and deleted.create_revision == kv1.create_revision
        assert deleted.mod_revision > kv2.mod_revision
        assert deleted.mod_revision == await store.current_revision()
        assert await store.get("/d/a") is None
        # The key can be created again, as a new object.
        again = await store.create("/d/a", b"new")
        assert again.create_revision == again.mod_revision > deleted.mod_revision

    async def test_delete_missing(self, store: Store) -> None:
        before = await store.current_revision()
        with pytest.raises(KeyNotFoundError):
            await store.delete("/d/missing")
        assert await store.current_revision() == before

    async def test_revisions_strictly_increase(self, store: Store) -> None:
        seen = [await store.current_revision()]
        seen.append((await store.create("/r/a", b"1")).mod_revision)
        seen.append((await store.create("/r/b", b"1")).mod_revision)
        with pytest.raises(KeyExistsError):
            await store.create("/r/a", b"x")  # a failed write takes no revision
        seen.append((await store.update("/r/a", b"2", expected_revision=0)).mod_revision)
        seen.append((await store.delete("/r/b")).mod_revision)
        kvs = await asyncio.gather(*(store.create(f"/r/c{i}", b"v") for i in range(20)))
        seen.extend(sorted(kv.mod_revision for kv in kvs))
        assert all(a < b for a, b in itertools.pairwise(seen)), seen
        assert len({kv.mod_revision for kv in kvs}) == 20
        assert await store.current_revision() == seen[-1]

    # -- list -----------------------------------------------------------------

    async def test_list_prefix_isolation(self, store: Store) -> None:
        for key in ("/a/b", "/a/b/x", "/a/b/y", "/a/bc", "/a/bc/z", "/a/a"):
            await store.create(key, key.encode())
        res = await store.list("/a/b/")
        assert [kv.key for kv in res.items] == ["/a/b/x", "/a/b/y"]
        assert not res.more
        assert res.revision == await store.current_revision()
        assert [kv.key for kv in (await store.list("/a/bc/")).items] == ["/a/bc/z"]
        assert [kv.key for kv in (await store.list("/a/")).items] == [
            "/a/a", "/a/b", "/a/b/x", "/a/b/y", "/a/bc", "/a/bc/z"]
        assert (await store.list("/zzz/")).items == []

    async def test_list_values_and_revisions(self, store: Store) -> None:
        kv1 = await store.create("/l/a", b"1")
        kv2 = await store.update("/l/a", b"2", expected_revision=0)
        res = await store.list("/l/")
        assert res.items == [kv2]
        assert res.items[0].create_revision == kv1.create_revision

    async def test_list_chunking_is_consistent(self, store: Store) -> None:
        keys = [f"/p/k{i:02d}" for i in range(10)]
        for k in keys:
            await store.create(k, b"v0")
        first = await store.list("/p/", limit=3)
        assert [kv.key for kv in first.items] == keys[:3] and first.more
        assert first.remaining == 7  # remainingItemCount: the keys after this chunk
        # Writes between chunks must not show up in the later chunks.
        await store.delete(keys[5])
        await store.update(keys[7], b"v1", expected_revision=0)
        await store.create("/p/k05a", b"new")
        got, rev, last = list(first.items), first.revision, first.items[-1].key
        while True:
            page = await store.list("/p/", revision=rev, start_after=last, limit=3)
            assert page.revision == rev
            # Counted at the chunk's revision: the later writes change nothing.
            assert page.remaining == (10 - len(got) - len(page.items) if page.more else 0)
            got.extend(page.items)
            if not page.more:
                break
            last = page.items[-1].key
        assert [kv.key for kv in got] == keys
        assert all(kv.value == b"v0" for kv in got)
        # An exact-fit limit reports no more items.
        exact = await store.list("/p/", revision=rev, start_after=keys[6], limit=3)
        assert [kv.key for kv in exact.items] == keys[7:] and not exact.more

    async def test_list_start_after_latest(self, store: Store) -> None:
        for k in ("/s/a", "/s/b", "/s/c"):
            await store.create(k, b"v")
        res = await store.list("/s/", start_after="/s/a")
        assert [kv.key for kv in res.items] == ["/s/b", "/s/c"]
        res = await store.list("/s/", start_after="/s/c")
        assert res.items == [] and not res.more

    async def test_list_at_old_revision(self, store: Store) -> None:
        a1 = await store.create("/h/a", b"a1")
        b1 = await store.create("/h/b", b"b1")
        a2 = await store.update("/h/a", b"a2", expected_revision=0)
        await store.delete("/h/b")
        c1 = await store.create("/h/c", b"c1")

        async def state(rev: int) -> list[KV]:
            res = await store.list("/h/", revision=rev)
            assert res.revision == rev
            return res.items

        assert await state(a1.mod_revision) == [a1]
        assert await state(b1.mod_revision) == [a1, b1]
        assert await state(a2.mod_revision) == [a2, b1]
        assert await state(a2.mod_revision + 1) == [a2]
        assert await state(c1.mod_revision) == [a2, c1]
        assert (await store.list("/h/", revision=b1.mod_revision, limit=1)).items == [a1]

    async def test_list_compacted_and_future_revisions(self, store: Store) -> None:
        a1 = await store.create("/x/a", b"a1")
        b1 = await store.create("/x/b", b"b1")
        a2 = await store.update("/x/a", b"a2", expected_revision=0)
        await store.delete("/x/b")
        c1 = await store.create("/x/c", b"c1")
        await store.compact(a2.mod_revision)
        assert await store.compacted_revision() == a2.mod_revision
        with pytest.raises(CompactedError) as e:
            await store.list("/x/", revision=b1.mod_revision)
        assert e.value.requested == b1.mod_revision and e.value.compacted == a2.mod_revision
        # History from the compaction point on survives.
        assert (await store.list("/x/", revision=a2.mod_revision)).items == [a2, b1]
        assert (await store.list("/x/", revision=c1.mod_revision - 1)).items == [a2]
        assert (await store.list("/x/")).items == [a2, c1]
        assert await store.get("/x/a") == a2
        current = await store.current_revision()
        with pytest.raises(FutureRevisionError) as f:
            await store.list("/x/", revision=current + 1)
        assert f.value.requested == current + 1
        del a1

    async def test_compaction_keeps_unchanged_keys(self, store: Store) -> None:
        old = await store.create("/k/old", b"v")  # never written again
        for i in range(5):
            await store.create(f"/k/n{i}", b"v")
        top = await store.current_revision()
        await store.compact(top)
        assert old in (await store.list("/k/", revision=top)).items
        assert await store.get("/k/old") == old
        # Compacting again at or below the compacted revision is a no-op.
        await store.compact(top - 1)
        assert await store.compacted_revision() == top
        # Revisions keep increasing after compacting everything.
        assert (await store.create("/k/after", b"v")).mod_revision == top + 1

    # -- watch -----------------------------------------------------------------

    async def test_watch_replays_history_in_order(self, store: Store) -> None:
        start = await base_revision(store)
        a1 = await store.create("/w/a", b"1")
        a2 = await store.update("/w/a", b"2", expected_revision=0)
        b1 = await store.create("/w/b", b"1")
        ad = await store.delete("/w/a")
        w = store.watch("/w/", start)
        events = await collect(w, 4)
        assert [(e.type, e.kv.key, e.revision) for e in events] == [
            ("ADDED", "/w/a", a1.mod_revision), ("MODIFIED", "/w/a", a2.mod_revision),
            ("ADDED", "/w/b", b1.mod_revision), ("DELETED", "/w/a", ad.mod_revision)]
        assert events[0].kv == a1 and events[1].kv == a2 and events[2].kv == b1
        # Then live events, with no duplicates of the replayed ones.
        b2 = await store.update("/w/b", b"2", expected_revision=0)
        assert (await next_event(w)).kv == b2
        await assert_no_event(w)
        # from_revision excludes the event at that revision itself.
        w2 = store.watch("/w/", a2.mod_revision)
        assert [e.revision for e in await collect(w2, 3)] == [b1.mod_revision, ad.mod_revision, b2.mod_revision]

    async def test_watch_from_now(self, store: Store) -> None:
        await store.create("/n/old", b"v")
        w = store.watch("/n/", 0)
        kv = await store.create("/n/new", b"v")  # written before the first __anext__
        e = await next_event(w)
        assert (e.type, e.kv) == ("ADDED", kv)
        await assert_no_event(w)

    async def test_cancelled_next_loses_nothing(self, store: Store) -> None:
        start = await base_revision(store)
        w = store.watch("/cn/", start)
        await assert_no_event(w, 0.05)  # wait_for cancels the pending __anext__
        kv1 = await store.create("/cn/a", b"1")
        await assert_no_event(store.watch("/cn/", kv1.mod_revision), 0.05)
        kv2 = await store.create("/cn/b", b"1")
        assert [e.kv for e in await collect(w, 2)] == [kv1, kv2]

    async def test_watch_from_current_revision(self, store: Store) -> None:
        await store.create("/n/old", b"v")
        w = store.watch("/n/", await store.current_revision())
        kv = await store.update("/n/old", b"v2", expected_revision=0)
        assert (await next_event(w)).kv == kv

    async def test_watch_prefix_filtering(self, store: Store) -> None:
        w = store.watch("/f/a/", 0)
        await store.create("/f/a", b"x")
        await store.create("/f/ab/1", b"x")
        await store.create("/f/b/1", b"x")
        kv = await store.create("/f/a/1", b"x")
        assert (await next_event(w)).kv == kv
        await assert_no_event(w)

    async def test_watch_event_details(self, store: Store) -> None:
        start = await base_revision(store)
        w = store.watch("/e/", 0)
        kv1 = await store.create("/e/a", b"1")
        kv2 = await store.update("/e/a", b"2", expected_revision=0)
        deleted = await store.delete("/e/a")
        added, modified, removed = await collect(w, 3)
        assert added.type == "ADDED" and added.kv == kv1
        assert modified.type == "MODIFIED" and modified.kv == kv2
        assert modified.prev is None or modified.prev == kv1
        # DELETED carries the last value, with mod_revision = the delete revision.
        assert removed.type == "DELETED"
        assert removed.kv == KV("/e/a", b"2", kv1.create_revision, deleted.mod_revision)
        assert removed.revision == deleted.mod_revision
        assert removed.prev is None or removed.prev == kv2
        # The same details when replayed from history.
        replayed = await collect(store.watch("/e/", start), 3)
        assert [(e.type, e.kv) for e in replayed] == [(e.type, e.kv) for e in (added, modified, removed)]

    async def test_watch_during_concurrent_writes(self, store: Store) -> None:
        start = (await store.create("/cw/base", b"v")).mod_revision
        tasks = [asyncio.create_task(store.create(f"/cw/k{i:03d}", b"v")) for i in range(200)]
        early = store.watch("/cw/", start)  # catch-up starts while writes are queued
        await asyncio.gather(*tasks[:50])
        late = store.watch("/cw/", start)  # catch-up overlaps the remaining writes
        first_events = await collect(late, 10)
        kvs = await asyncio.gather(*tasks)
        expected = sorted(kv.mod_revision for kv in kvs)
        for got in ([e.revision for e in await collect(early, 200)],
                    [e.revision for e in first_events] + [e.revision for e in await collect(late, 190)]):
            assert got == expected
        await assert_no_event(late)

    async def test_watch_compacted_revision(self, store: Store) -> None:
        start = await base_revision(store)
        await store.create("/wc/a", b"1")
        kv2 = await store.update("/wc/a", b"2", expected_revision=0)
        kv3 = await store.update("/wc/a", b"3", expected_revision=0)
        await store.compact(kv2.mod_revision)
        with pytest.raises(CompactedError) as e:
            await next_event(store.watch("/wc/", start))
        assert e.value.compacted == kv2.mod_revision
        # Watching from the compacted revision itself still works.
        e3 = await next_event(store.watch("/wc/", kv2.mod_revision))
        assert e3.kv == kv3 and e3.type == "MODIFIED"

    async def test_close_ends_watches(self, store: Store) -> None:
        w = store.watch("/cl/", 0)
        waiting = asyncio.create_task(w.__anext__())
        await asyncio.sleep(0.05)
        await store.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 5)
        await store.close()  # idempotent

    async def test_restart_persistence(self, store: Store, reopen: Reopen | None) -> None:
        if reopen is None:
            pytest.skip("backend does not support reopening")
        a1 = await store.create("/rs/a", b"1")
        b1 = await store.create("/rs/b", b"1")
        await store.update("/rs/a", b"2", expected_revision=0)
        bd = await store.delete("/rs/b")
        await store.compact(a1.mod_revision)
        store2 = await reopen(store)
        assert await store2.current_revision() == bd.mod_revision
        assert await store2.compacted_revision() == a1.mod_revision
        assert [kv.value for kv in (await store2.list("/rs/")).items] == [b"2"]
        assert (await store2.list("/rs/", revision=b1.mod_revision)).items[1] == b1
        events = await collect(store2.watch("/rs/", a1.mod_revision), 3)
        assert [e.type for e in events] == ["ADDED", "MODIFIED", "DELETED"]
        kv = await store2.create("/rs/c", b"1")
        assert kv.mod_revision == bd.mod_revision + 1
