"""The /openapi/v2 document in gnostic's protobuf encoding (`openapi.v2.Document`).

kube-apiserver serves it for `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`;
kubectl reads it for client-side validation and strategic-merge patch metadata. The message and
field numbers below are those of github.com/google/gnostic-models openapiv2/OpenAPIv2.proto. Every
`Any` carries its value as YAML text (`Any.yaml`), as gnostic's compiler does; JSON-parsed nodes
re-marshal in flow style, so the text is the value's JSON, which is valid YAML.

Each message is a table of (JSON key, field number, writer); vendor extensions (`x-*` keys) go
to the message's `vendor_extension` field as NamedAny. Keys gnostic would reject are skipped."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Callable
from typing import Any

import orjson

MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
LEGACY_MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
# "@" is not legal in a Content-Type token (client-go's mime.ParseMediaType rejects it), so upstream
# labels the reply with the dotted form whichever of the two was asked for.
CONTENT_TYPE = LEGACY_MEDIA_TYPE

Obj = dict[str, Any]
Writer = Callable[["_Message", int, Any], None]


# ---- wire format --------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF  # negative int64 -> two's complement, ten bytes
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class _Message:
    """Accumulates one message's fields. Proto3: scalars equal to their zero value are not written;
    sub-messages are written whenever present (an empty one still marks the field as set)."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def bytes_field(self, num: int, data: bytes) -> None:
        self.buf += _varint(num << 3 | 2)
        self.buf += _varint(len(data))
        self.buf += data

    def string(self, num: int, value: Any) -> None:
        if isinstance(value, str) and value:
            self.bytes_field(num, value.encode())

    def strings(self, num: int, values: Any) -> None:
        if isinstance(values, str):
            values = [values]
        for v in values if isinstance(values, list) else ():
            if isinstance(v, str):
                self.bytes_field(num, v.encode())

    def boolean(self, num: int, value: Any, always: bool = False) -> None:
        if isinstance(value, bool) and (value or always):
            self.buf += _varint(num << 3)
            self.buf += b"\x01" if value else b"\x00"

    def int64(self, num: int, value: Any) -> None:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value:
            self.buf += _varint(num << 3)
            self.buf += _varint(value)

    def double(self, num: int, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool) and value:
            self.buf += _varint(num << 3 | 1)
            self.buf += struct.pack("<d", float(value))

    def done(self) -> bytes:
        return bytes(self.buf)


# ---- field writers --------------------------------------------------------------------------------


def _str(m: _Message, num: int, v: Any) -> None:
    m.string(num, v)


def _strs(m: _Message, num: int, v: Any) -> None:
    m.strings(num, v)


def _bool(m: _Message, num: int, v: Any) -> None:
    m.boolean(num, v)


def _int(m: _Message, num: int, v: Any) -> None:
    m.int64(num, v)


def _double(m: _Message, num: int, v: Any) -> None:
    m.double(num, v)


def _one(encode: Callable[[Any], bytes | None]) -> Writer:
    def write(m: _Message, num: int, v: Any) -> None:
        data = encode(v)
        if data is not None:
            m.bytes_field(num, data)
    return write


def _many(encode: Callable[[Any], bytes | None]) -> Writer:
    def write(m: _Message, num: int, v: Any) -> None:
        for item in v if isinstance(v, list) else ():
            data = encode(item)
            if data is not None:
                m.bytes_field(num, data)
    return write


def _fields(obj: Any, table: list[tuple[str, int, Writer]], ext: int | None) -> bytes:
    """Encode obj's keys per table (sorted by field number) and its x- keys as vendor extensions."""
    m = _Message()
    if not isinstance(obj, dict):
        return m.done()
    for key, num, write in table:
        if key in obj:
            write(m, num, obj[key])
    if ext is not None:
        for key, value in obj.items():
            if isinstance(key, str) and key.startswith("x-"):
                m.bytes_field(ext, _named(key, _any(value)))
    return m.done()


def _table(*rows: tuple[str, int, Writer]) -> list[tuple[str, int, Writer]]:
    return sorted(rows, key=lambda r: r[1])


def _named(name: str, value: bytes) -> bytes:
    """Named<T>{name = 1; value = 2}."""
    m = _Message()
    m.string(1, name)
    m.bytes_field(2, value)
    return m.done()


