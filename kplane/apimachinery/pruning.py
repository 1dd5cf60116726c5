"""Dropping fields a schema does not know.

Built-in types are Go structs upstream: decoding drops unknown fields, and
`fieldValidation` decides whether that is silent (Ignore), a warning (Warn) or
a 400 (Strict). Structural CRD schemas prune the same way. This module finds
and removes such fields given an OpenAPI v3 schema.
"""

from __future__ import annotations

from typing import Any

_ALWAYS_KNOWN = {"apiVersion", "kind", "metadata"}


def prune(obj: Any, schema: dict | None, path: str = "", top: bool = True) -> list[str]:
    """Remove fields not in `schema` from `obj` in place; return their paths (".spec.foo")."""
    if not schema or not isinstance(obj, (dict, list)):
        return []
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return []
    unknown: list[str] = []
    # Scalars hold no fields: only containers are descended into (and get a path built).
    if isinstance(obj, list):
        items = schema.get("items")
        for i, item in enumerate(obj):
            if isinstance(item, (dict, list)):
                unknown += prune(item, items, f"{path}[{i}]", top=False)
        return unknown
    props = schema.get("properties")
    additional = schema.get("additionalProperties")
    if props is None:
        if isinstance(additional, dict):
            for k, v in obj.items():
                if isinstance(v, (dict, list)):
                    unknown += prune(v, additional, f"{path}.{k}", top=False)
        return unknown
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    for key in list(obj.keys()):
        if key in props:
            value = obj[key]
            if isinstance(value, (dict, list)):
                unknown += prune(value, props[key], f"{path}.{key}", top=False)
        elif top and key in _ALWAYS_KNOWN:
            continue
        elif not preserve:
            unknown.append(f"{path}.{key}")
            del obj[key]
    return unknown


_JSON_TYPE_NAMES = {bool: "bool", int: "number", float: "number", str: "string", list: "array", dict: "object"}


def _fits(value: Any, schema: dict) -> bool:
    if value is None:
        return True  # Go decodes null into any field as its zero value
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    want = schema.get("type")
    if want == "string":
        return isinstance(value, str)
    if want == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if want == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if want == "boolean":
        return isinstance(value, bool)
    if want == "array":
        return isinstance(value, list)
    if want == "object":
        return isinstance(value, dict)
    return True  # untyped (e.g. x-kubernetes-preserve-unknown-fields): anything


def _go_type(schema: dict) -> str:
    want = schema.get("type")
    if want == "integer":
        return "int32" if schema.get("format") == "int32" else "int64"
    if want == "array":
        return "[]" + _go_type(schema.get("items") or {})
    if want == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "map[string]" + _go_type(schema["additionalProperties"])
    if want == "string" and schema.get("format") == "byte":
        return "[]uint8"  # a []byte field (base64 in JSON)
    return {"string": "string", "number": "float64", "boolean": "bool", "object": "struct"}.get(want or "", "any")


def type_mismatch(obj: Any, schema: dict | None, path: str = "") -> tuple[str, str, str] | None:
    """The first value whose JSON type the schema's type cannot hold, as Go's decoder reports it:
    (field path without map keys or indices, JSON type found, Go type wanted). Built-in types are
    Go structs upstream, so such a body is a 400 there, never stored."""
    if not schema or obj is None:
        return None
    if not _fits(obj, schema):
        return path, _JSON_TYPE_NAMES.get(type(obj), "value"), _go_type(schema)
    if isinstance(obj, list):
        items = schema.get("items")
        if items:
            for item in obj:
                # A scalar that fits has nothing below it: no recursive call for it.
                if item is not None and (isinstance(item, (dict, list)) or not _fits(item, items)):
                    found = type_mismatch(item, items, path)
                    if found:
                        return found
    elif isinstance(obj, dict):
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, value in obj.items():
            if value is None:
                continue
            sub = props.get(key) if props else (additional if isinstance(additional, dict) else None)
            if not sub or (not isinstance(value, (dict, list)) and _fits(value, sub)):
                continue
            found = type_mismatch(value, sub, f"{path}.{key}" if props else path)
            if found:
                return found
    return None
