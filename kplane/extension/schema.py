"""OpenAPI v3 schemas from Python type hints, and what a structural schema
does to an object on the way in: defaulting and validation.

    class OrderSpec:
        item: str                                  # required string
        qty: Annotated[int, Field(minimum=1)] = 1  # defaulted, validated
        color: Literal["red", "blue"] | None = None

Supported annotations: str, int, float, bool, list[T], dict[str, T], Literal[...]
(an enum), T | None (optional, nullable), typing.Any (any JSON), nested classes
with annotations (dataclasses or plain), and Annotated[T, Field(...)] for
descriptions and constraints. A field without a default is required.

Validation answers upstream's structural-schema errors (as CRDs answer them):
FieldValueRequired, FieldValueTypeInvalid ("spec.qty in body must be of type
integer: \"string\""), FieldValueNotSupported for enums, FieldValueInvalid for
ranges and patterns.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from kplane.apimachinery.errors import Cause, field_invalid, field_not_supported, field_required

Schema = dict[str, Any]


@dataclass(frozen=True)
class Field:
    """Extra schema facts for a field, via typing.Annotated[T, Field(...)]."""

    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str = ""
    min_items: int | None = None
    max_items: int | None = None
    enum: tuple[Any, ...] = ()
    format: str = ""
    list_type: str = ""  # x-kubernetes-list-type: atomic | set | map
    list_map_keys: tuple[str, ...] = ()

    def apply(self, schema: Schema) -> Schema:
        pairs = [("description", self.description), ("minimum", self.minimum), ("maximum", self.maximum),
                 ("minLength", self.min_length), ("maxLength", self.max_length), ("pattern", self.pattern),
                 ("minItems", self.min_items), ("maxItems", self.max_items), ("format", self.format),
                 ("x-kubernetes-list-type", self.list_type)]
        for key, value in pairs:
            if value not in (None, ""):
                schema[key] = value
        if self.enum:
            schema["enum"] = list(self.enum)
        if self.list_map_keys:
            schema["x-kubernetes-list-map-keys"] = list(self.list_map_keys)
        return schema


_MISSING = object()
_SCALARS: dict[Any, Schema] = {
    str: {"type": "string"},
    int: {"type": "integer", "format": "int64"},
    float: {"type": "number", "format": "double"},
    bool: {"type": "boolean"},
}


def schema_of(tp: Any) -> Schema:
    """The OpenAPI v3 schema of a type annotation."""
    schema, _ = _schema_and_optional(tp)
    return schema


def _schema_and_optional(tp: Any) -> tuple[Schema, bool]:
    origin = get_origin(tp)
    if origin is typing.Annotated:
        base, *extras = get_args(tp)
        schema, optional = _schema_and_optional(base)
        schema = dict(schema)
        for extra in extras:
            if isinstance(extra, Field):
                extra.apply(schema)
        return schema, optional
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        optional = len(args) < len(get_args(tp))
        if len(args) == 1:
            schema, _ = _schema_and_optional(args[0])
            if optional:
                schema = dict(schema, nullable=True)
            return schema, optional
        return {"x-kubernetes-preserve-unknown-fields": True}, optional
    if tp in _SCALARS:
        return dict(_SCALARS[tp]), False
    if tp is Any or tp is object:
        return {"x-kubernetes-preserve-unknown-fields": True}, False
    if origin is Literal:
        values = list(get_args(tp))
        kinds = {type(v) for v in values}
        base = _SCALARS.get(kinds.pop(), {"type": "string"}) if len(kinds) == 1 else {"type": "string"}
        return {**base, "enum": values}, False
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set):
        args = get_args(tp)
        item = schema_of(args[0]) if args else {"x-kubernetes-preserve-unknown-fields": True}
        schema: Schema = {"type": "array", "items": item}
        if origin in (set, frozenset):
            schema["x-kubernetes-list-type"] = "set"
        return schema, False
    if origin is dict or tp is dict:
        args = get_args(tp)
        value = schema_of(args[1]) if len(args) == 2 else {"x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": value}, False
    if isinstance(tp, type) and _annotations(tp):
        return object_schema(tp), False
    raise TypeError(f"cannot derive an OpenAPI schema from {tp!r}")


def _annotations(cls: type) -> dict[str, Any]:
    try:
        return get_type_hints(cls, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable forward references: treat as no hints
        return dict(getattr(cls, "__annotations__", {}))


def _default_of(cls: type, name: str) -> Any:
    if dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            if f.name == name:
                if f.default is not dataclasses.MISSING:
                    return f.default
                if f.default_factory is not dataclasses.MISSING:
                    return f.default_factory()
                return _MISSING
    return getattr(cls, name, _MISSING)


def object_schema(cls: type) -> Schema:
    """The schema of a class whose annotated attributes are its fields."""
    props: Schema = {}
    required: list[str] = []
    for name, tp in _annotations(cls).items():
        if name.startswith("_") or get_origin(tp) is typing.ClassVar:
            continue
        schema, optional = _schema_and_optional(tp)
        default = _default_of(cls, name)
        if default is _MISSING:
            if not optional:
                required.append(name)
        elif default is not None:
            schema = dict(schema, default=_jsonable(default))
        props[name] = schema
    result: Schema = {"type": "object", "properties": props}
    if required:
        result["required"] = required
    doc = (cls.__doc__ or "").strip()
    if doc and not doc.startswith(cls.__name__ + "("):  # dataclasses generate "Name(field: type, ...)"
        result["description"] = doc
    return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    return value


def as_schema(source: Any) -> Schema:
    """A JSON schema dict as given, or the schema of a class."""
    if source is None:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if isinstance(source, dict):
        return copy.deepcopy(source)
    return schema_of(source)


def with_object_default(schema: Schema) -> Schema:
    """An object whose properties have defaults defaults to {} so they apply when it is omitted."""
    props = schema.get("properties") or {}
    if (schema.get("type") == "object" and "default" not in schema
            and any("default" in p for p in props.values())):
        return dict(schema, default={})
    return schema


# ---- defaulting -----------------------------------------------------------


def apply_defaults(obj: Any, schema: Schema | None) -> None:
    """Set missing properties that have a default, recursively (structural defaulting)."""
    if not schema or obj is None:
        return
    if isinstance(obj, dict):
        props = schema.get("properties")
        if props:
            for key, sub in props.items():
                if key not in obj and "default" in sub:
                    obj[key] = copy.deepcopy(sub["default"])
                if key in obj:
                    apply_defaults(obj[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, value in obj.items():
                if not props or key not in props:
                    apply_defaults(value, additional)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            apply_defaults(item, schema["items"])


# ---- validation -----------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: Any, want: str) -> bool:
    have = _json_type(value)
    if want == "number":
        return have in ("number", "integer")
    if want == "integer" and have == "number":
        return float(value).is_integer()
    return have == want


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def type_invalid(path: str, value: Any, detail: str) -> Cause:
    from kplane.apimachinery.errors import _render

    return Cause("FieldValueTypeInvalid", f"Invalid value: {_render(value)}: {detail}", path)


def validate(obj: Any, schema: Schema | None, path: str) -> list[Cause]:
    """Causes for every way `obj` breaks `schema` (OpenAPI v3 subset used by structural schemas)."""
    if not schema:
        return []
    causes: list[Cause] = []
    want = schema.get("type")
    if obj is None:
        if schema.get("nullable") or not want:
            return []
        return [type_invalid(path, "null", f'{path} in body must be of type {want}: "null"')]
    if want and not _type_ok(obj, want):
        return [type_invalid(path, obj, f'{path} in body must be of type {want}: "{_json_type(obj)}"')]
    if "enum" in schema and obj not in schema["enum"]:
        causes.append(field_not_supported(path, obj, [v if isinstance(v, str) else _num(v)
                                                      for v in schema["enum"]]))
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        if "minimum" in schema and obj < schema["minimum"]:
            causes.append(field_invalid(path, obj, f"{path} in body should be greater than or equal to "
                                                   f"{_num(schema['minimum'])}"))
        if "maximum" in schema and obj > schema["maximum"]:
            causes.append(field_invalid(path, obj, f"{path} in body should be less than or equal to "
                                                   f"{_num(schema['maximum'])}"))
    if isinstance(obj, str):
        if "minLength" in schema and len(obj) < schema["minLength"]:
            causes.append(field_invalid(path, obj, f"{path} in body should be at least {schema['minLength']} "
                                                   f"chars long"))
        if "maxLength" in schema and len(obj) > schema["maxLength"]:
            causes.append(Cause("FieldValueTooLong", f"Too long: may not be more than {schema['maxLength']} "
                                                     f"bytes", path))
        if schema.get("pattern") and not re.search(schema["pattern"], obj):
            causes.append(field_invalid(path, obj, f"{path} in body should match '{schema['pattern']}'"))
    if isinstance(obj, list):
        if "minItems" in schema and len(obj) < schema["minItems"]:
            causes.append(field_invalid(path, obj,
                                        f"{path} in body should have at least {schema['minItems']} "
                                                   f"items"))
        if "maxItems" in schema and len(obj) > schema["maxItems"]:
            causes.append(Cause("FieldValueTooMany", f"Too many: {len(obj)}: must have at most "
                                                     f"{schema['maxItems']} items", path))
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(obj):
                causes += validate(item, items, f"{path}[{i}]")
        if schema.get("x-kubernetes-list-type") == "set":
            seen: list[Any] = []
            for i, item in enumerate(obj):
                if item in seen:
                    causes.append(Cause("FieldValueDuplicate", f"Duplicate value: {_render_any(item)}",
                                        f"{path}[{i}]"))
                seen.append(item)
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        for req in schema.get("required") or []:
            if req not in obj:
                causes.append(field_required(_join(path, req)))
        for key, value in obj.items():
            if key in props:
                causes += validate(value, props[key], _join(path, key))
            elif isinstance(schema.get("additionalProperties"), dict):
                causes += validate(value, schema["additionalProperties"], _join(path, key))
    return causes


def _render_any(value: Any) -> str:
    from kplane.apimachinery.errors import _render

    return _render(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def validate_object(obj: dict[str, Any], schema: Schema) -> list[Cause]:
    """Validate everything but apiVersion/kind/metadata (the registry checks those)."""
    props = schema.get("properties") or {}
    causes: list[Cause] = []
    for req in schema.get("required") or []:
        if req not in obj and req not in ("apiVersion", "kind", "metadata"):
            causes.append(field_required(req))
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if key in props:
            causes += validate(value, props[key], key)
    return causes
