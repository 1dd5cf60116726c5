"""Structural schemas of CRDs: validation, defaulting, pruning and CEL rules, table-driven from the
examples of the upstream docs ("Extend the Kubernetes API with CustomResourceDefinitions")."""

from __future__ import annotations

import copy

import pytest

from kplane.apimachinery import structural
from kplane.controlplane.crd import types
from kplane.controlplane.crd.cel import Validator, compile_schema
from kplane.controlplane.crd.serving import columns_for, object_schema

# The CronTab schema of the upstream "validation" example.
CRONTAB = object_schema({
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "cronSpec": {"type": "string", "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"},
                "image": {"type": "string"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
            },
        },
    },
})


def _cr(spec: dict) -> dict:
    return {"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "x"}, "spec": spec}


def _messages(causes: list) -> list[str]:
    return [f"{c.field}: {c.message}" if c.field else c.message for c in causes]


@pytest.mark.parametrize("spec,expected", [
    ({"cronSpec": "* * * * */5", "image": "my-awesome-cron-image", "replicas": 3}, []),
    # The upstream docs' invalid object, and the exact messages kube-apiserver returns for it.
    ({"cronSpec": "* * * *", "image": "my-awesome-cron-image", "replicas": 15}, [
        r"spec.cronSpec: Invalid value: \"* * * *\": spec.cronSpec in body should match "
        r"'^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'".replace('\\"', '"'),
        "spec.replicas: Invalid value: 15: spec.replicas in body should be less than or equal to 10"]),
    ({"replicas": 0}, ["spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"]),
    ({"replicas": "three"}, ['spec.replicas: Invalid value: "string": spec.replicas in body must be of type '
                             'integer: "string"']),
    ({"image": None}, ['spec.image: Invalid value: "null": spec.image in body must be of type string: "null"']),
])
def test_crontab_validation(spec: dict, expected: list[str]) -> None:
    assert _messages(structural.validate(_cr(spec), CRONTAB)) == expected


@pytest.mark.parametrize("schema,value,expected", [
    ({"type": "string", "enum": ["a", "b"]}, "c", ['x: Unsupported value: "c": supported values: "a", "b"']),
    ({"type": "string", "maxLength": 3}, "abcd", ["x: Too long: may not be more than 3 bytes"]),
    ({"type": "string", "minLength": 2}, "a", ['x: Invalid value: "a": x in body should be at least 2 chars long']),
    ({"type": "number", "maximum": 5, "exclusiveMaximum": True}, 5,
     ["x: Invalid value: 5: x in body should be less than 5"]),
    ({"type": "number", "minimum": 1, "exclusiveMinimum": True}, 1,
     ["x: Invalid value: 1: x in body should be greater than 1"]),
    ({"type": "array", "items": {"type": "string"}, "maxItems": 1}, ["a", "b"],
     ["x: Too many: 2: must have at most 1 items"]),
    ({"type": "array", "items": {"type": "string"}, "minItems": 2}, ["a"],
     ["x: Invalid value: 1: x in body should have at least 2 items"]),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, ["a", "a"],
     ['x[1]: Duplicate value: "a"']),
    ({"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}, ["a", "b", "a"],
     ['x[2]: Duplicate value: "a"']),
    ({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
      "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}},
     [{"name": "a", "v": 1}, {"name": "a", "v": 2}, {"name": "a", "v": 3}],
     ['x[1]: Duplicate value: map[string]interface {}{"name":"a"}']),  # Go's %#v; each value reported once
    ({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
      "items": {"type": "object", "properties": {"port": {"type": "integer"}, "protocol": {"type": "string"}}}},
     [{"port": 80, "protocol": "TCP"}, {"protocol": "TCP", "port": 80}],
     ['x[1]: Duplicate value: map[string]interface {}{"port":80, "protocol":"TCP"}']),
    ({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "array", "items": {"type": "string"}}},
     [["a"], ["a"]], ['x[1]: Duplicate value: []interface {}{"a"}']),
    ({"type": "string", "format": "date-time"}, "yesterday",
     ['x: Invalid value: "yesterday": x in body must be of type date-time: "yesterday"']),
    ({"type": "string", "format": "date-time"}, "2024-01-02T03:04:05Z", []),
    ({"type": "string", "nullable": True}, None, []),
    ({"x-kubernetes-int-or-string": True}, 3, []),
    ({"x-kubernetes-int-or-string": True}, "50%", []),
    ({"x-kubernetes-int-or-string": True}, True,
     ['x: Invalid value: "boolean": x in body must be of type integer,string: "boolean"']),
    ({"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}, {}, ["x.a: Required value"]),
    ({"type": "object", "additionalProperties": {"type": "integer"}}, {"k": "v"},
     ['x[k]: Invalid value: "string": x[k] in body must be of type integer: "string"']),
    ({"type": "object", "x-kubernetes-embedded-resource": True, "x-kubernetes-preserve-unknown-fields": True},
     {"metadata": {}},
     ["x.apiVersion: Required value: must not be empty", "x.kind: Required value: must not be empty"]),
])
def test_value_validation(schema: dict, value: object, expected: list[str]) -> None:
    assert _messages(structural.validate(value, schema, "x")) == expected


def test_defaulting_upstream_example() -> None:
    # "Defaulting" in the upstream docs: cronSpec "5 0 * * *", image "my-awesome-cron-image", replicas 1.
    schema = object_schema({"type": "object", "properties": {"spec": {
        "type": "object", "default": {"cronSpec": "5 0 * * *"}, "properties": {
            "cronSpec": {"type": "string"}, "image": {"type": "string", "default": "my-awesome-cron-image"},
            "replicas": {"type": "integer", "minimum": 1, "default": 1}}}}})
    obj = {"apiVersion": "v1", "kind": "CronTab", "metadata": {"name": "x"}}
    structural.apply_defaults(obj, schema)
    assert obj["spec"] == {"cronSpec": "5 0 * * *", "image": "my-awesome-cron-image", "replicas": 1}
    obj = {"spec": {"replicas": None, "image": "mine"}}
    structural.apply_defaults(obj, schema)
    assert obj["spec"] == {"replicas": 1, "image": "mine"}  # null of a non-nullable field is defaulted


def test_pruning_upstream_example() -> None:
    # "Field pruning": someRandomField is dropped, metadata/apiVersion/kind kept.
    obj = _cr({"cronSpec": "* * * * */5", "image": "img", "someRandomField": 42})
    obj["metadata"]["labels"] = {"a": "b"}
    assert structural.prune(obj, CRONTAB) == [".spec.someRandomField"]
    assert obj == {**_cr({"cronSpec": "* * * * */5", "image": "img"}), "metadata": {"name": "x", "labels": {"a": "b"}}}


def test_pruning_preserve_unknown_and_embedded() -> None:
    schema = object_schema({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                     "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}},
        "port": {"x-kubernetes-int-or-string": True},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}}})
    obj = {"spec": {"free": {"any": {"thing": 1}}, "port": "http", "labels": {"x": "y"},
                    "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                 "spec": {"a": "b", "gone": 1}, "extra": True}}}
    unknown = structural.prune(obj, schema)
    assert sorted(unknown) == [".spec.template.extra", ".spec.template.spec.gone"]
    assert obj["spec"]["free"] == {"any": {"thing": 1}}
    assert obj["spec"]["template"] == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                       "spec": {"a": "b"}}


# ---- CEL ------------------------------------------------------------------------------------------

SCALED = object_schema({"type": "object", "properties": {"spec": {
    "type": "object",
    "x-kubernetes-validations": [
        {"rule": "self.minReplicas <= self.replicas", "message": "replicas should be greater than or equal to "
                                                                  "minReplicas."},
        {"rule": "self.replicas <= self.maxReplicas",
         "messageExpression": "'replicas ' + string(self.replicas) + ' exceeds ' + string(self.maxReplicas)"},
    ],
    "properties": {"minReplicas": {"type": "integer"}, "replicas": {"type": "integer"},
                   "maxReplicas": {"type": "integer"},
                   "name": {"type": "string", "x-kubernetes-validations": [
                       {"rule": "self == oldSelf", "message": "Value is immutable"}]},
                   "tags": {"type": "array", "items": {"type": "string"},
                            "x-kubernetes-validations": [{"rule": "self.all(t, t.lowerAscii() == t)",
                                                          "reason": "FieldValueForbidden"}]}}}}})


@pytest.mark.parametrize("spec,old,expected", [
    ({"minReplicas": 1, "replicas": 2, "maxReplicas": 3}, None, []),
    ({"minReplicas": 3, "replicas": 2, "maxReplicas": 3}, None,
     ['spec: Invalid value: "object": replicas should be greater than or equal to minReplicas.']),
    ({"minReplicas": 1, "replicas": 5, "maxReplicas": 3}, None,
     ['spec: Invalid value: "object": replicas 5 exceeds 3']),
    # Transition rule: skipped on create, enforced on update.
    ({"minReplicas": 1, "replicas": 2, "maxReplicas": 3, "name": "a"}, None, []),
    ({"minReplicas": 1, "replicas": 2, "maxReplicas": 3, "name": "b"},
     {"minReplicas": 1, "replicas": 2, "maxReplicas": 3, "name": "a"},
     ['spec.name: Invalid value: "b": Value is immutable']),
    ({"minReplicas": 1, "replicas": 2, "maxReplicas": 3, "name": "b"},
     {"minReplicas": 1, "replicas": 2, "maxReplicas": 3}, []),  # no old value: not correlated
    ({"minReplicas": 1, "replicas": 2, "maxReplicas": 3, "tags": ["ok", "Bad"]}, None,
     ["spec.tags: Forbidden: failed rule: self.all(t, t.lowerAscii() == t)"]),
])
def test_cel_rules(spec: dict, old: dict | None, expected: list[str]) -> None:
    validator = Validator(SCALED)
    assert _messages(validator.validate(_cr(spec), _cr(old) if old is not None else None)) == expected


def test_cel_root_rule_sees_metadata_name() -> None:
    schema = object_schema({"type": "object", "x-kubernetes-validations": [
        {"rule": "self.metadata.name.startsWith('ok-')", "message": "bad name"}],
        "properties": {"spec": {"type": "object"}}})
    assert _messages(Validator(schema).validate(_cr({}))) == ['Invalid value: "object": bad name']
    ok = _cr({})
    ok["metadata"]["name"] = "ok-1"
    assert Validator(schema).validate(ok) == []


def test_cel_compile_errors_reported_on_crd() -> None:
    errors = compile_schema({"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-validations": [
        {"rule": "self.replicas <="}, {"rule": "self.a == other"}]}}})
    assert [p for p, _ in errors] == ["openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule",
                                      "openAPIV3Schema.properties[spec].x-kubernetes-validations[1].rule"]
    assert all("compilation failed" in m for _, m in errors)


