"""/openapi/v2 in gnostic's protobuf encoding (openapi.v2.Document), read back with a tiny
independent wire-format reader; field numbers are those of gnostic-models openapiv2/OpenAPIv2.proto."""

from __future__ import annotations

import struct
from typing import Any

import orjson
import pytest
import yaml
from aiohttp.test_utils import make_mocked_request

from kplane.aggregator.openapi import OpenAPIAggregator
from kplane.apiserver import openapi, openapi_proto
from kplane.apiserver.openapi_routes import v2_response
from kplane.controlplane.types import builtin_resources

CM = "io.k8s.api.core.v1.ConfigMap"

# ---- a tiny protobuf reader -------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


class Msg:
    """A decoded message: field number -> list of raw values (int for varint, bytes otherwise)."""

    def __init__(self, data: bytes):
        self.fields: dict[int, list[Any]] = {}
        pos = 0
        while pos < len(data):
            key, pos = _varint(data, pos)
            num, wt = key >> 3, key & 7
            if wt == 0:
                value, pos = _varint(data, pos)
            elif wt == 1:
                value, pos = data[pos:pos + 8], pos + 8
            elif wt == 2:
                size, pos = _varint(data, pos)
                value, pos = data[pos:pos + size], pos + size
                assert len(value) == size, "truncated field"
            else:
                raise AssertionError(f"unexpected wire type {wt}")
            self.fields.setdefault(num, []).append((wt, value))
        assert pos == len(data)

    def has(self, num: int) -> bool:
        return num in self.fields

    def all(self, num: int) -> list[Any]:
        return [v for _, v in self.fields.get(num, [])]

    def one(self, num: int) -> Any:
        values = self.all(num)
        assert len(values) == 1, (num, values)
        return values[0]

    def str(self, num: int) -> str:
        return self.one(num).decode() if self.has(num) else ""

    def strs(self, num: int) -> list[str]:
        return [v.decode() for v in self.all(num)]

    def msg(self, num: int) -> Msg:
        return Msg(self.one(num))

    def msgs(self, num: int) -> list[Msg]:
        return [Msg(v) for v in self.all(num)]

    def double(self, num: int) -> float:
        return struct.unpack("<d", self.one(num))[0]

    def named(self, num: int) -> dict[str, Msg]:
        """repeated Named<T>{name = 1; value = 2} -> {name: value}."""
        return {m.str(1): m.msg(2) for m in self.msgs(num)}


def extensions(m: Msg, num: int) -> dict[str, Any]:
    """repeated NamedAny at num -> {name: the YAML of Any (field 2), parsed}."""
    return {name: yaml.safe_load(any_.str(2)) for name, any_ in m.named(num).items()}


def int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


# Document: swagger 1, info 2, paths 8, definitions 9, security 12, security_definitions 13
# Schema: _ref 1, description 4, required 19, enum 20, additional_properties 21, type 22, items 23,
#         properties 25, vendor_extension 31


def core_document() -> Msg:
    doc = openapi.openapi_v2([d for d in builtin_resources() if not d.group], "v1.34.0-kplane")
    return Msg(openapi_proto.encode_document(doc))


def definitions(doc: Msg) -> dict[str, Msg]:
    return doc.msg(9).named(1)


def test_document_header_and_security() -> None:
    doc = core_document()
    assert doc.str(1) == "2.0"
    info = doc.msg(2)
    assert (info.str(1), info.str(2)) == ("Kubernetes", "v1.34.0-kplane")
    # security: [{BearerToken: []}] -> SecurityRequirement{NamedStringArray{name, StringArray{}}}
    [requirement] = doc.msgs(12)
    assert list(requirement.named(1)) == ["BearerToken"]
    # securityDefinitions.BearerToken: SecurityDefinitionsItem.api_key_security (2)
    item = doc.msg(13).named(1)["BearerToken"]
    api_key = item.msg(2)
    assert (api_key.str(1), api_key.str(2), api_key.str(3)) == ("apiKey", "authorization", "header")


