"""Several versions of one kind in an extension server: one storage (v1), conversion functions,
admission that sees the storage version, watch events in the watcher's version. Uses the
examples/shop app in-process (no TLS, no kplane)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kplane.apiserver.auth import ALLOW, RequestAttributes, UserInfo
from kplane.extension import ExtensionServer, resource
from kplane.storage.sqlite import open_sqlite_store

V1 = "/apis/shop.example.com/v1/namespaces/default/orders"
V1BETA1 = "/apis/shop.example.com/v1beta1/namespaces/default/orders"


class AllowAll:
    async def authenticate(self, request: web.Request) -> UserInfo | None:
        groups = tuple(g for g in request.headers.get("X-Test-Groups", "").split(",") if g)
        return UserInfo(request.headers.get("X-Test-User", "alice"), ("system:authenticated", *groups))

    async def authorize(self, attrs: RequestAttributes) -> tuple[str, str]:
        return ALLOW, ""


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[tuple[TestClient, ExtensionServer]]:
    import importlib

    import examples.shop

    app = importlib.reload(examples.shop).app  # a fresh app (handles are bound to one server)
    store = await open_sqlite_store(str(tmp_path / "store.db"))
    server = app.build(store, AllowAll(), AllowAll())
    for cacher in server.cachers.values():
        await cacher.start()
    client = TestClient(TestServer(server.build_app()))
    await client.start_server()
    try:
        yield client, app
    finally:
        await client.close()
        await server.stop()
        await store.close()


async def _json(resp: Any) -> Any:
    return orjson.loads(await resp.read())


async def test_one_storage_two_versions(shop: tuple[TestClient, ExtensionServer]) -> None:
    c, app = shop
    r = await c.post(V1BETA1, json={"apiVersion": "shop.example.com/v1beta1", "kind": "Order",
                                    "metadata": {"name": "b1"}, "spec": {"product": "apple", "count": 3}})
    assert r.status == 201, await r.text()
    created = await _json(r)
    assert created["apiVersion"] == "shop.example.com/v1beta1"
    assert created["spec"] == {"product": "apple", "count": 3}

    # The same object in v1, converted from storage.
    got = await _json(await c.get(f"{V1}/b1"))
    assert got["apiVersion"] == "shop.example.com/v1"
    assert got["spec"] == {"item": "apple", "qty": 3}
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

    # It is stored in v1.
    kv = await app.server.store.get("/registry/shop.example.com/orders/default/b1")
    assert orjson.loads(kv.value)["apiVersion"] == "shop.example.com/v1"
    assert orjson.loads(kv.value)["spec"] == {"item": "apple", "qty": 3}

    # Updating through v1 is seen in v1beta1; lists in both versions.
    got["spec"]["qty"] = 7
    r = await c.put(f"{V1}/b1", json=got)
    assert r.status == 200, await r.text()
    beta = await _json(await c.get(f"{V1BETA1}/b1"))
    assert beta["spec"] == {"product": "apple", "count": 7} and beta["metadata"]["generation"] == 2
    items = (await _json(await c.get(V1BETA1)))["items"]
    assert [(i["apiVersion"], i["spec"]["count"]) for i in items] == [("shop.example.com/v1beta1", 7)]

    # Merge patch in v1beta1.
    r = await c.patch(f"{V1BETA1}/b1", data=b'{"spec": {"count": 9}}',
                      headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200, await r.text()
    assert (await _json(await c.get(f"{V1}/b1")))["spec"]["qty"] == 9


async def test_admission_sees_the_storage_version(shop: tuple[TestClient, ExtensionServer]) -> None:
    c, _ = shop
    r = await c.post(V1BETA1, json={"metadata": {"name": "d"}, "spec": {"product": "durian"}})
    assert r.status == 403
    message = (await _json(r))["message"]
    assert message == 'orders.shop.example.com "d" is forbidden: durians are not sold here'
    r = await c.post(V1BETA1, json={"metadata": {"name": "big"}, "spec": {"product": "apple", "count": 51}})
    assert r.status == 422
    assert (await _json(r))["details"]["causes"][0]["field"] == "spec.qty"
    r = await c.post(V1BETA1, json={"metadata": {"name": "big"}, "spec": {"product": "apple", "count": 51}},
                     headers={"X-Test-Groups": "buyers"})
    assert r.status == 201
    r = await c.patch(f"{V1BETA1}/big", data=b'{"spec": {"product": "cherry"}}',
                      headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 422 and "field is immutable" in (await _json(r))["message"]


async def test_watch_in_each_version(shop: tuple[TestClient, ExtensionServer]) -> None:
    c, _ = shop
    w1 = await c.get(f"{V1}?watch=1&timeoutSeconds=5")
    wb = await c.get(f"{V1BETA1}?watch=1&timeoutSeconds=5")
    await c.post(V1, json={"metadata": {"name": "w"}, "spec": {"item": "banana", "qty": 2}})
    ev1 = orjson.loads(await asyncio.wait_for(w1.content.readline(), 5))
    evb = orjson.loads(await asyncio.wait_for(wb.content.readline(), 5))
    assert ev1["object"]["spec"] == {"item": "banana", "qty": 2}
    assert evb["object"]["apiVersion"] == "shop.example.com/v1beta1"
    assert evb["object"]["spec"] == {"product": "banana", "count": 2}
    w1.close()
    wb.close()


async def test_action_and_computed_resource(shop: tuple[TestClient, ExtensionServer]) -> None:
    c, _ = shop
    await c.post(V1, json={"metadata": {"name": "a"}, "spec": {"item": "cherry", "qty": 20}})
    r = await c.post(f"{V1}/a/approve", json={"note": "ok"}, headers={"X-Test-User": "boss"})
    assert r.status == 201, await r.text()
    assert (await _json(r))["status"] == {"phase": "Approved", "approvedBy": "boss", "note": "ok"}
    stocks = await _json(await c.get("/apis/shop.example.com/v1/stocks"))
    cherry = next(s for s in stocks["items"] if s["metadata"]["name"] == "cherry")
    assert (cherry["reserved"], cherry["available"]) == (20, 480)


def test_declaration_errors() -> None:
    app = ExtensionServer(group="x.example.com", version="v1")

    @resource(app, kind="Thing", plural="things", storage=True)
    class Thing:
        a: str = ""

    with pytest.raises(ValueError, match="two storage versions"):
        resource(app, kind="Thing", plural="things", version="v2", storage=True)(Thing)
    with pytest.raises(ValueError, match="declared twice in v1"):
        resource(app, kind="Thing", plural="things")(Thing)
    with pytest.raises(ValueError, match="different names or scopes"):
        resource(app, kind="Thing", plural="things", version="v3", scope="Cluster")(Thing)
    resource(app, kind="Thing", plural="things", version="v2")(dict)
    assert app.versions == ["v1", "v2"]
    # Without a converter, a version changes apiVersion alone.
    obj = {"apiVersion": "x.example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": {"a": "b"}}
    assert app.convert(obj, "v2") == dict(obj, apiVersion="x.example.com/v2")


async def test_etcd_store_with_the_upstream_key_layout(tmp_path: Path) -> None:
    """--etcd-servers: the same two versions over a real etcd, keys under /registry/<group>/."""
    import importlib

    import examples.shop
    from kplane.extension import Options
    from kplane.testing.etcd import EtcdProcess, require_etcd

    require_etcd()
    app = importlib.reload(examples.shop).app
    with EtcdProcess() as etcd:
        store = await app.open_store(Options(etcd_servers=[etcd.url]), tmp_path)
        server = app.build(store, AllowAll(), AllowAll())
        for cacher in server.cachers.values():
            await cacher.start()
        client = TestClient(TestServer(server.build_app()))
        await client.start_server()
        try:
            r = await client.post(V1BETA1, json={"metadata": {"name": "e1"}, "spec": {"product": "fig"}})
            assert r.status == 201, await r.text()
            assert (await _json(await client.get(f"{V1}/e1")))["spec"] == {"item": "fig", "qty": 1}
            kv = await store.get("/registry/shop.example.com/orders/default/e1")
            assert orjson.loads(kv.value)["apiVersion"] == "shop.example.com/v1"
            if shutil.which("etcdctl"):  # the key in etcd: the prefix replaces /registry
                keys = (await asyncio.to_thread(
                    subprocess.run, ["etcdctl", "--endpoints", etcd.url, "get", "--prefix", "--keys-only",
                                     "/registry/shop.example.com/"], capture_output=True, text=True,
                    check=True)).stdout.split()
                assert keys == ["/registry/shop.example.com/shop.example.com/orders/default/e1"]
        finally:
            await client.close()
            await server.stop()
            await store.close()