def _named_map(encode: Callable[[Any], bytes | None]) -> Callable[[Any], bytes | None]:
    """A map message `{repeated Named<T> additional_properties = 1}` (Definitions, Properties, …)."""
    def encode_map(obj: Any) -> bytes | None:
        if not isinstance(obj, dict):
            return None
        m = _Message()
        for name, value in obj.items():
            data = encode(value)
            if data is not None:
                m.bytes_field(1, _named(name, data))
        return m.done()
    return encode_map


# ---- Any: the value as YAML --------------------------------------------------------------------

# Characters YAML does not allow raw (or reads as line breaks) are written as \u escapes.
_NOT_YAML_PRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def yaml_text(value: Any) -> str:
    """A JSON value as gnostic's Any.yaml: flow-style YAML, newline-terminated."""
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return _NOT_YAML_PRINTABLE.sub(lambda c: f"\\u{ord(c.group()):04x}", text) + "\n"


def _any(value: Any) -> bytes:
    """Any{google.protobuf.Any value = 1; string yaml = 2}."""
    m = _Message()
    m.string(2, yaml_text(value))
    return m.done()


_any_w = _one(_any)
_anys = _many(_any)


# ---- shared pieces ------------------------------------------------------------------------------


def _external_docs(obj: Any) -> bytes:
    return _fields(obj, _EXTERNAL_DOCS, 3)


_EXTERNAL_DOCS = _table(("description", 1, _str), ("url", 2, _str))
_external_docs_w = _one(_external_docs)


def _validations(first: int) -> list[tuple[str, int, Writer]]:
    """type … multipleOf: the run of 17 fields shared by PrimitivesItems, Header and the non-body
    parameter sub-schemas, numbered from `first`."""
    rows: list[tuple[str, Writer]] = [
        ("type", _str), ("format", _str), ("items", _one(_primitives_items)), ("collectionFormat", _str),
        ("default", _any_w), ("maximum", _double), ("exclusiveMaximum", _bool), ("minimum", _double),
        ("exclusiveMinimum", _bool), ("maxLength", _int), ("minLength", _int), ("pattern", _str),
        ("maxItems", _int), ("minItems", _int), ("uniqueItems", _bool), ("enum", _anys), ("multipleOf", _double),
    ]
    return [(key, first + i, write) for i, (key, write) in enumerate(rows)]


def _primitives_items(obj: Any) -> bytes:
    return _fields(obj, _PRIMITIVES_ITEMS, 18)


_PRIMITIVES_ITEMS = _table(*_validations(1))


# ---- Schema -------------------------------------------------------------------------------------


def _type_item(v: Any) -> bytes:
    """TypeItem{repeated string value = 1}."""
    m = _Message()
    m.strings(1, v)
    return m.done()


def _items_item(v: Any) -> bytes:
    """ItemsItem{repeated Schema schema = 1}: one schema or a tuple of them."""
    m = _Message()
    for s in v if isinstance(v, list) else [v]:
        m.bytes_field(1, schema(s))
    return m.done()


def _additional_properties(v: Any) -> bytes | None:
    """AdditionalPropertiesItem{oneof {Schema schema = 1; bool boolean = 2}}; a oneof member is
    written even when false."""
    m = _Message()
    if isinstance(v, bool):
        m.boolean(2, v, always=True)
    elif isinstance(v, dict):
        m.bytes_field(1, schema(v))
    else:
        return None
    return m.done()


def _xml(obj: Any) -> bytes:
    return _fields(obj, _XML, 6)


_XML = _table(("name", 1, _str), ("namespace", 2, _str), ("prefix", 3, _str), ("attribute", 4, _bool),
              ("wrapped", 5, _bool))


def schema(obj: Any) -> bytes:
    """Schema (field 31: vendor extensions)."""
    return _fields(obj, _SCHEMA, 31)