def test_configmap_schema_gvk_and_data_map() -> None:
    cm = definitions(core_document())[CM]
    assert cm.msg(22).strs(1) == ["object"]
    assert extensions(cm, 31)["x-kubernetes-group-version-kind"] == [
        {"group": "", "kind": "ConfigMap", "version": "v1"}]
    props = cm.msg(25).named(1)
    assert {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"} <= set(props)
    data = props["data"]
    assert data.msg(22).strs(1) == ["object"]
    value_schema = data.msg(21).msg(1)  # AdditionalPropertiesItem.schema
    assert value_schema.msg(22).strs(1) == ["string"]
    assert props["metadata"].str(1) == "#/definitions/" + openapi.OBJECT_META
    assert props["immutable"].msg(22).strs(1) == ["boolean"]
    # ConfigMapList.items: array of $ref (ItemsItem.schema)
    cm_list = definitions(core_document())[CM + "List"]
    items = cm_list.msg(25).named(1)["items"]
    assert items.msg(22).strs(1) == ["array"]
    [item] = items.msg(23).msgs(1)
    assert item.str(1) == "#/definitions/" + CM
    assert cm_list.strs(19) == ["items"]


def test_every_definition_ref_resolves_and_gvks_survive() -> None:
    doc = core_document()
    defs = definitions(doc)
    refs: set[str] = set()

    def walk(s: Msg) -> None:
        if s.has(1):
            refs.add(s.str(1).rsplit("/", 1)[1])
        if s.has(25):
            for p in s.msg(25).named(1).values():
                walk(p)
        if s.has(23):
            for i in s.msg(23).msgs(1):
                walk(i)
        if s.has(21) and s.msg(21).has(1):
            walk(s.msg(21).msg(1))

    for s in defs.values():
        walk(s)
    assert refs <= set(defs), refs - set(defs)
    kinds = {gvk["kind"] for s in defs.values() for gvk in extensions(s, 31).get("x-kubernetes-group-version-kind", [])}
    assert {"ConfigMap", "Namespace", "Secret", "Status", "DeleteOptions"} <= kinds


def test_paths_operations_and_parameters() -> None:
    paths = core_document().msg(8).named(2)  # Paths.path: NamedPathItem
    item = paths["/api/v1/namespaces/{namespace}/configmaps"]
    # PathItem.parameters (9): ParametersItem.parameter (1) -> Parameter.non_body_parameter (2)
    #   -> NonBodyParameter.path_parameter_sub_schema (4): required 1, in 2, name 4, type 5
    namespace, pretty = (p.msg(1).msg(2) for p in item.msgs(9))
    assert pretty.msg(3).str(4) == "pretty"  # query_parameter_sub_schema (3)
    namespace = namespace.msg(4)
    assert (namespace.one(1), namespace.str(2), namespace.str(4), namespace.str(5)) == (1, "path", "namespace",
                                                                                        "string")
    get, post = item.msg(2), item.msg(4)  # PathItem.get = 2, post = 4
    assert get.str(5) == "listCoreV1NamespacedConfigMap"  # Operation.operation_id
    ext = extensions(get, 13)
    assert ext["x-kubernetes-action"] == "list"
    assert ext["x-kubernetes-group-version-kind"] == {"group": "", "kind": "ConfigMap", "version": "v1"}
    # query parameters: QueryParameterSubSchema (3): name 4, type 6, unique_items 20
    query = {q.str(4): q for q in (p.msg(1).msg(2).msg(3) for p in get.msgs(8))}
    assert query["limit"].str(6) == "integer" and query["limit"].one(20) == 1
    assert query["watch"].str(6) == "boolean"
    # the body parameter: Parameter.body_parameter (1): name 2, in 3, required 4, schema 5
    body = post.msgs(8)[0].msg(1).msg(1)
    assert (body.str(2), body.str(3), body.one(4)) == ("body", "body", 1)
    assert body.msg(5).str(1) == "#/definitions/" + CM
    # Responses.response_code: NamedResponseValue -> ResponseValue.response (1): description 1, schema 2
    responses = get.msg(9).named(1)
    ok = responses["200"].msg(1)
    assert ok.str(1) == "OK"
    assert ok.msg(2).msg(1).str(1) == "#/definitions/" + CM + "List"  # SchemaItem.schema -> $ref
    assert responses["401"].msg(1).str(1) == "Unauthorized"
    assert get.strs(6)[0] == "application/json" and get.strs(10) == ["https"]  # produces, schemes


def test_schema_scalars_oneofs_and_anys() -> None:
    doc = {"swagger": "2.0", "definitions": {"T": {
        "type": "object",
        "required": ["a"],
        "properties": {
            "a": {"type": "integer", "format": "int32", "minimum": -3, "maximum": 2.5, "exclusiveMaximum": True,
                  "maxLength": 0, "minItems": -1},
            "e": {"type": "string", "enum": ["x", "y: z"], "default": "x", "pattern": "^[a-z]+$"},
            "closed": {"type": "object", "additionalProperties": False},
            "open": {"type": "object", "additionalProperties": True},
            "empty": {"type": "object", "properties": {}},
            "tuple": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]},
            "both": {"allOf": [{"$ref": "#/definitions/T"}], "x-kubernetes-patch-merge-key": "name",
                     "x-kubernetes-patch-strategy": "merge", "x-kubernetes-list-map-keys": ["name", "port"]},
            "multi": {"type": ["string", "null"]},
        }}}}
    t = definitions(Msg(openapi_proto.encode_document(doc)))["T"]
    assert t.strs(19) == ["a"]
    props = t.msg(25).named(1)
    a = props["a"]
    assert a.str(2) == "int32"
    assert a.double(9) == -3.0 and a.double(7) == 2.5 and a.one(8) == 1
    assert not a.has(11)  # proto3: zero is not written
    assert int64(a.one(15)) == -1  # negative int64: ten-byte varint
    e = props["e"]
    assert [yaml.safe_load(v.str(2)) for v in e.msgs(20)] == ["x", "y: z"]
    assert yaml.safe_load(e.msg(5).str(2)) == "x" and e.str(13) == "^[a-z]+$"
    closed = props["closed"].msg(21)
    assert closed.fields == {2: [(0, 0)]}  # oneof boolean false is still written
    assert props["open"].msg(21).one(2) == 1
    assert props["empty"].has(25) and props["empty"].one(25) == b""  # present-but-empty Properties
    assert [s.msg(22).strs(1) for s in props["tuple"].msg(23).msgs(1)] == [["string"], ["integer"]]
    both = props["both"]
    assert [s.str(1) for s in both.msgs(24)] == ["#/definitions/T"]
    assert extensions(both, 31) == {"x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge",
                                    "x-kubernetes-list-map-keys": ["name", "port"]}
    assert props["multi"].msg(22).strs(1) == ["string", "null"]