# ---- the CRD object itself ---------------------------------------------------------------------------

BASE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {"group": "stable.example.com", "scope": "Namespaced",
             "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object"}}}]},
}


def _crd_messages(mutate) -> list[str]:  # type: ignore[no-untyped-def]
    crd = copy.deepcopy(BASE_CRD)
    mutate(crd)
    types.set_defaults(crd)
    return _messages(types.validate(crd))


@pytest.mark.parametrize("mutate,expected", [
    (lambda c: None, []),
    (lambda c: c["metadata"].update(name="crontab.stable.example.com"),
     ['metadata.name: Invalid value: "crontab.stable.example.com": must be spec.names.plural+"."+spec.group']),
    (lambda c: (c["spec"].update(group="example"), c["metadata"].update(name="crontabs.example")),
     ['spec.group: Invalid value: "example": should be a domain with at least one dot']),
    (lambda c: c["spec"].update(scope="Global"),
     ['spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"']),
    (lambda c: c["spec"]["versions"].append({"name": "v2", "served": True, "storage": True,
                                             "schema": {"openAPIV3Schema": {"type": "object"}}}),
     ['spec.versions: Invalid value: "array": must have exactly one version marked as storage version']),
    (lambda c: c["spec"]["versions"][0].pop("schema"),
     ["spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"]),
    (lambda c: c["spec"]["names"].update(listKind="CronTab"),
     ['spec.names.listKind: Invalid value: "CronTab": kind and listKind may not be the same or parsing will fail']),
    (lambda c: c["spec"]["names"].update(shortNames=["CT"]),
     ['spec.names.shortNames[0]: Invalid value: "CT": a DNS-1035 label must consist of lower case alphanumeric '
      "characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. "
      "'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]),
    (lambda c: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"].update(
        properties={"spec": {"properties": {"a": {"type": "string"}}}}),
     ["spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for "
      "specified object fields"]),
    (lambda c: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"].update(
        properties={"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}),
     ["spec.versions[0].schema.openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other "
      "than name and generateName, but metadata is implicitly specified"]),
    (lambda c: (c["spec"].update(group="things.k8s.io"), c["metadata"].update(name="crontabs.things.k8s.io")),
     ['metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval '
      'annotation "api-approved.kubernetes.io", see https://github.com/kubernetes/enhancements/pull/1111']),
])
def test_crd_validation(mutate, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert _crd_messages(mutate) == expected


def test_crd_defaults_and_stored_versions() -> None:
    crd = copy.deepcopy(BASE_CRD)
    types.prepare_create(crd)
    assert crd["spec"]["names"]["listKind"] == "CronTabList"
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    assert crd["status"]["storedVersions"] == ["v1"]


def test_printer_columns() -> None:
    cols = columns_for({"additionalPrinterColumns": [
        {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Created", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Image", "type": "string", "jsonPath": ".spec.image", "priority": 1}]})
    obj = _cr({"cronSpec": "* * * * */5", "replicas": 2})
    obj["metadata"]["creationTimestamp"] = "2000-01-01T00:00:00Z"
    cells = [c.value(obj) for c in cols]
    assert [c.name for c in cols] == ["Name", "Spec", "Replicas", "Created", "Image"]
    assert cells[:3] == ["x", "* * * * */5", 2]
    assert cells[3].endswith("y") and cells[4] is None
    assert [c.priority for c in cols] == [0, 0, 0, 0, 1]


def test_openapi_scale_subresource_is_autoscaling_v1_scale() -> None:
    from kplane.apiserver.openapi import openapi_v2, openapi_v3_document
    from kplane.controlplane.crd.conversion import Converter
    from kplane.controlplane.crd.serving import build_defs

    crd = {"metadata": {"name": "crontabs.stable.example.com"},
           "spec": {"group": "stable.example.com", "scope": "Namespaced",
                    "names": {"plural": "crontabs", "kind": "CronTab"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                                           "statusReplicasPath": ".status.replicas"}},
                                  "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    defs = [d for d, _, _ in build_defs(crd, Converter())]
    v3 = openapi_v3_document(defs)
    path = v3["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/scale"]
    ref = {"$ref": "#/components/schemas/io.k8s.api.autoscaling.v1.Scale"}
    assert path["get"]["operationId"] == "readStableExampleComV1NamespacedCronTabScale"
    assert path["get"]["responses"]["200"]["content"]["application/json"]["schema"] == ref
    assert path["put"]["requestBody"]["content"]["application/json"]["schema"] == ref
    assert path["patch"]["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "kind": "Scale",
                                                                 "version": "v1"}
    schemas = v3["components"]["schemas"]
    assert schemas["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"] == [
        {"group": "autoscaling", "kind": "Scale", "version": "v1"}]
    assert schemas["io.k8s.api.autoscaling.v1.Scale"]["properties"]["spec"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.api.autoscaling.v1.ScaleSpec"}]
    assert schemas["io.k8s.api.autoscaling.v1.ScaleStatus"]["required"] == ["replicas"]
    # /status still reads and writes the custom resource itself.
    status = v3["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/status"]
    assert status["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/com.example.stable.v1.CronTab"}
    v2 = openapi_v2(defs, "v1.32.0")
    scale = v2["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/scale"]
    assert scale["get"]["responses"]["200"]["schema"] == {"$ref": "#/definitions/io.k8s.api.autoscaling.v1.Scale"}
    assert v2["definitions"]["io.k8s.api.autoscaling.v1.Scale"]["properties"]["spec"]["$ref"] == \
        "#/definitions/io.k8s.api.autoscaling.v1.ScaleSpec"


@pytest.mark.parametrize("rule", [
    "self.s.find('[0-9]+') == '123'",
    "self.s.findAll('[0-9]+') == ['123', '45']",
    "self.s.findAll('[0-9]+', 1) == ['123']",
    "isURL(self.u) && url(self.u).getScheme() == 'https' && url(self.u).getHostname() == 'example.com'",
    "url(self.u).getPort() == '8443' && url(self.u).getEscapedPath() == '/a/b'",
    "url(self.u).getQuery()['k'] == ['v']",
    "!isURL('not a url')",
    "isIP(self.ip) && ip(self.ip).family() == 4 && ip('::1').isLoopback() && !isIP('10.0.0.0/8')",
    "ip(self.ip).isGlobalUnicast() && ip('169.254.1.1').isLinkLocalUnicast()",
    "cidr(self.net).containsIP(self.ip) && cidr(self.net).prefixLength() == 16",
    "cidr(self.net).containsCIDR('10.1.2.0/24') && !cidr(self.net).containsCIDR('10.0.0.0/8')",
    "cidr('10.1.2.3/16').masked() == '10.1.0.0/16' && cidr('10.1.2.3/16').ip() == ip('10.1.2.3')",
    "isCIDR(self.net) && !isCIDR('10.1.0.0')",
    "[1, 2, 3].isSorted() && [1, 2, 3].sum() == 6",
])
def test_cel_kubernetes_libraries(rule: str) -> None:
    schema = object_schema({"type": "object", "x-kubernetes-validations": [{"rule": rule}], "properties": {
        "s": {"type": "string"}, "u": {"type": "string"}, "ip": {"type": "string"}, "net": {"type": "string"}}})
    obj = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "s": "abc123def45",
           "u": "https://example.com:8443/a/b?k=v", "ip": "10.1.2.3", "net": "10.1.0.0/16"}
    assert compile_schema(schema) == []
    assert Validator(schema).validate(obj) == []


def test_cel_runtime_budget_and_rule_length(monkeypatch: pytest.MonkeyPatch) -> None:
    from kplane.controlplane.crd import cel as cel_module

    schema = object_schema({"type": "object", "properties": {
        "a": {"type": "object", "x-kubernetes-validations": [{"rule": "true"}]},
        "b": {"type": "object", "x-kubernetes-validations": [{"rule": "1 == 2"}]}}})
    obj = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "a": {}, "b": {}}
    validator = Validator(schema)
    assert [c.field for c in validator.validate(obj)] == ["b"]
    monkeypatch.setattr(cel_module, "RUNTIME_BUDGET_SECONDS", -1.0)  # spent before the first rule
    causes = validator.validate(obj)
    assert [(c.field, c.message) for c in causes] == [
        ("a", 'Invalid value: "object": validation failed due to running out of cost budget, '
              "no further validation rules will be run")]
    too_long = {"type": "object", "x-kubernetes-validations": [{"rule": "true" + " && true" * 3000}]}
    assert compile_schema(too_long) == [("openAPIV3Schema.x-kubernetes-validations[0].rule",
                                         "Too long: may not be more than 16384 bytes")]
