"""Server-side apply of list-map items that omit a key field with a schema default.

Upstream (structured-merge-diff since Kubernetes 1.21) names such an item by the key's
default, so `kubectl apply --server-side` of a Service port without `protocol` works and
its managedFields say k:{"port":80,"protocol":"TCP"}. Only a missing key without a default
is an error."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kplane.apimachinery.apply import server_side_apply
from kplane.apimachinery.errors import StatusError
from kplane.apiserver.registry import Registry, WriteOptions, decode_stored
from kplane.controlplane.crd.serving import CustomResourceRegistry, build_defs
from kplane.controlplane.types import builtin_resources
from kplane.controlplane.types.services import SERVICE
from kplane.storage.cacher import Cacher
from kplane.storage.sqlite import SQLiteStore

T1, T2 = "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"
KEY_80 = 'k:{"port":80,"protocol":"TCP"}'


def apply(live: dict | None, config: dict, schema: dict | None, manager: str = "mgr", force: bool = False,
          api_version: str = "v1", now: str = T1) -> dict:
    return server_side_apply(live, config, manager=manager, force=force, schema=schema, api_version=api_version,
                             now=now)


def entries(obj: dict) -> list[tuple[str, str, dict]]:
    return [(e["manager"], e["operation"], e["fieldsV1"]) for e in obj["metadata"].get("managedFields", [])]


# --------------------------------------------------------------------------- Service (built-in schema)


def service(*ports: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-ssa", "namespace": "t1"},
            "spec": {"ports": list(ports)}}


def test_service_port_schema_declares_the_protocol_default():
    ports = SERVICE["properties"]["spec"]["properties"]["ports"]
    assert ports["x-kubernetes-list-map-keys"] == ["port", "protocol"]
    assert ports["items"]["properties"]["protocol"]["default"] == "TCP"


def test_service_port_without_protocol_is_named_by_the_protocol_default():
    config = service({"name": "http", "port": 80, "targetPort": 8080})
    before = copy.deepcopy(config)
    out = apply(None, config, SERVICE, manager="kubectl")
    assert config == before
    # The default names the item only; the Service's own defaulting fills the field in.
    assert out["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080}]
    assert entries(out) == [("kubectl", "Apply", {"f:spec": {"f:ports": {
        KEY_80: {".": {}, "f:name": {}, "f:port": {}, "f:targetPort": {}}}}})]


def test_service_port_without_protocol_matches_the_defaulted_live_item():
    live = apply(None, service({"name": "http", "port": 80, "targetPort": 8080}), SERVICE, manager="kubectl")
    live["spec"]["ports"][0]["protocol"] = "TCP"  # as SetDefaults_Service stores it
    out = apply(live, service({"name": "http", "port": 80, "targetPort": 9090}), SERVICE, manager="kubectl",
                now=T2)
    assert out["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"}]
    # Another manager naming the same item with the explicit key conflicts on the field both set.
    with pytest.raises(StatusError) as e:
        apply(out, service({"port": 80, "protocol": "TCP", "targetPort": 7070}), SERVICE, manager="other")
    assert e.value.code == 409
    assert '.spec.ports[port=80,protocol="TCP"].targetPort' in e.value.message


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SQLiteStore(str(tmp_path / "kplane.db"))
    rdef = next(r for r in builtin_resources() if r.group == "" and r.plural == "services")
    cacher = Cacher(store, rdef.key_prefix(), decode_stored)
    await cacher.start()
    yield Registry(rdef, store, cacher)
    await cacher.stop()
    await store.close()


async def server_apply(reg: Registry, namespace: str, name: str, body: dict, manager: str = "kubectl") -> dict:
    """What the PATCH handler does for application/apply-patch+yaml."""
    def ssa(current: dict | None) -> dict:
        return server_side_apply(current, body, manager=manager, force=False, schema=reg.rdef.schema,
                                 api_version=reg.rdef.api_version, now=T1)

    opts = WriteOptions(field_manager=manager)
    opts.apply = True
    return await reg.patch(namespace, name, ssa, opts, create_if_missing=lambda: ssa(None))


async def test_service_apply_stores_the_defaulted_protocol(services: Registry):
    body = service({"name": "http", "port": 80, "targetPort": 8080})
    created = await server_apply(services, "t1", "web-ssa", body)
    assert created["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    assert entries(created) == [("kubectl", "Apply", {"f:spec": {"f:ports": {
        KEY_80: {".": {}, "f:name": {}, "f:port": {}, "f:targetPort": {}}}}})]
    # Applying the same configuration again is a no-op; a change updates the item in place.
    again = await server_apply(services, "t1", "web-ssa", body)
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    changed = await server_apply(services, "t1", "web-ssa", service({"name": "http", "port": 80, "targetPort": 81}))
    assert changed["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 81, "protocol": "TCP"}]
    assert entries(changed) == entries(created)


# --------------------------------------------------------------------------- CustomResource (CRD schema)


def crd(protocol_default: Any = "TCP") -> dict:
    protocol: dict[str, Any] = {"type": "string"}
    if protocol_default is not None:
        protocol["default"] = protocol_default
    open_api = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"ports": {
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
        "items": {"type": "object", "required": ["port"], "properties": {
            "name": {"type": "string"}, "port": {"type": "integer"}, "protocol": protocol}}}}}}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "gateways.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "gateways", "singular": "gateway", "kind": "Gateway",
                               "listKind": "GatewayList"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": open_api}}]}}


def gateway(*ports: dict) -> dict:
    return {"apiVersion": "example.com/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": "t1"},
            "spec": {"ports": list(ports)}}


def crd_schema(protocol_default: Any = "TCP") -> dict:
    [(rdef, schema, _)] = build_defs(crd(protocol_default), converter=None)
    assert rdef.schema is schema
    return schema


def test_custom_resource_port_without_protocol_is_named_by_the_schema_default():
    schema = crd_schema()
    out = apply(None, gateway({"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}),
                schema, api_version="example.com/v1")
    assert out["spec"]["ports"] == [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]
    assert entries(out) == [("mgr", "Apply", {"f:spec": {"f:ports": {
        'k:{"port":53,"protocol":"UDP"}': {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}},
        KEY_80: {".": {}, "f:name": {}, "f:port": {}}}}})]


def test_custom_resource_item_named_by_default_merges_and_prunes_by_that_name():
    schema = crd_schema()
    live = apply(None, gateway({"name": "a", "port": 80}, {"name": "b", "port": 81}), schema,
                 api_version="example.com/v1")
    for port in live["spec"]["ports"]:
        port["protocol"] = "TCP"  # structural defaulting after the apply
    # The same manager drops port 81: the item it named by default is removed; 80 is the
    # live (defaulted) item, not a second one.
    out = apply(live, gateway({"name": "a2", "port": 80}), schema, api_version="example.com/v1", now=T2)
    assert out["spec"]["ports"] == [{"name": "a2", "port": 80, "protocol": "TCP"}]
    assert entries(out) == [("mgr", "Apply", {"f:spec": {"f:ports": {KEY_80: {".": {}, "f:name": {}, "f:port": {}}}}})]


@pytest.fixture
async def gateways(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SQLiteStore(str(tmp_path / "kplane.db"))
    [(rdef, schema, preserve)] = build_defs(crd(), converter=None)
    cacher = Cacher(store, rdef.key_prefix(), decode_stored)
    await cacher.start()
    reg = CustomResourceRegistry(rdef, store, cacher)
    reg.structural_schema, reg.preserve_unknown = schema, preserve
    yield reg
    await cacher.stop()
    await store.close()


async def test_custom_resource_apply_stores_the_defaulted_key(gateways: Registry):
    created = await server_apply(gateways, "t1", "gw", gateway({"name": "http", "port": 80}))
    assert created["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    assert entries(created) == [("kubectl", "Apply", {"f:spec": {"f:ports": {
        KEY_80: {".": {}, "f:name": {}, "f:port": {}}}}})]
    again = await server_apply(gateways, "t1", "gw", gateway({"name": "http", "port": 80}))
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert again["spec"]["ports"] == created["spec"]["ports"]


# --------------------------------------------------------------------------- missing key without default


MISSING = ('failed to create typed patch object (t1/gw; example.com/v1, Kind=Gateway): associative list with '
           'keys has an element that omits key field "{}" (and doesn\'t have default value)')


@pytest.mark.parametrize("protocol_default, port, missing", [
    (None, {"name": "http", "port": 80}, "protocol"),  # no default
    ("TCP", {"name": "http"}, "port"),  # the first missing key (declared order) without default
    (None, {"name": "http"}, "port"),
])
def test_missing_key_without_default_is_400_with_upstream_message(protocol_default, port, missing):
    with pytest.raises(StatusError) as e:
        apply(None, gateway(port), crd_schema(protocol_default), api_version="example.com/v1")
    assert (e.value.code, e.value.message) == (400, MISSING.format(missing))


def test_key_with_a_default_does_not_excuse_an_undeclared_key():
    schema = crd_schema()
    ports = schema["properties"]["spec"]["properties"]["ports"]
    ports["x-kubernetes-list-map-keys"] = ["port", "protocol", "zone"]
    with pytest.raises(StatusError) as e:
        apply(None, gateway({"port": 80}), schema, api_version="example.com/v1")
    assert e.value.message == MISSING.format("zone")
