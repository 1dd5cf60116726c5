"""OpenAPI v2/v3 generation from ResourceDefs."""

from __future__ import annotations

import json

import pytest

from kplane.apiserver import openapi
from kplane.apiserver.resource import ResourceDef
from kplane.controlplane.types import builtin_resources

CM = "io.k8s.api.core.v1.ConfigMap"
CORE = "io.k8s.api.core.v1."
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
OWNER_REFERENCE = "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference"


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
    assert defs[INT_OR_STRING] == {"description": defs[INT_OR_STRING]["description"], "format": "int-or-string",
                                   "type": "string"}
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


def test_v2_nested_types_are_named_definitions() -> None:
    """Built-in kinds refer to upstream's definitions (kubectl explain shows <[]ServicePort>, not <[]Object>)."""
    doc = openapi.openapi_v2(builtin_resources(), "v1.32.0")
    defs = doc["definitions"]
    ref = "#/definitions/"
    spec = defs[CORE + "Service"]["properties"]["spec"]
    assert spec == {"$ref": ref + CORE + "ServiceSpec",
                    "description": spec["description"]} and spec["description"].startswith("Spec defines")
    ports = defs[CORE + "ServiceSpec"]["properties"]["ports"]
    assert ports["type"] == "array" and ports["items"] == {"$ref": ref + CORE + "ServicePort"}
    assert ports["x-kubernetes-list-map-keys"] == ["port", "protocol"]  # the field's extensions stay on the field
    port = defs[CORE + "ServicePort"]
    assert port["description"] == "ServicePort contains information on service's port." and port["required"] == ["port"]
    assert port["properties"]["targetPort"]["$ref"] == ref + INT_OR_STRING
    assert port["properties"]["targetPort"]["description"].startswith("Number or name of the port")
    assert "x-kubernetes-int-or-string" not in json.dumps(defs[CORE + "ServicePort"])
    owners = defs[openapi.OBJECT_META]["properties"]["ownerReferences"]
    assert owners["items"] == {"$ref": ref + OWNER_REFERENCE} and owners["x-kubernetes-patch-merge-key"] == "uid"
    assert defs[OWNER_REFERENCE]["x-kubernetes-map-type"] == "atomic"
    created = defs[openapi.OBJECT_META]["properties"]["creationTimestamp"]
    assert created["$ref"] == ref + "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
    assert defs["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["format"] == "date-time"
    lease_spec = defs["io.k8s.api.coordination.v1.LeaseSpec"]["properties"]
    assert lease_spec["renewTime"]["$ref"] == ref + "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"
    assert defs["io.k8s.api.rbac.v1.ClusterRole"]["properties"]["aggregationRule"]["$ref"] == \
        ref + "io.k8s.api.rbac.v1.AggregationRule"
    assert defs["io.k8s.api.rbac.v1.AggregationRule"]["properties"]["clusterRoleSelectors"]["items"] == \
        {"$ref": ref + "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"}
    text = json.dumps(doc)
    assert "x-kplane" not in text and "allOf" not in text
    refs = {r.rsplit("/", 1)[1] for r in _refs(doc)}
    assert refs <= set(defs), refs - set(defs)


def test_v3_references_wrap_in_all_of_beside_siblings() -> None:
    doc = openapi.openapi_v3_document(core_defs())
    schemas = doc["components"]["schemas"]
    ref = "#/components/schemas/"
    spec = schemas[CORE + "Service"]["properties"]["spec"]
    assert spec["allOf"] == [{"$ref": ref + CORE + "ServiceSpec"}] and "$ref" not in spec
    assert spec["description"].startswith("Spec defines")
    assert schemas[CORE + "ServiceSpec"]["properties"]["ports"]["items"] == {"$ref": ref + CORE + "ServicePort"}
    target_port = schemas[CORE + "ServicePort"]["properties"]["targetPort"]
    assert target_port["allOf"] == [{"$ref": ref + INT_OR_STRING}] and "Number or name" in target_port["description"]
    assert schemas[INT_OR_STRING] == {"description": schemas[INT_OR_STRING]["description"],
                                      "format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]}
    assert schemas[openapi.OBJECT_META]["properties"]["ownerReferences"]["items"] == {"$ref": ref + OWNER_REFERENCE}
    # Each group-version's document holds every definition it refers to, and only what its kinds use.
    for gv_defs in ([d for d in builtin_resources() if d.group == "rbac.authorization.k8s.io"], core_defs()):
        gv_doc = openapi.openapi_v3_document(gv_defs)
        names = set(gv_doc["components"]["schemas"])
        assert {r.rsplit("/", 1)[1] for r in _refs(gv_doc)} <= names
        assert "x-kplane" not in json.dumps(gv_doc)
    rbac = openapi.openapi_v3_document([d for d in builtin_resources() if d.group == "rbac.authorization.k8s.io"])
    assert CORE + "ServicePort" not in rbac["components"]["schemas"]
    assert "io.k8s.api.rbac.v1.PolicyRule" in rbac["components"]["schemas"]


def test_unnamed_schemas_stay_inline() -> None:
    """CRDs and SDK resources carry no definition names: only metadata becomes a reference, as upstream."""
    nested = {"type": "object", "description": "A port.", "properties": {
        "port": {"type": "integer"}, "target": {"x-kubernetes-int-or-string": True}}}
    widget = ResourceDef(group="example.com", version="v1", kind="Widget", plural="widgets", schema={
        "type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "items": nested}}}}})
    v3 = openapi.openapi_v3_document([widget])["components"]["schemas"]["com.example.v1.Widget"]
    assert v3["properties"]["spec"]["properties"]["ports"]["items"] == nested
    assert v3["properties"]["metadata"]["allOf"] == [{"$ref": "#/components/schemas/" + openapi.OBJECT_META}]
    v2 = openapi.openapi_v2([widget], "v1")["definitions"]["com.example.v1.Widget"]
    assert v2["properties"]["spec"]["properties"]["ports"]["items"]["properties"]["target"] == {
        "type": "string", "format": "int-or-string"}


def test_a_definition_name_stands_for_one_schema() -> None:
    from kplane.apimachinery import typeschema

    first = typeschema.obj("Gadget.", {}, name="com.example.test.v1.Gadget")
    assert typeschema.definition("com.example.test.v1.Gadget") is first
    assert typeschema.described(first, "A field.")[typeschema.DEFINITION] == "com.example.test.v1.Gadget"
    with pytest.raises(ValueError, match="already another schema"):
        typeschema.obj("Another gadget.", {}, name="com.example.test.v1.Gadget")


def test_control_plane_kinds_use_named_definitions() -> None:
    """CRDs, APIServices, the review kinds and TokenRequest refer to upstream's definitions too."""
    from kplane.aggregator.apiservice import apiservice_def
    from kplane.controlplane import reviews
    from kplane.controlplane.crd.types import resource_def

    defs = [resource_def(), apiservice_def(), reviews.token_request_def(), *reviews.review_defs().values()]
    doc = openapi.openapi_v2(defs, "v1")
    schemas, ref = doc["definitions"], "#/definitions/"
    ext = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1."
    crd = schemas[ext + "CustomResourceDefinition"]["properties"]
    assert crd["spec"]["$ref"] == ref + ext + "CustomResourceDefinitionSpec"
    assert crd["spec"]["description"] == "spec describes how the user wants the resources to appear"
    spec = schemas[ext + "CustomResourceDefinitionSpec"]["properties"]
    assert spec["versions"]["items"] == {"$ref": ref + ext + "CustomResourceDefinitionVersion"}
    assert spec["names"]["$ref"] == ref + ext + "CustomResourceDefinitionNames"
    assert schemas[ext + "CustomResourceDefinitionStatus"]["properties"]["acceptedNames"]["$ref"] == \
        ref + ext + "CustomResourceDefinitionNames"
    assert schemas[ext + "WebhookConversion"]["properties"]["clientConfig"]["$ref"] == ref + ext + "WebhookClientConfig"
    agg = "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1."
    assert schemas[agg + "APIService"]["properties"]["spec"]["$ref"] == ref + agg + "APIServiceSpec"
    assert schemas[agg + "APIServiceSpec"]["properties"]["service"]["$ref"] == ref + agg + "ServiceReference"
    assert schemas[agg + "APIServiceStatus"]["properties"]["conditions"]["items"] == {
        "$ref": ref + agg + "APIServiceCondition"}
    authz = "io.k8s.api.authorization.v1."
    assert schemas[authz + "SubjectAccessReview"]["properties"]["spec"]["$ref"] == \
        ref + authz + "SubjectAccessReviewSpec"
    assert schemas[authz + "SubjectAccessReviewSpec"]["properties"]["resourceAttributes"]["$ref"] == \
        ref + authz + "ResourceAttributes"
    token = schemas["io.k8s.api.authentication.v1.TokenRequestSpec"]["properties"]["boundObjectRef"]
    assert token["$ref"] == ref + "io.k8s.api.authentication.v1.BoundObjectReference"
    assert {r.rsplit("/", 1)[1] for r in _refs(doc)} <= set(schemas)
    assert "x-kplane" not in json.dumps(doc)
