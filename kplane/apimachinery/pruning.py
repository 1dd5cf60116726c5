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
    if isinstance(obj, list):
        items = schema.get("items")
        for i, item in enumerate(obj):
            unknown += prune(item, items, f"{path}[{i}]", top=False)
        return unknown
    props = schema.get("properties")
    additional = schema.get("additionalProperties")
    if props is None:
        if isinstance(additional, dict):
            for k, v in obj.items():
                unknown += prune(v, additional, f"{path}.{k}", top=False)
        return unknown
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    for key in list(obj.keys()):
        if key in props:
            unknown += prune(obj[key], props[key], f"{path}.{key}", top=False)
        elif top and key in _ALWAYS_KNOWN:
            continue
        elif not preserve:
            unknown.append(f"{path}.{key}")
            del obj[key]
    return unknown
