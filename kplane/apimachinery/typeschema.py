"""A tiny DSL for writing OpenAPI v3 schemas of built-in types.

Schemas are plain dicts in the shape kube-apiserver publishes (inline, no
$ref), so the same dict serves OpenAPI, `kubectl explain`, strategic merge
and apply. The x-kubernetes-* list/map extensions are spelled as keyword
arguments because a typo in a long extension name would silently change patch
semantics.

Schema constants built here are shared between types: treat them as read-only.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

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


def timestamp(description: str = "") -> Schema:
    """metav1.Time / metav1.MicroTime: an RFC 3339 string."""
    schema = _base("string", description)
    schema["format"] = "date-time"
    return schema


def int_or_string(description: str = "") -> Schema:
    """intstr.IntOrString, published by upstream without a type."""
    schema: Schema = {"x-kubernetes-int-or-string": True}
    if description:
        schema["description"] = description
    return schema


def string_map(description: str = "", *, byte: bool = False, **ext: Any) -> Schema:
    value = byte_string() if byte else {"type": "string", "default": ""}
    schema = _base("object", description, **ext)
    schema["additionalProperties"] = value
    return schema


def free_form(description: str = "") -> Schema:
    """An object whose fields are not described (e.g. FieldsV1); pruning keeps all of it."""
    return _base("object", description)


def array(items: Schema, description: str = "", **ext: Any) -> Schema:
    schema = _base("array", description, **ext)
    schema["items"] = items
    return schema


def obj(description: str, properties: dict[str, Schema], *, required: list[str] | None = None,
        **ext: Any) -> Schema:
    schema = _base("object", description, **ext)
    schema["properties"] = properties
    if required:
        schema["required"] = list(required)
    return schema


def described(schema: Schema, description: str) -> Schema:
    """A shared nested schema with the description of the field that holds it."""
    copy = dict(schema)
    copy["description"] = description
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

