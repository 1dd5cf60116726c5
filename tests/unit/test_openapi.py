"""OpenAPI v2/v3 generation from ResourceDefs."""

from __future__ import annotations

import json

from kplane.apiserver import openapi
from kplane.apiserver.resource import ResourceDef
from kplane.controlplane.types import builtin_resources

CM = "io.k8s.api.core.v1.ConfigMap"


def core_defs() -> list[ResourceDef]:
    return [d for d in builtin_resources() if not d.group]


def test_v3_document_has_kind_schemas_with_gvk() -> None:
    doc = openapi.openapi_v3_document(core_defs())
    assert doc["openapi"] == "3.0.0"
    schemas = doc["components"]["schemas"]
    cm = schemas[CM]
    assert cm["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "ConfigMap", "version": "v1"}]
    assert cm["properties"]["data"]["additionalProperties"]["type"] == "string"
    assert cm["properties"]["metadata"]["allOf"] == [{"$ref": "#/components/schemas/" + openapi.OBJECT_META}]
    assert schemas[CM + "List"]["x-kubernetes-group-version-kind"][0]["kind"] == "ConfigMapList"
    assert schemas[CM + "List"]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/" + CM}
    assert "ownerReferences" in schemas[openapi.OBJECT_META]["properties"]
    for name in (openapi.STATUS, openapi.DELETE_OPTIONS, openapi.WATCH_EVENT, openapi.LIST_META,
                 openapi.PATCH):
        assert name in schemas
    # Every $ref in the document resolves.
    refs = {r.rsplit("/", 1)[1] for r in _refs(doc)}
    assert refs <= set(schemas), refs - set(schemas)


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_v3_write_operations_list_field_validation() -> None:
    paths = openapi.openapi_v3_document(core_defs())["paths"]
    item = paths["/api/v1/namespaces/{namespace}/configmaps/{name}"]
    collection = paths["/api/v1/namespaces/{namespace}/configmaps"]
    for op in (item["patch"], item["put"], collection["post"]):
        names = [p["name"] for p in op["parameters"] if p["in"] == "query"]
        assert "fieldValidation" in names and "fieldManager" in names and "dryRun" in names
        # kubectl matches the operation to the kind through this extension.
        assert op["x-kubernetes-group-version-kind"] == {"group": "", "kind": "ConfigMap", "version": "v1"}
    assert item["patch"]["x-kubernetes-action"] == "patch"
    assert "application/strategic-merge-patch+json" in item["patch"]["requestBody"]["content"]
    assert collection["get"]["x-kubernetes-action"] == "list"
    assert collection["delete"]["x-kubernetes-action"] == "deletecollection"
    assert collection["get"]["operationId"] == "listCoreV1NamespacedConfigMap"
    assert {p["name"] for p in item["parameters"]} == {"name", "namespace", "pretty"}
    assert paths["/api/v1/configmaps"]["get"]["operationId"] == "listCoreV1ConfigMapForAllNamespaces"
    watch_list = paths["/api/v1/watch/namespaces/{namespace}/configmaps"]["get"]
    assert watch_list["x-kubernetes-action"] == "watchlist"
    assert "/api/v1/namespaces/{namespace}/services/{name}/status" in paths
    assert set(paths["/api/v1/namespaces/{name}/finalize"]) == {"put", "parameters"}
    # Cluster-scoped kinds have no namespace parameter.
    assert {p["name"] for p in paths["/api/v1/namespaces/{name}"]["parameters"]} == {"name", "pretty"}


def test_v3_verbs_limit_operations() -> None:
    ro = ResourceDef(group="example.com", version="v1", kind="Widget", plural="widgets",
                     verbs=["get", "list"], schema={"type": "object", "properties": {}})
    doc = openapi.openapi_v3_document([ro])
    item = doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]
    assert set(item) == {"get", "parameters"}
    assert "com.example.v1.Widget" in doc["components"]["schemas"]
    assert doc["paths"]["/apis/example.com/v1/"]["get"]["operationId"] == "getExampleComV1APIResources"


def test_v3_index_hashes_documents() -> None:
    defs = builtin_resources()
    index = openapi.openapi_v3_index(defs)
    assert set(index["paths"]) == {"api/v1", "apis/coordination.k8s.io/v1", "apis/discovery.k8s.io/v1",
                                   "apis/events.k8s.io/v1", "apis/rbac.authorization.k8s.io/v1"}
    url = index["paths"]["api/v1"]["serverRelativeURL"]
    expected = openapi.document_hash(openapi.openapi_v3_document(core_defs()))
    assert url == f"/openapi/v3/api/v1?hash={expected}"
    assert len(expected) == 128 and expected == expected.upper()
    assert openapi.openapi_v3_index(builtin_resources()) == index  # deterministic
    # A change in a document changes its hash.
    changed = [d for d in builtin_resources() if d.kind != "Secret"]
    assert openapi.openapi_v3_index(changed)["paths"]["api/v1"] != index["paths"]["api/v1"]


def test_v2_definitions_and_paths() -> None:
    doc = openapi.openapi_v2(builtin_resources(), "v1.32.0")
    assert doc["swagger"] == "2.0" and doc["info"]["version"] == "v1.32.0"
    defs = doc["definitions"]
    assert defs[CM]["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "ConfigMap", "version": "v1"}]
    assert defs[CM]["properties"]["metadata"]["$ref"] == "#/definitions/" + openapi.OBJECT_META
    target_port = defs["io.k8s.api.core.v1.Service"]["properties"]["spec"]["properties"]["ports"]["items"][
        "properties"]["targetPort"]
    assert target_port["format"] == "int-or-string" and "x-kubernetes-int-or-string" not in target_port
    assert {"group": "events.k8s.io", "kind": "DeleteOptions", "version": "v1"} in \
        defs[openapi.DELETE_OPTIONS]["x-kubernetes-group-version-kind"]
    post = doc["paths"]["/api/v1/namespaces/{namespace}/configmaps"]["post"]
    assert post["x-kubernetes-action"] == "post"
    assert post["parameters"][0] == {"in": "body", "name": "body", "required": True,
                                     "schema": {"$ref": "#/definitions/" + CM}}
    assert any(p["name"] == "fieldValidation" and p["type"] == "string" for p in post["parameters"])
    assert post["responses"]["201"]["schema"] == {"$ref": "#/definitions/" + CM}
    json.dumps(doc)  # plain JSON all the way down


def test_generation_does_not_mutate_defs() -> None:
    defs = builtin_resources()
    before = json.dumps([d.schema for d in defs], sort_keys=True)
    openapi.openapi_v2(defs, "v1")
    openapi.openapi_v3_document(defs)
    assert json.dumps([d.schema for d in defs], sort_keys=True) == before
