"""A tiny DSL for writing OpenAPI v3 schemas of built-in types.

Schemas are plain dicts, inline (no $ref), so the same dict serves OpenAPI,
`kubectl explain`, strategic merge, apply and pruning. A nested type that
upstream publishes as a definition of its own (io.k8s.api.core.v1.ServicePort)
is given that name with `obj(..., name=...)` (or `named`): the name rides in
the dict under the private key DEFINITION, every reader but OpenAPI ignores it,
and the OpenAPI generator publishes the type once under its name and refers to
it (kplane/apiserver/openapi.py). The x-kubernetes-* list/map extensions are
spelled as keyword arguments because a typo in a long extension name would
silently change patch semantics.

Schema constants built here are shared between types: treat them as read-only.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

DEFINITION = "x-kplane-definition"  # private: the OpenAPI definition name of a nested type's schema
_DEFINITIONS: dict[str, Schema] = {}

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
TIME = META + "Time"
MICRO_TIME = META + "MicroTime"

# Upstream's standard descriptions of the TypeMeta/ObjectMeta fields of every kind.
API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should "
    "convert recognized schemas to the latest internal value, and may reject unrecognized values. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources")
KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer "
    "this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")
METADATA_DOC = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")
LIST_METADATA_DOC = (
    "Standard list metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")


def named(name: str, schema: Schema) -> Schema:
    """Mark `schema` as the definition `name` (upstream's, e.g. io.k8s.api.core.v1.ServicePort) and return it.

    Copies made of it (`described`) keep the mark, so every field holding the type refers to one
    definition. A name stands for one schema: naming a different one the same is a programming error.
    """
    known = _DEFINITIONS.get(name)
    if known is not None and known is not schema:
        raise ValueError(f"OpenAPI definition {name} is already another schema")
    schema[DEFINITION] = name
    _DEFINITIONS[name] = schema
    return schema


def definition(name: str) -> Schema | None:
    """The schema named `name` (as written, with its own description), if one was."""
    return _DEFINITIONS.get(name)


def _ext(schema: Schema, merge_key: str = "", strategy: str = "", list_type: str = "",
         map_keys: list[str] | None = None, map_type: str = "") -> Schema:
    if merge_key:
        schema["x-kubernetes-patch-merge-key"] = merge_key
    if strategy:
        schema["x-kubernetes-patch-strategy"] = strategy
    if list_type:
        schema["x-kubernetes-list-type"] = list_type
    if map_keys:
        schema["x-kubernetes-list-map-keys"] = list(map_keys)
    if map_type:
        schema["x-kubernetes-map-type"] = map_type
    return schema


def _base(type_: str, description: str, **ext: Any) -> Schema:
    schema: Schema = {"type": type_}
    if description:
        schema["description"] = description
    return _ext(schema, **ext)


def string(description: str = "", *, default: str | None = None, **ext: Any) -> Schema:
    schema = _base("string", description, **ext)
    if default is not None:
        schema["default"] = default
    return schema


def byte_string(description: str = "") -> Schema:
    """base64-encoded bytes ([]byte in Go)."""
    schema = _base("string", description)
    schema["format"] = "byte"
    return schema


def integer(description: str = "", *, fmt: str = "int32", **ext: Any) -> Schema:
    schema = _base("integer", description, **ext)
    schema["format"] = fmt
    return schema


def boolean(description: str = "", **ext: Any) -> Schema:
    return _base("boolean", description, **ext)


named(TIME, {"type": "string", "format": "date-time", "description":
            "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON.  Wrappers "
            "are provided for many of the factory methods that the time package offers."})
named(MICRO_TIME, {"type": "string", "format": "date-time",
                   "description": "MicroTime is version of Time with microsecond level precision."})
named(INT_OR_STRING, {"x-kubernetes-int-or-string": True, "description":
                      "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
                      "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you "
                      "to have, for example, a JSON field that can accept a name or number."})


def timestamp(description: str = "", *, micro: bool = False) -> Schema:
    """metav1.Time (or, with `micro`, metav1.MicroTime): an RFC 3339 string."""
    return described(_DEFINITIONS[MICRO_TIME if micro else TIME], description)


def int_or_string(description: str = "") -> Schema:
    """intstr.IntOrString: published inline by CRDs as x-kubernetes-int-or-string, by built-in kinds as a
    definition of its own."""
    return described(_DEFINITIONS[INT_OR_STRING], description)


def string_map(description: str = "", *, byte: bool = False, **ext: Any) -> Schema:
    value = byte_string() if byte else {"type": "string", "default": ""}
    schema = _base("object", description, **ext)
    schema["additionalProperties"] = value
    return schema


def free_form(description: str = "", *, name: str = "") -> Schema:
    """An object whose fields are not described (e.g. FieldsV1); pruning keeps all of it."""
    schema = _base("object", description)
    return named(name, schema) if name else schema


def array(items: Schema, description: str = "", **ext: Any) -> Schema:
    schema = _base("array", description, **ext)
    schema["items"] = items
    return schema


def obj(description: str, properties: dict[str, Schema], *, required: list[str] | None = None,
        name: str = "", **ext: Any) -> Schema:
    """An object type; `name` is upstream's OpenAPI definition name for it (see `named`)."""
    schema = _base("object", description, **ext)
    schema["properties"] = properties
    if required:
        schema["required"] = list(required)
    return named(name, schema) if name else schema


def described(schema: Schema, description: str) -> Schema:
    """A shared nested schema with the description of the field that holds it."""
    copy = dict(schema)
    if description:
        copy["description"] = description
    else:
        copy.pop("description", None)
    return copy


def kind_schema(description: str, properties: dict[str, Schema], *, required: list[str] | None = None,
                metadata_doc: str = METADATA_DOC) -> Schema:
    """A top-level kind: apiVersion, kind and metadata plus the type's own fields."""
    from kplane.apimachinery.objectmeta import OBJECT_META  # meta builds on this module

    props: dict[str, Schema] = {
        "apiVersion": string(API_VERSION_DOC),
        "kind": string(KIND_DOC),
        "metadata": described(OBJECT_META, metadata_doc),
    }
    props.update(properties)
    return obj(description, dict(sorted(props.items())), required=required)