_SCHEMA = _table(
    ("$ref", 1, _str), ("format", 2, _str), ("title", 3, _str), ("description", 4, _str), ("default", 5, _any_w),
    ("multipleOf", 6, _double), ("maximum", 7, _double), ("exclusiveMaximum", 8, _bool), ("minimum", 9, _double),
    ("exclusiveMinimum", 10, _bool), ("maxLength", 11, _int), ("minLength", 12, _int), ("pattern", 13, _str),
    ("maxItems", 14, _int), ("minItems", 15, _int), ("uniqueItems", 16, _bool), ("maxProperties", 17, _int),
    ("minProperties", 18, _int), ("required", 19, _strs), ("enum", 20, _anys),
    ("additionalProperties", 21, _one(_additional_properties)), ("type", 22, _one(_type_item)),
    ("items", 23, _one(_items_item)), ("allOf", 24, _many(schema)), ("properties", 25, _one(_named_map(schema))),
    ("discriminator", 26, _str), ("readOnly", 27, _bool), ("xml", 28, _one(_xml)),
    ("externalDocs", 29, _external_docs_w), ("example", 30, _any_w),
)


# ---- parameters ---------------------------------------------------------------------------------


def _json_reference(obj: Obj) -> bytes:
    """JsonReference{string _ref = 1; string description = 2}."""
    m = _Message()
    m.string(1, obj.get("$ref"))
    m.string(2, obj.get("description"))
    return m.done()


_BODY_PARAMETER = _table(("description", 1, _str), ("name", 2, _str), ("in", 3, _str), ("required", 4, _bool),
                         ("schema", 5, _one(schema)))
_HEAD = [("required", 1, _bool), ("in", 2, _str), ("description", 3, _str), ("name", 4, _str)]
# header and path sub-schemas: 17 validations from 5, extensions 22;
# query and formData add allowEmptyValue = 5: validations from 6, extensions 23.
_HEADER_OR_PATH = _table(*_HEAD, *_validations(5))
_QUERY_OR_FORM = _table(*_HEAD, ("allowEmptyValue", 5, _bool), *_validations(6))
# NonBodyParameter oneof member by "in": (field number, table, extensions field)
_NON_BODY = {"header": (1, _HEADER_OR_PATH, 22), "formData": (2, _QUERY_OR_FORM, 23),
             "query": (3, _QUERY_OR_FORM, 23), "path": (4, _HEADER_OR_PATH, 22)}


def parameter(obj: Any) -> bytes | None:
    """Parameter{oneof {BodyParameter body_parameter = 1; NonBodyParameter non_body_parameter = 2}}."""
    if not isinstance(obj, dict):
        return None
    m = _Message()
    where = obj.get("in")
    if where == "body":
        m.bytes_field(1, _fields(obj, _BODY_PARAMETER, 6))
    else:
        num, table, ext = _NON_BODY.get(where, _NON_BODY["query"])
        non_body = _Message()
        non_body.bytes_field(num, _fields(obj, table, ext))
        m.bytes_field(2, non_body.done())
    return m.done()


def _parameters_item(obj: Any) -> bytes | None:
    """ParametersItem{oneof {Parameter parameter = 1; JsonReference json_reference = 2}}."""
    if not isinstance(obj, dict):
        return None
    m = _Message()
    if "$ref" in obj:
        m.bytes_field(2, _json_reference(obj))
    else:
        data = parameter(obj)
        m.bytes_field(1, data or b"")
    return m.done()


# ---- responses ----------------------------------------------------------------------------------


_FILE_SCHEMA = _table(("format", 1, _str), ("title", 2, _str), ("description", 3, _str), ("default", 4, _any_w),
                      ("required", 5, _strs), ("type", 6, _str), ("readOnly", 7, _bool),
                      ("externalDocs", 8, _external_docs_w), ("example", 9, _any_w))


def _schema_item(obj: Any) -> bytes:
    """SchemaItem{oneof {Schema schema = 1; FileSchema file_schema = 2}}."""
    m = _Message()
    if isinstance(obj, dict) and obj.get("type") == "file":
        m.bytes_field(2, _fields(obj, _FILE_SCHEMA, 10))
    else:
        m.bytes_field(1, schema(obj))
    return m.done()


def _header(obj: Any) -> bytes:
    return _fields(obj, _HEADER, 19)


_HEADER = _table(*_validations(1), ("description", 18, _str))


def response(obj: Any) -> bytes:
    """Response{description = 1; SchemaItem schema = 2; Headers headers = 3; Examples examples = 4}."""
    return _fields(obj, _RESPONSE, 5)