def test_parameter_kinds_refs_and_file_responses() -> None:
    doc = {"swagger": "2.0", "paths": {
        "x-top": {"k": 1},
        "/up": {"post": {
            "parameters": [
                {"$ref": "#/parameters/shared"},
                {"in": "header", "name": "X-H", "type": "string"},
                {"in": "formData", "name": "f", "type": "file", "allowEmptyValue": True},
                {"in": "query", "name": "ids", "type": "array", "items": {"type": "integer", "enum": [1, 2]},
                 "collectionFormat": "csv"},
            ],
            "responses": {"200": {"description": "ok", "schema": {"type": "file"},
                                  "headers": {"X-Rate": {"type": "integer", "description": "left"}}},
                          "404": {"$ref": "#/responses/missing"}, "x-r": True}}}},
        "parameters": {"shared": {"in": "query", "name": "pretty", "type": "string"}},
        "responses": {"missing": {"description": "not found"}}}
    m = Msg(openapi_proto.encode_document(doc))
    paths = m.msg(8)
    assert extensions(paths, 1) == {"x-top": {"k": 1}}
    op = paths.named(2)["/up"].msg(4)
    ref, header, form, query = op.msgs(8)
    assert ref.msg(2).str(1) == "#/parameters/shared"  # ParametersItem.json_reference
    assert header.msg(1).msg(2).msg(1).str(4) == "X-H"  # header sub-schema: name 4
    form_schema = form.msg(1).msg(2).msg(2)  # formData sub-schema: allow_empty_value 5, type 6
    assert form_schema.one(5) == 1 and form_schema.str(6) == "file"
    q = query.msg(1).msg(2).msg(3)
    items = q.msg(8)  # PrimitivesItems: type 1, enum 16
    assert items.str(1) == "integer" and [yaml.safe_load(v.str(2)) for v in items.msgs(16)] == [1, 2]
    assert q.str(9) == "csv"
    responses = op.msg(9)
    ok = responses.named(1)["200"].msg(1)
    assert ok.msg(2).msg(2).str(6) == "file"  # SchemaItem.file_schema: type 6
    rate = ok.msg(3).named(1)["X-Rate"]  # Headers -> Header: type 1, description 18
    assert rate.str(1) == "integer" and rate.str(18) == "left"
    assert responses.named(1)["404"].msg(2).str(1) == "#/responses/missing"
    assert extensions(responses, 2) == {"x-r": True}
    shared = m.msg(10).named(1)["shared"]  # ParameterDefinitions -> Parameter
    assert shared.msg(2).msg(3).str(4) == "pretty"
    assert m.msg(11).named(1)["missing"].str(1) == "not found"


