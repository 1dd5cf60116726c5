"""EtcdStore against a real etcd: the shared conformance suite plus etcd-specific behaviour.

One etcd per module on free loopback ports (the `etcd` binary, Debian `etcd-server`); the
tests skip when it is missing, except under CI where that is an error. Each test uses its
own key prefix, so the suite runs unchanged on the shared server.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest

from kplane.storage.etcd import EtcdStore, open_etcd_store
from kplane.storage.interface import CompactedError, Event, KeyExistsError, Progress, Store, UnavailableError
from kplane.testing.etcd import EtcdCluster, EtcdProcess, require_etcd
from tests.unit.storage_conformance import Reopen, StoreConformance, assert_no_event, collect, next_event

_ids = itertools.count()


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdProcess]:
    require_etcd()
    with EtcdProcess() as proc:
        yield proc


def _raw(etcd: EtcdProcess, path: str, body: dict) -> dict:
    req = urllib.request.Request(etcd.url + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _put(etcd: EtcdProcess, key: str, value: str) -> int:
    """A write straight to etcd; its revision."""
    return int(_raw(etcd, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})["header"]["revision"])


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


async def _open(etcd: EtcdProcess, prefix: str, **kwargs) -> EtcdStore:
    return await open_etcd_store([etcd.url], prefix=prefix, root="", **kwargs)


class TestEtcdConformance(StoreConformance):
    @pytest.fixture
    async def store(self, etcd: EtcdProcess) -> AsyncIterator[EtcdStore]:
        self.prefix = f"/conformance/{next(_ids)}"
        s = await _open(etcd, self.prefix)
        yield s
        await s.close()

    @pytest.fixture
    async def reopen(self, etcd: EtcdProcess) -> AsyncIterator[Reopen]:
        opened: list[Store] = []

        async def _reopen(old: Store) -> Store:
            await old.close()
            new = await _open(etcd, self.prefix)
            opened.append(new)
            return new

        yield _reopen
        for s in opened:
            await s.close()


@pytest.fixture
async def store(etcd: EtcdProcess) -> AsyncIterator[EtcdStore]:
    s = await _open(etcd, f"/specific/{next(_ids)}")
    yield s
    await s.close()


async def test_kube_key_layout(etcd: EtcdProcess) -> None:
    """Registry keys are stored as kube-apiserver stores them; --etcd-prefix replaces /registry."""
    ns = f"ns{next(_ids)}"
    default = await open_etcd_store([etcd.url])
    other = await open_etcd_store([etcd.url], prefix="/other")
    try:
        kv = await default.create(f"/registry/configmaps/{ns}/a", b'{"kind":"ConfigMap"}')
        await other.create(f"/registry/configmaps/{ns}/b", b'{"kind":"ConfigMap"}')
        got = _raw(etcd, "/v3/kv/range", {"key": _b64(f"/registry/configmaps/{ns}/a")})["kvs"][0]
        assert base64.b64decode(got["value"]) == b'{"kind":"ConfigMap"}'
        assert int(got["mod_revision"]) == kv.mod_revision
        assert _raw(etcd, "/v3/kv/range", {"key": _b64(f"/other/configmaps/{ns}/b")}).get("count") == "1"
        assert [k.key for k in (await other.list(f"/registry/configmaps/{ns}/")).items] == [
            f"/registry/configmaps/{ns}/b"]
        with pytest.raises(ValueError):
            await default.get("/elsewhere/x")
    finally:
        await default.close()
        await other.close()


async def test_progress_notify_covers_writes_elsewhere(store: EtcdStore, etcd: EtcdProcess) -> None:
    w = store.watch("/p/", 0, progress_notify=True)
    plain = store.watch("/p/", 0)
    await store.create("/other/a", b"v")
    # A write outside the store's prefix moves etcd's revision too (kube's compact_rev_key does).
    foreign = _put(etcd, "/foreign/x", "v")
    assert await store.current_revision() == foreign
    await store.request_progress()
    item = await next_event(w)
    assert isinstance(item, Progress) and item.revision == foreign
    mine = await store.create("/p/a", b"v")
    assert (await next_event(w)).kv == mine
    assert (await next_event(plain)).kv == mine  # plain watchers never see Progress


async def test_watch_older_than_local_history(etcd: EtcdProcess) -> None:
    """A watch from before the store's in-memory log is served by etcd's own history."""
    s = await _open(etcd, f"/old/{next(_ids)}", history_limit=4)
    try:
        start = await s.current_revision()
        kvs = [await s.create(f"/h/k{i}", b"v") for i in range(10)]
        assert s._floor > start
        w = s.watch("/h/", start, progress_notify=True)
        got = [e for e in await collect(w, 10)]
        assert [e.kv for e in got] == kvs
        assert w._remote is None  # caught up: continued from the local log
        later = await s.create("/h/later", b"v")
        assert (await next_event(w)).kv == later
        await s.compact(kvs[5].mod_revision)
        with pytest.raises(CompactedError) as e:
            await next_event(s.watch("/h/", start))
        assert e.value.compacted == kvs[5].mod_revision
    finally:
        await s.close()


async def test_etcd_restart_during_watch() -> None:
    require_etcd()
    with EtcdProcess() as etcd:
        s = await _open(etcd, "/restart")
        try:
            w = s.watch("/r/", 0)
            kv1 = await s.create("/r/a", b"1")
            assert (await next_event(w)).kv == kv1
            etcd.stop()
            with pytest.raises(UnavailableError):
                await s.get("/r/a")
            with pytest.raises(UnavailableError):
                await s.check()
            await assert_no_event(w, 0.2)
            etcd.start()
            kv2 = await s.update("/r/a", b"2", expected_revision=kv1.mod_revision)
            e = await next_event(w, 10)
            assert (e.type, e.kv) == ("MODIFIED", kv2)
            await s.check()
        finally:
            await s.close()


async def test_restart_with_compaction_while_down_reports_compacted() -> None:
    """Events missed while disconnected and compacted meanwhile: watchers get CompactedError (410)."""
    require_etcd()
    with EtcdProcess() as etcd:
        s = await _open(etcd, "/lost")
        try:
            w = s.watch("/l/", 0)
            await s.create("/l/a", b"1")
            assert (await next_event(w)).type == "ADDED"
            s._stream_task.cancel()  # simulate a long disconnect
            await asyncio.sleep(0.05)
            for i in range(3):
                _put(etcd, "/lost/l/a", str(i))
            top = _put(etcd, "/lost/l/b", "x")
            _raw(etcd, "/v3/kv/compaction", {"revision": top})
            s._stream_task = asyncio.create_task(s._follow())
            with pytest.raises(CompactedError) as e:
                await next_event(w, 10)
            assert e.value.compacted == top
            # A watch opened at once, while the store's own stream is still re-established,
            # misses nothing after its revision.
            w2 = s.watch("/l/", top)
            kv = await s.create("/l/c", b"v")
            assert (await next_event(w2, 10)).kv == kv
        finally:
            await s.close()


async def test_three_member_cluster_survives_one_member_down() -> None:
    require_etcd()
    with EtcdCluster(3) as cluster:
        # The first URL is the member that will die: the client must fail over.
        s = await open_etcd_store(cluster.urls, prefix="/ha", root="")
        try:
            w = s.watch("/x/", 0)
            kv = await s.create("/x/a", b"1")
            assert (await next_event(w)).kv == kv
            cluster.members[0].kill()
            # Writes may fail with UnavailableError (503) until the survivors elect a leader.
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                try:
                    kv2 = await s.create("/x/b", b"2")
                    break
                except UnavailableError:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.2)
                except KeyExistsError:  # an attempt that timed out had been applied
                    kv2 = await s.get("/x/b")
                    break
            assert (await s.get("/x/b")) == kv2
            e = await next_event(w, 15)  # the store's watch reconnected to another member
            assert isinstance(e, Event) and e.kv == kv2
            kv3 = await s.update("/x/a", b"3", expected_revision=kv.mod_revision)
            assert (await next_event(w, 5)).kv == kv3
            await s.check()
        finally:
            await s.close()


async def test_periodic_compaction(store: EtcdStore) -> None:
    """Like kube-apiserver: each interval compacts to the revision seen one interval earlier."""
    kv = await store.create("/c/a", b"v")
    store.start_compactor(0.3)
    for _ in range(50):
        await asyncio.sleep(0.1)
        if await store.compacted_revision() >= kv.mod_revision:
            break
    assert await store.compacted_revision() >= kv.mod_revision


async def test_unreachable_etcd_is_unavailable() -> None:
    from kplane.testing.etcd import _free_port

    with pytest.raises(UnavailableError):
        await open_etcd_store([f"http://127.0.0.1:{_free_port()}"], request_timeout=0.5)


async def test_an_event_lease_outlives_its_ttl_by_at_most_five_percent(etcd: EtcdProcess) -> None:
    """Upstream's lease manager: writes share a lease for min(60 s, 5% of the TTL)."""
    s = await _open(etcd, f"/ttl/{next(_ids)}", lease_ttls={"/events/": 100, "/short/": 10}, lease_reuse=60)
    try:
        for key in ("/events/ns/a", "/short/ns/b"):
            await s.create(key, b"{}")
        granted = {}
        for key in ("/events/ns/a", "/short/ns/b"):
            lease = _raw(etcd, "/v3/kv/range", {"key": _b64(s._prefix + key)})["kvs"][0]["lease"]
            granted[key] = int(_raw(etcd, "/v3/lease/timetolive", {"ID": lease})["grantedTTL"])
        assert granted == {"/events/ns/a": 105, "/short/ns/b": 10}
    finally:
        await s.close()


async def test_event_keys_expire_through_a_lease(etcd: EtcdProcess) -> None:
    """Like kube-apiserver's --event-ttl: events carry an etcd lease; other keys do not."""
    s = await _open(etcd, f"/ttl/{next(_ids)}", lease_ttls={"/events/": 1}, lease_reuse=0.5)
    try:
        w = s.watch("/events/", 0)
        ev = await s.create("/events/ns/e1", b"{}")
        await s.update("/events/ns/e1", b'{"count":2}', expected_revision=ev.mod_revision)
        await s.create("/configmaps/ns/c1", b"{}")
        leases = _raw(etcd, "/v3/kv/range", {"key": _b64(s._prefix + "/events/ns/e1")})["kvs"][0]
        assert leases.get("lease")
        assert [e.type for e in await collect(w, 2)] == ["ADDED", "MODIFIED"]
        gone = await next_event(w, 10)  # TTL 1 s + reuse 0.5 s, checked by etcd every 0.5 s
        assert (gone.type, gone.kv.key) == ("DELETED", "/events/ns/e1")
        assert await s.get("/events/ns/e1") is None
        assert await s.get("/configmaps/ns/c1") is not None
    finally:
        await s.close()