_RESPONSE = _table(("description", 1, _str), ("schema", 2, _one(_schema_item)),
                   ("headers", 3, _one(_named_map(_header))), ("examples", 4, _one(_named_map(_any))))


def _responses(obj: Any) -> bytes:
    """Responses{repeated NamedResponseValue response_code = 1; repeated NamedAny vendor_extension = 2}."""
    m = _Message()
    for code, value in obj.items() if isinstance(obj, dict) else ():
        if code.startswith("x-"):
            m.bytes_field(2, _named(code, _any(value)))
        elif isinstance(value, dict):
            rv = _Message()  # ResponseValue{oneof {Response response = 1; JsonReference json_reference = 2}}
            if "$ref" in value:
                rv.bytes_field(2, _json_reference(value))
            else:
                rv.bytes_field(1, response(value))
            m.bytes_field(1, _named(code, rv.done()))
    return m.done()


# ---- operations and paths -----------------------------------------------------------------------


def _string_array(v: Any) -> bytes:
    m = _Message()
    m.strings(1, v)
    return m.done()


_security_requirement = _named_map(_string_array)  # SecurityRequirement{repeated NamedStringArray = 1}


def operation(obj: Any) -> bytes:
    return _fields(obj, _OPERATION, 13)


_OPERATION = _table(
    ("tags", 1, _strs), ("summary", 2, _str), ("description", 3, _str), ("externalDocs", 4, _external_docs_w),
    ("operationId", 5, _str), ("produces", 6, _strs), ("consumes", 7, _strs),
    ("parameters", 8, _many(_parameters_item)), ("responses", 9, _one(_responses)), ("schemes", 10, _strs),
    ("deprecated", 11, _bool), ("security", 12, _many(_security_requirement)),
)
_op = _one(operation)
_PATH_ITEM = _table(("$ref", 1, _str), ("get", 2, _op), ("put", 3, _op), ("post", 4, _op), ("delete", 5, _op),
                    ("options", 6, _op), ("head", 7, _op), ("patch", 8, _op),
                    ("parameters", 9, _many(_parameters_item)))


def path_item(obj: Any) -> bytes:
    return _fields(obj, _PATH_ITEM, 10)


def _paths(obj: Any) -> bytes:
    """Paths{repeated NamedAny vendor_extension = 1; repeated NamedPathItem path = 2}."""
    m = _Message()
    for key, value in obj.items() if isinstance(obj, dict) else ():
        if key.startswith("x-"):
            m.bytes_field(1, _named(key, _any(value)))
        elif key.startswith("/"):
            m.bytes_field(2, _named(key, path_item(value)))
    return m.done()


# ---- security definitions, info, tags -----------------------------------------------------------


def _scopes(obj: Any) -> bytes:
    """Oauth2Scopes{repeated NamedString additional_properties = 1} (NamedString's value is a string)."""
    m = _Message()
    for name, value in obj.items() if isinstance(obj, dict) else ():
        pair = _Message()
        pair.string(1, name)
        pair.string(2, value)
        m.bytes_field(1, pair.done())
    return m.done()


_TYPE_FLOW = [("type", 1, _str), ("flow", 2, _str), ("scopes", 3, _one(_scopes))]
# SecurityDefinitionsItem oneof member: (field number, table, extensions field)
_SECURITY_SCHEMES: dict[tuple[str, str], tuple[int, list[tuple[str, int, Writer]], int]] = {
    ("basic", ""): (1, _table(("type", 1, _str), ("description", 2, _str)), 3),
    ("apiKey", ""): (2, _table(("type", 1, _str), ("name", 2, _str), ("in", 3, _str), ("description", 4, _str)), 5),
    ("oauth2", "implicit"): (3, _table(*_TYPE_FLOW, ("authorizationUrl", 4, _str), ("description", 5, _str)), 6),
    ("oauth2", "password"): (4, _table(*_TYPE_FLOW, ("tokenUrl", 4, _str), ("description", 5, _str)), 6),
    ("oauth2", "application"): (5, _table(*_TYPE_FLOW, ("tokenUrl", 4, _str), ("description", 5, _str)), 6),
    ("oauth2", "accessCode"): (6, _table(*_TYPE_FLOW, ("authorizationUrl", 4, _str), ("tokenUrl", 5, _str),
                                         ("description", 6, _str)), 7),
}