def test_yaml_text_is_flow_yaml_and_escapes_unprintables() -> None:
    assert openapi_proto.yaml_text([{"group": "", "kind": "ConfigMap", "version": "v1"}]) == \
        '[{"group": "", "kind": "ConfigMap", "version": "v1"}]\n'
    odd = "a\u2028b\x85c\x7fd\ufeffé😀\n\t\"q\""
    text = openapi_proto.yaml_text(odd)
    assert "\u2028" not in text and "\x7f" not in text and "😀" in text
    assert yaml.safe_load(text) == odd
    for value in (None, True, 3, 2.5, "yes", "1", {"a": [1, "b"]}, []):
        assert yaml.safe_load(openapi_proto.yaml_text(value)) == value


@pytest.mark.parametrize("accept,proto", [
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", True),
    ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf", True),
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json", True),
    ("application/json, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", False),
    ("application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=0.9", True),
    ("*/*, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", True),  # specific before wildcard
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=0", False),
    ("application/vnd.kubernetes.protobuf", False),
    ("", False),
    ("*/*", False),
])
def test_negotiation(accept: str, proto: bool) -> None:
    assert openapi_proto.wants_protobuf(accept) is proto


def _request(accept: str = "", if_none_match: str = ""):
    headers = {"Accept": accept} if accept else {}
    if if_none_match:
        headers["If-None-Match"] = if_none_match
    return make_mocked_request("GET", "/openapi/v2", headers=headers)


def test_v2_response_content_type_etag_and_304() -> None:
    body = orjson.dumps(openapi.openapi_v2([d for d in builtin_resources() if not d.group], "v1"))
    enc = openapi_proto.Encodings()
    as_json = v2_response(_request(), body, enc)
    assert as_json.content_type == "application/json" and as_json.body == body
    as_proto = v2_response(_request(openapi_proto.MEDIA_TYPE), body, enc)
    assert as_proto.headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert Msg(as_proto.body).str(1) == "2.0"
    assert v2_response(_request(openapi_proto.MEDIA_TYPE), body, enc).body is as_proto.body  # cached
    etag = as_json.headers["ETag"]
    assert etag == as_proto.headers["ETag"] and etag.startswith('"') and len(etag) == 130
    assert as_proto.headers["Vary"] == "Accept"
    assert v2_response(_request(openapi_proto.MEDIA_TYPE, etag), body, enc).status == 304
    other = orjson.dumps({"swagger": "2.0"})
    changed = v2_response(_request(openapi_proto.MEDIA_TYPE, etag), other, enc)
    assert changed.status == 200 and changed.headers["ETag"] != etag and Msg(changed.body).str(1) == "2.0"


async def test_aggregated_document_is_served_as_protobuf() -> None:
    local = orjson.dumps(openapi.openapi_v2([d for d in builtin_resources() if not d.group], "v1"))
    agg = OpenAPIAggregator(lambda: local, fetch=None, targets=dict, apiservices=list)  # type: ignore[arg-type]
    agg.v2_specs["v1alpha1.wardle.example.com"] = {"swagger": "2.0", "definitions": {
        "com.example.wardle.v1alpha1.Flunder": {
            "type": "object", "properties": {"spec": {"type": "object"}},
            "x-kubernetes-group-version-kind": [{"group": "wardle.example.com", "kind": "Flunder",
                                                 "version": "v1alpha1"}]}},
        "paths": {"/apis/wardle.example.com/v1alpha1/flunders": {"get": {"operationId": "listFlunders"}}}}
    agg._version += 1
    resp = await agg.handle_v2(_request(openapi_proto.MEDIA_TYPE))
    doc = Msg(resp.body)
    defs = definitions(doc)
    assert CM in defs
    flunder = defs["com.example.wardle.v1alpha1.Flunder"]
    assert extensions(flunder, 31)["x-kubernetes-group-version-kind"][0]["kind"] == "Flunder"
    paths = doc.msg(8).named(2)
    assert paths["/apis/wardle.example.com/v1alpha1/flunders"].msg(2).str(5) == "listFlunders"
    assert "/api/v1/namespaces/{namespace}/configmaps" in paths
