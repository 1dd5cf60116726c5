"""kplane.extension: schemas from type hints, defaults, validation, admission, computed
resources, actions, delegated authn/authz with caching, registration objects."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from kplane.apimachinery import errors
from kplane.apimachinery.structural import validate
from kplane.apiserver.auth import ALLOW, DENY, NO_OPINION, RequestAttributes, UserInfo
from kplane.apiserver.authn_requestheader import RequestHeaderAuthenticator
from kplane.client import Client, KubeConfig
from kplane.extension import CREATE, DELETE, UPDATE, ExtensionServer, Field, Forbidden, Invalid, resource
from kplane.extension.delegated import DelegatingAuthenticator, DelegatingAuthorizer, TokenReviewer, sar_spec
from kplane.extension.register import (
    Registration,
    apiservice_object,
    endpoints_object,
    register,
    service_object,
)
from kplane.extension.schema import apply_defaults, object_schema
from kplane.storage.sqlite import open_sqlite_store
from kplane.testing import free_port

G = "shop.example.com"
BASE = f"/apis/{G}/v1"


# ---- schema ---------------------------------------------------------------


class Address:
    street: str
    city: str = "Springfield"


class OrderSpec:
    """An order."""

    item: str
    qty: Annotated[int, Field(minimum=1, maximum=100, description="how many")] = 1
    color: Literal["red", "blue"] | None = None
    tags: list[str] = []  # noqa: RUF012 - a schema default, never mutated
    labels: dict[str, int] = {}  # noqa: RUF012
    ship_to: Address | None = None
    anything: Any = None


def test_schema_from_type_hints() -> None:
    s = object_schema(OrderSpec)
    assert s["type"] == "object"
    assert s["required"] == ["item"]
    assert s["description"] == "An order."
    p = s["properties"]
    assert p["item"] == {"type": "string"}
    assert p["qty"] == {"type": "integer", "format": "int64", "minimum": 1, "maximum": 100,
                        "description": "how many", "default": 1}
    assert p["color"] == {"type": "string", "enum": ["red", "blue"], "nullable": True}
    assert p["tags"] == {"type": "array", "items": {"type": "string"}, "default": []}
    assert p["labels"] == {"type": "object", "additionalProperties": {"type": "integer", "format": "int64"},
                           "default": {}}
    assert p["ship_to"]["properties"]["city"] == {"type": "string", "default": "Springfield"}
    assert p["ship_to"]["required"] == ["street"]
    assert p["anything"] == {"x-kubernetes-preserve-unknown-fields": True}


def test_defaults_and_validation_messages() -> None:
    s = object_schema(OrderSpec)
    obj: dict = {"item": "x", "ship_to": {"street": "Evergreen"}}
    apply_defaults(obj, s)
    assert obj == {"item": "x", "qty": 1, "tags": [], "labels": {},
                   "ship_to": {"street": "Evergreen", "city": "Springfield"}}
    assert validate(obj, s, "spec") == []
    causes = validate({"qty": "7", "color": "green", "tags": [1], "ship_to": {}}, s, "spec")
    got = {(c.field, c.type, c.message) for c in causes}
    assert ("spec.item", "FieldValueRequired", "Required value") in got
    assert ("spec.qty", "FieldValueTypeInvalid",
            'Invalid value: "string": spec.qty in body must be of type integer: "string"') in got
    assert ("spec.color", "FieldValueNotSupported",
            'Unsupported value: "green": supported values: "red", "blue"') in got
    assert ("spec.tags[0]", "FieldValueTypeInvalid",
            'Invalid value: "integer": spec.tags[0] in body must be of type string: "integer"') in got
    assert ("spec.ship_to.street", "FieldValueRequired", "Required value") in got
    (too_many,) = validate({"item": "x", "qty": 500}, s, "spec")
    assert too_many.message == "Invalid value: 500: spec.qty in body should be less than or equal to 100"


# ---- an in-process extension server -----------------------------------------


class AllowAll:
    async def authenticate(self, request: web.Request) -> UserInfo | None:
        name = request.headers.get("X-Test-User", "admin")
        return UserInfo(name, ("system:authenticated",))

    async def authorize(self, attrs: RequestAttributes) -> tuple[str, str]:
        return ALLOW, ""


def make_app() -> tuple[ExtensionServer, list]:
    app = ExtensionServer(group=G, version="v1")
    seen: list = []

    class OrderStatus:
        phase: str = "Pending"

    @resource(app, kind="Order", plural="orders", short_names=["ord"], categories=["shop"],
              status=OrderStatus,
              printer_columns=[("Item", ".spec.item"), ("Qty", ".spec.qty", "integer"),
                               ("Phase", ".status.phase")])
    class Order:
        item: str
        qty: Annotated[int, Field(minimum=1)] = 1

    @resource(app, kind="Shelf", plural="shelves", scope="Cluster", root_fields=True)
    class Shelf:
        banned: list[str] = []  # noqa: RUF012

    @app.admit(Order, operations=[CREATE, UPDATE, DELETE])
    async def check(order: dict | None, old: dict | None, user: UserInfo) -> dict | None:
        seen.append(("CREATE" if old is None else "DELETE" if order is None else "UPDATE", user.name))
        if order is None:
            if old["spec"]["item"] == "keep":
                raise Forbidden("kept orders cannot be deleted")
            return None
        if order["spec"]["qty"] > 50:
            raise Invalid("spec.qty", "must not exceed 50 without approval", order["spec"]["qty"])
        for shelf in await app.list(Shelf):
            if order["spec"]["item"] in shelf.get("banned", []):
                raise Forbidden(f"{order['spec']['item']} is banned")
        # mutating: stamp who created it
        if old is None:
            order["metadata"].setdefault("annotations", {})["shop.example.com/by"] = user.name
        return None

    @app.computed(kind="Clock", plural="clocks", printer_columns=[("Zone", ".zone")])
    def clocks(namespace: str) -> list[dict]:
        return [{"metadata": {"name": "utc"}, "zone": "UTC"}, {"metadata": {"name": "cet"}, "zone": "CET"}]

    @app.action(Order, "approve")
    async def approve(order: dict, body: dict, user: UserInfo) -> dict:
        order["status"] = {"phase": "Approved"}
        order["spec"]["qty"] = body.get("qty", order["spec"]["qty"])
        return order

    @app.action(Order, "quote")
    def quote(order: dict, body: dict, user: UserInfo) -> dict:
        return {"kind": "Quote", "apiVersion": f"{G}/v1", "price": order["spec"]["qty"] * 3}

    return app, seen


@pytest.fixture
async def shop(tmp_path: Path):
    app, seen = make_app()
    store = await open_sqlite_store(str(tmp_path / "store.db"))
    server = app.build(store, AllowAll(), AllowAll())
    for cacher in server.cachers.values():
        await cacher.start()
    client = TestClient(TestServer(server.build_app()))
    await client.start_server()
    try:
        yield client, app, seen
    finally:
        await client.close()
        await server.stop()
        await store.close()


async def _json(resp: Any) -> Any:
    return orjson.loads(await resp.read())


async def test_crud_defaults_status_and_generation(shop) -> None:
    c, _, seen = shop
    r = await c.post(f"{BASE}/namespaces/default/orders",
                     json={"apiVersion": f"{G}/v1", "kind": "Order", "metadata": {"name": "o1"},
                           "spec": {"item": "apple"}, "status": {"phase": "Hacked"}})
    assert r.status == 201, await r.text()
    o = await _json(r)
    assert o["spec"] == {"item": "apple", "qty": 1}  # defaulted
    assert "status" not in o or o["status"] != {"phase": "Hacked"}  # status ignored on create
    assert o["metadata"]["generation"] == 1
    assert o["metadata"]["annotations"]["shop.example.com/by"] == "admin"  # mutating admission
    # status through /status only; the main endpoint ignores it
    o["status"] = {"phase": "Shipped"}
    o["spec"]["qty"] = 2
    r = await c.put(f"{BASE}/namespaces/default/orders/o1", json=o)
    o2 = await _json(r)
    assert r.status == 200 and o2["spec"]["qty"] == 2 and o2.get("status", {}).get("phase") != "Shipped"
    assert o2["metadata"]["generation"] == 2
    o2["status"] = {"phase": "Shipped"}
    r = await c.put(f"{BASE}/namespaces/default/orders/o1/status", json=o2)
    o3 = await _json(r)
    assert r.status == 200 and o3["status"] == {"phase": "Shipped"} and o3["metadata"]["generation"] == 2
    # table
    r = await c.get(f"{BASE}/namespaces/default/orders",
                    headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    table = await _json(r)
    assert [col["name"] for col in table["columnDefinitions"]] == ["Name", "Item", "Qty", "Phase", "Age"]
    assert table["rows"][0]["cells"][:4] == ["o1", "apple", 2, "Shipped"]
    # patch goes through update admission
    r = await c.patch(f"{BASE}/namespaces/default/orders/o1", data=b'{"spec":{"qty":60}}',
                      headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 422
    st = await _json(r)
    assert st["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.qty",
                                        "message": "Invalid value: 60: must not exceed 50 without approval"}]
    assert ("UPDATE", "admin") in seen
    r = await c.delete(f"{BASE}/namespaces/default/orders/o1")
    assert r.status == 200
    assert ("DELETE", "admin") in seen
    r = await c.get(f"{BASE}/namespaces/default/orders/o1")
    assert r.status == 404


async def test_schema_validation_is_422_with_causes(shop) -> None:
    c, _, _ = shop
    r = await c.post(f"{BASE}/namespaces/default/orders",
                     json={"metadata": {"name": "bad"}, "spec": {"qty": 0}})
    assert r.status == 422
    st = await _json(r)
    assert st["reason"] == "Invalid"
    assert st["message"].startswith('Order.shop.example.com "bad" is invalid: ')
    fields = {cause["field"]: cause["reason"] for cause in st["details"]["causes"]}
    assert fields == {"spec.item": "FieldValueRequired", "spec.qty": "FieldValueInvalid"}


async def test_admission_forbidden_uses_another_resource(shop) -> None:
    c, _, _ = shop
    r = await c.post(f"{BASE}/shelves", json={"metadata": {"name": "s"}, "banned": ["durian"]})
    assert r.status == 201, await r.text()
    r = await c.post(f"{BASE}/namespaces/default/orders",
                     json={"metadata": {"name": "d"}, "spec": {"item": "durian"}})
    assert r.status == 403
    st = await _json(r)
    assert st["message"] == 'orders.shop.example.com "d" is forbidden: durian is banned'
    assert st["details"] == {"name": "d", "group": G, "kind": "orders"}
    r = await c.post(f"{BASE}/namespaces/default/orders", json={"metadata": {"name": "k"},
                                                                "spec": {"item": "keep"}})
    assert r.status == 201
    r = await c.delete(f"{BASE}/namespaces/default/orders/k")
    assert r.status == 403


async def test_computed_resource_and_actions(shop) -> None:
    c, _, _ = shop
    r = await c.get(f"{BASE}/clocks")
    body = await _json(r)
    assert r.status == 200 and body["kind"] == "ClockList"
    assert [i["metadata"]["name"] for i in body["items"]] == ["utc", "cet"]
    assert body["items"][0]["kind"] == "Clock" and body["items"][0]["apiVersion"] == f"{G}/v1"
    r = await c.get(f"{BASE}/clocks/cet")
    assert (await _json(r))["zone"] == "CET"
    assert (await c.get(f"{BASE}/clocks/nope")).status == 404
    assert (await c.post(f"{BASE}/clocks", json={"metadata": {"name": "x"}})).status == 405

    await c.post(f"{BASE}/namespaces/default/orders", json={"metadata": {"name": "o"},
                                                            "spec": {"item": "pear"}})
    r = await c.post(f"{BASE}/namespaces/default/orders/o/approve", json={"qty": 5})
    assert r.status == 201, await r.text()
    approved = await _json(r)
    assert approved["status"] == {"phase": "Approved"} and approved["spec"]["qty"] == 5
    r = await c.get(f"{BASE}/namespaces/default/orders/o")
    assert (await _json(r))["status"] == {"phase": "Approved"}
    r = await c.post(f"{BASE}/namespaces/default/orders/o/quote", json={})
    assert (await _json(r))["price"] == 15
    r = await c.post(f"{BASE}/namespaces/default/orders/missing/approve", json={})
    assert r.status == 404

    r = await c.get(BASE)
    doc = await _json(r)
    names = {res["name"]: res for res in doc["resources"]}
    assert names["orders"]["shortNames"] == ["ord"] and names["orders"]["categories"] == ["shop"]
    assert names["clocks"]["verbs"] == ["get", "list"]
    assert names["orders/approve"]["verbs"] == ["create"]
    assert "orders/status" in names


async def test_watch_sees_writes(shop) -> None:
    c, _, _ = shop
    r = await c.get(f"{BASE}/namespaces/default/orders?watch=1&timeoutSeconds=5")
    await c.post(f"{BASE}/namespaces/default/orders", json={"metadata": {"name": "w"},
                                                            "spec": {"item": "fig"}})
    line = await asyncio.wait_for(r.content.readline(), 5)
    ev = orjson.loads(line)
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "w"
    r.close()


# ---- delegated authn/authz against a fake kplane ----------------------------


class FakeKplane:
    def __init__(self) -> None:
        self.sars: list[dict] = []
        self.tokens: list[str] = []
        self.allowed_users = {"alice"}
        self.serve_sar = True

    async def sar(self, request: web.Request) -> web.Response:
        if not self.serve_sar:
            return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)
        body = await request.json()
        self.sars.append(body)
        allowed = body["spec"]["user"] in self.allowed_users
        status: dict = {"allowed": allowed}
        if not allowed:
            status.update(denied=body["spec"]["user"] == "mallory", reason="no RBAC rule")
        return web.json_response({**body, "status": status})

    async def tokenreview(self, request: web.Request) -> web.Response:
        body = await request.json()
        token = body["spec"]["token"]
        self.tokens.append(token)
        status: dict = {"authenticated": token == "good"}
        if token == "good":
            status["user"] = {"username": "tok-user", "uid": "42", "groups": ["team"], "extra": {"k": ["v"]}}
        return web.json_response({**body, "status": status})


@pytest.fixture
async def fake_kplane():
    fake = FakeKplane()
    app = web.Application()
    app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", fake.sar)
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", fake.tokenreview)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = Client(KubeConfig(server=f"http://127.0.0.1:{port}"))
    try:
        yield fake, client
    finally:
        await client.close()
        await runner.cleanup()


def _attrs(user: str, groups: tuple[str, ...] = ("system:authenticated",), **kw: Any) -> RequestAttributes:
    base = {"verb": "list", "is_resource_request": True, "path": f"{BASE}/namespaces/default/orders",
            "api_group": G, "api_version": "v1", "resource": "orders", "namespace": "default"}
    base.update(kw)
    return RequestAttributes(user=UserInfo(user, groups), **base)


async def test_sar_wire_format_and_cache(fake_kplane) -> None:
    fake, client = fake_kplane
    authz = DelegatingAuthorizer(client, allow_ttl=0.3, deny_ttl=0.3)
    assert await authz.authorize(_attrs("alice")) == (ALLOW, "")
    assert await authz.authorize(_attrs("alice")) == (ALLOW, "")
    assert len(fake.sars) == 1
    sent = fake.sars[0]
    assert sent["apiVersion"] == "authorization.k8s.io/v1" and sent["kind"] == "SubjectAccessReview"
    assert sent["spec"] == {"user": "alice", "groups": ["system:authenticated"], "resourceAttributes": {
        "namespace": "default", "verb": "list", "group": G, "version": "v1", "resource": "orders"}}
    assert await authz.authorize(_attrs("bob")) == (NO_OPINION, "no RBAC rule")
    assert await authz.authorize(_attrs("mallory")) == (DENY, "no RBAC rule")
    assert await authz.authorize(_attrs("bob")) == (NO_OPINION, "no RBAC rule")  # denied answers cached too
    assert len(fake.sars) == 3
    assert authz.cache.hits == 2
    await asyncio.sleep(0.35)
    await authz.authorize(_attrs("alice"))
    assert len(fake.sars) == 4  # expired
    # a different verb is a different question
    await authz.authorize(_attrs("alice", verb="create"))
    assert len(fake.sars) == 5


async def test_always_allowed_paths_and_groups_skip_sar(fake_kplane) -> None:
    fake, client = fake_kplane
    authz = DelegatingAuthorizer(client)
    for path in ("/healthz", "/readyz", "/livez"):
        decision = await authz.authorize(_attrs("system:anonymous", ("system:unauthenticated",), verb="get",
                                                is_resource_request=False, path=path))
        assert decision == (ALLOW, "")
    assert await authz.authorize(_attrs("root", ("system:masters",))) == (ALLOW, "")
    assert fake.sars == []
    await authz.authorize(_attrs("bob", verb="get", is_resource_request=False, path="/version"))
    assert fake.sars[0]["spec"]["nonResourceAttributes"] == {"path": "/version", "verb": "get"}


async def test_sar_not_served_is_no_opinion(fake_kplane) -> None:
    fake, client = fake_kplane
    fake.serve_sar = False
    assert (await DelegatingAuthorizer(client).authorize(_attrs("alice")))[0] == NO_OPINION


async def test_sar_unreachable_is_500() -> None:
    client = Client(KubeConfig(server=f"http://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(errors.StatusError) as e:
            await DelegatingAuthorizer(client).authorize(_attrs("alice"))
        assert e.value.code == 500
    finally:
        await client.close()


def test_sar_spec_user_extra_and_subresource() -> None:
    attrs = RequestAttributes(user=UserInfo("u", ("g",), "uid1", {"scopes": ("a",)}), verb="update",
                              is_resource_request=True, path="/x", api_group=G, api_version="v1",
                              resource="orders", subresource="status", namespace="ns", name="o")
    assert sar_spec(attrs) == {"user": "u", "groups": ["g"], "uid": "uid1", "extra": {"scopes": ["a"]},
                               "resourceAttributes": {"namespace": "ns", "verb": "update", "group": G,
                                                      "version": "v1", "resource": "orders",
                                                      "subresource": "status", "name": "o"}}


async def test_bearer_tokens_via_tokenreview(fake_kplane) -> None:
    fake, client = fake_kplane
    authn = DelegatingAuthenticator(RequestHeaderAuthenticator(None), tokens=TokenReviewer(client))
    h = CIMultiDict({"Authorization": "Bearer good"})
    user = await authn.authenticate_parts(None, h)
    assert user == UserInfo("tok-user", ("team", "system:authenticated"), "42", {"k": ("v",)})
    await authn.authenticate_parts(None, h)
    assert fake.tokens == ["good"]  # cached
    with pytest.raises(errors.StatusError) as e:
        await authn.authenticate_parts(None, CIMultiDict({"Authorization": "Bearer bad"}))
    assert e.value.code == 401
    # no credentials at all: anonymous (None), forged identity headers are ignored
    assert await authn.authenticate_parts(None, CIMultiDict({"X-Remote-User": "system:admin"})) is None


# ---- registration -----------------------------------------------------------


def test_registration_objects() -> None:
    reg = Registration(group="wardle.example.com", versions=["v1alpha1"], port=8443, ca_bundle=b"PEM")
    assert reg.namespace == "wardle"
    svc = apiservice_object(reg, "v1alpha1")
    assert svc["metadata"]["name"] == "v1alpha1.wardle.example.com"
    assert svc["spec"] == {"group": "wardle.example.com", "version": "v1alpha1",
                           "service": {"namespace": "wardle", "name": "api", "port": 8443},
                           "groupPriorityMinimum": 1000, "versionPriority": 15, "caBundle": "UEVN"}
    assert "selector" not in service_object(reg)["spec"]
    assert endpoints_object(reg)["subsets"] == [{"addresses": [{"ip": "127.0.0.1"}],
                                                 "ports": [{"name": "https", "port": 8443,
                                                            "protocol": "TCP"}]}]


async def test_register_is_idempotent_against_a_fake_api() -> None:
    objects: dict[str, dict] = {}
    calls: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append((request.method, request.path))
        path = request.path
        if request.method == "GET":
            if path in objects:
                return web.json_response(objects[path])
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        body = await request.json()
        if path.endswith("selfsubjectreviews"):
            return web.json_response({**body, "status": {"userInfo": {"username": "ext-user"}}}, status=201)
        key = path if request.method == "PUT" else f"{path}/{body['metadata']['name']}"
        body["metadata"]["resourceVersion"] = str(len(calls))
        objects[key] = body
        return web.json_response(body, status=201 if request.method == "POST" else 200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = Client(KubeConfig(server=f"http://127.0.0.1:{port}"))
    try:
        reg = Registration(group="wardle.example.com", versions=["v1alpha1"], port=8443, ca_bundle=b"A")
        await register(client, reg)
        crb = objects["/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/wardle:system:auth-delegator"]
        assert crb["roleRef"]["name"] == "system:auth-delegator"
        assert crb["subjects"] == [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                                    "name": "ext-user"}]
        rb = objects["/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings/"
                     "wardle-auth-reader"]
        assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                 "name": "extension-apiserver-authentication-reader"}
        role = objects["/apis/rbac.authorization.k8s.io/v1/clusterroles/wardle:namespace-reader"]
        assert role["rules"] == [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}]
        writes = [c for c in calls if c[0] in ("POST", "PUT") and "selfsubject" not in c[1]]
        assert len(writes) == 8  # ns, svc, ep, clusterrole + its binding, crb, rb, apiservice
        calls.clear()
        await register(client, Registration(group="wardle.example.com", versions=["v1alpha1"], port=8443,
                                            ca_bundle=b"A"))
        assert [c for c in calls if c[0] in ("POST", "PUT") and "selfsubject" not in c[1]] == []
        calls.clear()
        await register(client, Registration(group="wardle.example.com", versions=["v1alpha1"], port=9443,
                                            ca_bundle=b"B"))
        puts = sorted(p for m, p in calls if m == "PUT")
        assert puts == ["/api/v1/namespaces/wardle/endpoints/api", "/api/v1/namespaces/wardle/services/api",
                        "/apis/apiregistration.k8s.io/v1/apiservices/v1alpha1.wardle.example.com"]
        svc = objects["/apis/apiregistration.k8s.io/v1/apiservices/v1alpha1.wardle.example.com"]
        assert svc["spec"]["caBundle"] == "Qg==" and svc["spec"]["service"]["port"] == 9443
    finally:
        await client.close()
        await runner.cleanup()


# ---- authentication configuration from kube-system/extension-apiserver-authentication ----


async def test_auth_configmap_configures_requestheader_and_client_ca(tmp_path: Path) -> None:
    from kplane.controlplane.pki import self_signed_ca
    from kplane.extension.app import Options

    front, _ = self_signed_ca("front-proxy-ca")
    cluster, _ = self_signed_ca("cluster-ca")
    cm = {"kind": "ConfigMap", "apiVersion": "v1",
          "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
          "data": {"client-ca-file": cluster.decode(), "requestheader-client-ca-file": front.decode(),
                   "requestheader-allowed-names": '["front-proxy-client"]',
                   "requestheader-username-headers": '["X-Remote-User"]',
                   "requestheader-group-headers": '["X-Remote-Group"]',
                   "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]'}}

    async def handler(request: web.Request) -> web.Response:
        assert request.path == "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
        return web.json_response(cm)

    web_app = web.Application()
    web_app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(web_app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    app, _ = make_app()
    app.client = Client(KubeConfig(server=f"http://127.0.0.1:{port}"))
    app.authenticator = DelegatingAuthenticator(RequestHeaderAuthenticator(None))
    try:
        app.options = Options()
        await app.refresh_authentication()
        cfg = app.authenticator.requestheader.config
        assert cfg is not None and cfg.allowed_names == ["front-proxy-client"]
        assert len(cfg.client_ca) == 1 and len(app.authenticator.client_ca) == 1
        # flags win over the ConfigMap
        app.options = Options(requestheader_allowed_names=[])
        await app.refresh_authentication()
        assert app.authenticator.requestheader.config.allowed_names == []
    finally:
        await app.client.close()
        await runner.cleanup()


def test_a_second_version_shares_the_kinds_short_names_and_categories() -> None:
    app = ExtensionServer(group="names.example.com", version="v1")

    @resource(app, kind="Thing", plural="things", short_names=["th"], categories=["stuff"], storage=True)
    class Thing:
        a: str = ""

    @resource(app, kind="Thing", plural="things", version="v1beta1")
    class ThingV1beta1:
        a: str = ""

    defs = {h.rdef.version: h.rdef for h in app.all_handles}
    assert defs["v1beta1"].short_names == ["th"] and defs["v1beta1"].categories == ["stuff"]


# ---- nested types as OpenAPI definitions -----------------------------------


class Wheel:
    """Wheel is one wheel of a cart (v1)."""

    size: int = 16


class WheelV2:
    """Wheel is one wheel of a cart (v2), with a colour."""

    size: int = 16
    colour: str = "black"


async def test_nested_types_are_named_definitions(tmp_path: Path) -> None:
    """As a Go extension server publishes its structs: each nested class once, under
    <reverse group>.<version>.<Name>, every use a reference; two versions' types do not clash."""
    app = ExtensionServer(group="carts.example.com", version="v1", namespace="carts", service_name="api")

    class CartStatus:
        wheels_seen: int = 0

    @resource(app, kind="Cart", plural="carts", status=CartStatus, storage=True)
    class Cart:
        """CartSpec is the specification of a Cart."""

        front: Annotated[Wheel, Field(description="the front wheel")]
        back: list[Wheel] = []  # noqa: RUF012 - a schema default, never mutated

    WheelV2.__name__ = "Wheel"  # the same type name in another version

    @resource(app, kind="Cart", plural="carts", status=CartStatus, version="v2")
    class CartV2:
        front: WheelV2

    @app.converter(Cart, "v1", "v2")
    def up(obj: dict[str, Any]) -> dict[str, Any]:
        return obj

    @app.converter(Cart, "v2", "v1")
    def down(obj: dict[str, Any]) -> dict[str, Any]:
        return obj

    store = await open_sqlite_store(str(tmp_path / "store.db"))
    server = app.build(store, AllowAll(), AllowAll())
    client = TestClient(TestServer(server.build_app()))
    await client.start_server()
    try:
        v2 = orjson.loads(await (await client.get("/openapi/v2")).read())["definitions"]
        v3 = orjson.loads(await (await client.get("/openapi/v3/apis/carts.example.com/v1")).read())
        v3_2 = orjson.loads(await (await client.get("/openapi/v3/apis/carts.example.com/v2")).read())
    finally:
        await client.close()
        await server.stop()
        await store.close()
    schemas = v3["components"]["schemas"]
    ref2, ref3 = "#/definitions/com.example.carts.", "#/components/schemas/com.example.carts."
    # The decorated class is the spec: named <Kind>Spec, as the kind itself is com.example.carts.v1.Cart.
    assert v2["com.example.carts.v1.Cart"]["properties"]["spec"]["$ref"] == ref2 + "v1.CartSpec"
    assert schemas["com.example.carts.v1.Cart"]["properties"]["spec"]["allOf"] == [{"$ref": ref3 + "v1.CartSpec"}]
    assert v2["com.example.carts.v1.Cart"]["properties"]["status"] == {"$ref": ref2 + "v1.CartStatus"}
    spec2, spec3 = v2["com.example.carts.v1.CartSpec"], schemas["com.example.carts.v1.CartSpec"]
    assert spec3["description"] == "CartSpec is the specification of a Cart."
    assert spec2["required"] == ["front"]
    # A field's own description stays beside the reference (allOf in v3, where $ref takes no siblings).
    assert spec3["properties"]["front"] == {"allOf": [{"$ref": ref3 + "v1.Wheel"}], "description": "the front wheel"}
    assert spec2["properties"]["back"]["items"] == {"$ref": ref2 + "v1.Wheel"}
    assert schemas["com.example.carts.v1.Wheel"] == v2["com.example.carts.v1.Wheel"] == {
        "type": "object", "description": "Wheel is one wheel of a cart (v1).",
        "properties": {"size": {"type": "integer", "format": "int64", "default": 16}}}
    # v2's Wheel is another definition: the version is in the name.
    assert set(v2["com.example.carts.v2.Wheel"]["properties"]) == {"size", "colour"}
    assert set(v3_2["components"]["schemas"]["com.example.carts.v2.Wheel"]["properties"]) == {"size", "colour"}
    assert "com.example.carts.v2.Wheel" not in schemas
    assert "com.example.carts.v1.Wheel" not in v3_2["components"]["schemas"]
    assert b"x-kplane" not in orjson.dumps([v2, v3, v3_2])


def test_two_types_of_one_name_in_one_version_are_refused() -> None:
    """A version's nested types are published once by name: a second, different type of the same
    name would leave one kind described wrongly, so declaring it fails."""
    app = ExtensionServer(group="garage.example.com", version="v1", namespace="garage", service_name="api")

    @resource(app, kind="Bike", plural="bikes", storage=True)
    class Bike:
        front: Wheel

    other_wheel = type("Wheel", (), {"__annotations__": {"colour": str}, "colour": "black", "__module__": __name__})
    car = type("Car", (), {"__annotations__": {"front": other_wheel}, "__module__": __name__})
    with pytest.raises(TypeError, match=r"Wheel names different types in Car and Bike \(v1\)"):
        resource(app, kind="Car", plural="cars", storage=True)(car)
    truck = type("Truck", (), {"__annotations__": {"front": Wheel}, "__module__": __name__})
    resource(app, kind="Truck", plural="trucks", storage=True)(truck)  # the same Wheel: fine