def _security_definitions_item(obj: Any) -> bytes | None:
    if not isinstance(obj, dict):
        return None
    kind = obj.get("type")
    scheme = _SECURITY_SCHEMES.get((kind, obj.get("flow", "") if kind == "oauth2" else ""))
    if scheme is None:
        return None
    num, table, ext = scheme
    m = _Message()
    m.bytes_field(num, _fields(obj, table, ext))
    return m.done()


_CONTACT = _table(("name", 1, _str), ("url", 2, _str), ("email", 3, _str))
_LICENSE = _table(("name", 1, _str), ("url", 2, _str))
_INFO = _table(("title", 1, _str), ("version", 2, _str), ("description", 3, _str), ("termsOfService", 4, _str),
               ("contact", 5, _one(lambda o: _fields(o, _CONTACT, 4))),
               ("license", 6, _one(lambda o: _fields(o, _LICENSE, 3))))
_TAG = _table(("name", 1, _str), ("description", 2, _str), ("externalDocs", 3, _external_docs_w))


# ---- Document -----------------------------------------------------------------------------------


_DOCUMENT = _table(
    ("swagger", 1, _str), ("info", 2, _one(lambda o: _fields(o, _INFO, 7))), ("host", 3, _str),
    ("basePath", 4, _str), ("schemes", 5, _strs), ("consumes", 6, _strs), ("produces", 7, _strs),
    ("paths", 8, _one(_paths)), ("definitions", 9, _one(_named_map(schema))),
    ("parameters", 10, _one(_named_map(parameter))), ("responses", 11, _one(_named_map(response))),
    ("security", 12, _many(_security_requirement)),
    ("securityDefinitions", 13, _one(_named_map(_security_definitions_item))),
    ("tags", 14, _many(lambda o: _fields(o, _TAG, 4))), ("externalDocs", 15, _external_docs_w),
)


def encode_document(doc: Obj) -> bytes:
    """A Swagger 2.0 document (as JSON-decoded data) -> serialized gnostic openapi.v2.Document."""
    return _fields(doc, _DOCUMENT, 16)


# ---- serving ------------------------------------------------------------------------------------


def wants_protobuf(accept: str) -> bool:
    """Negotiate /openapi/v2 like kube-openapi: clauses by quality (then specificity, then order),
    the first one matching JSON or either protobuf media type wins. Anything else gets JSON."""
    clauses = []
    for index, part in enumerate((accept or "*/*").split(",")):
        fields = part.split(";")
        kind, _, sub = fields[0].strip().lower().partition("/")
        q = 1.0
        for f in fields[1:]:
            name, _, value = f.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if kind and sub and q > 0:
            clauses.append((-q, kind == "*", sub == "*", index, kind, sub))
    for *_, kind, sub in sorted(clauses):
        if kind not in ("application", "*"):
            continue
        if sub in ("json", "*"):
            return False
        if sub in (MEDIA_TYPE.split("/")[1], LEGACY_MEDIA_TYPE.split("/")[1]):
            return True
    return False


class Encodings:
    """The protobuf encoding and the ETag of the latest JSON v2 document, each computed once per
    document (keyed by the identity of its bytes, which this cache keeps alive)."""

    def __init__(self) -> None:
        self._json: bytes | None = None
        self._etag = ""
        self._proto: bytes | None = None

    def _key(self, doc_json: bytes) -> None:
        if doc_json is not self._json:
            self._json, self._etag, self._proto = doc_json, "", None

    def etag(self, doc_json: bytes) -> str:
        """Upstream's: the quoted upper-case hex SHA-512 of the JSON, shared by both encodings (Vary: Accept)."""
        self._key(doc_json)
        if not self._etag:
            self._etag = f'"{hashlib.sha512(doc_json).hexdigest().upper()}"'
        return self._etag

    def proto(self, doc_json: bytes) -> bytes:
        self._key(doc_json)
        if self._proto is None:
            self._proto = encode_document(orjson.loads(doc_json))
        return self._proto
