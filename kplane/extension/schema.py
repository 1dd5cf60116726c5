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
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from kplane.apimachinery import structural
from kplane.apimachinery.errors import Cause
from kplane.apimachinery.typeschema import DEFINITION

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


TypeNamer = Callable[[type], str]


@dataclass
class _Naming:
    """How schema_of names the classes it meets, and the definitions it named so far."""

    namer: TypeNamer
    definitions: dict[str, Schema]
    classes: dict[str, type] = dataclasses.field(default_factory=dict)


def schema_of(tp: Any, *, namer: TypeNamer | None = None, definitions: dict[str, Schema] | None = None) -> Schema:
    """The OpenAPI v3 schema of a type annotation.

    With `namer`, each class met is a named type (`namer(cls)`, e.g. com.example.wardle.v1alpha1.FlunderSpec):
    its schema carries the name as typeschema's DEFINITION mark and is added to `definitions`, so
    OpenAPI publishes it once and refers to it, as upstream publishes a Go server's nested structs."""
    naming = _Naming(namer, definitions if definitions is not None else {}) if namer else None
    schema, _ = _schema_and_optional(tp, naming)
    return schema


def _schema_and_optional(tp: Any, naming: _Naming | None = None) -> tuple[Schema, bool]:
    origin = get_origin(tp)
    if origin is typing.Annotated:
        base, *extras = get_args(tp)
        schema, optional = _schema_and_optional(base, naming)
        schema = dict(schema)
        for extra in extras:
            if isinstance(extra, Field):
                extra.apply(schema)
        return schema, optional
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        optional = len(args) < len(get_args(tp))
        if len(args) == 1:
            schema, _ = _schema_and_optional(args[0], naming)
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
        item = _schema_and_optional(args[0], naming)[0] if args else {"x-kubernetes-preserve-unknown-fields": True}
        schema: Schema = {"type": "array", "items": item}
        if origin in (set, frozenset):
            schema["x-kubernetes-list-type"] = "set"
        return schema, False
    if origin is dict or tp is dict:
        args = get_args(tp)
        value = (_schema_and_optional(args[1], naming)[0] if len(args) == 2
                 else {"x-kubernetes-preserve-unknown-fields": True})
        return {"type": "object", "additionalProperties": value}, False
    if isinstance(tp, type) and _annotations(tp):
        if naming is None:
            return object_schema(tp), False
        return _named_object_schema(tp, naming), False
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


def _named_object_schema(cls: type, naming: _Naming) -> Schema:
    name = naming.namer(cls)
    if name in naming.definitions:
        if naming.classes.get(name, cls) is not cls:
            raise TypeError(f"two types are named {name}: {naming.classes[name]!r} and {cls!r}")
        return naming.definitions[name]
    naming.classes[name] = cls
    schema = object_schema(cls, naming)
    schema[DEFINITION] = name
    naming.definitions[name] = schema
    return schema


def object_schema(cls: type, naming: _Naming | None = None) -> Schema:
    """The schema of a class whose annotated attributes are its fields."""
    props: Schema = {}
    required: list[str] = []
    for name, tp in _annotations(cls).items():
        if name.startswith("_") or get_origin(tp) is typing.ClassVar:
            continue
        schema, optional = _schema_and_optional(tp, naming)
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


def as_schema(source: Any, *, namer: TypeNamer | None = None,
              definitions: dict[str, Schema] | None = None) -> Schema:
    """A JSON schema dict as given, or the schema of a class (its classes named by `namer`, see schema_of)."""
    if source is None:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if isinstance(source, dict):
        return copy.deepcopy(source)
    return schema_of(source, namer=namer, definitions=definitions)


def with_object_default(schema: Schema) -> Schema:
    """An object whose properties have defaults defaults to {} so they apply when it is omitted."""
    props = schema.get("properties") or {}
    if (schema.get("type") == "object" and "default" not in schema
            and any("default" in p for p in props.values())):
        return dict(schema, default={})
    return schema


# ---- defaulting and validation ----------------------------------------------
# One structural-schema engine serves CRDs and SDK resources (apimachinery/structural.py).


def apply_defaults(obj: Any, schema: Schema | None) -> None:
    """Set missing properties that have a default, recursively (structural defaulting)."""
    structural.apply_defaults(obj, schema)


_TYPE_META = ("apiVersion", "kind", "metadata")


def validate_object(obj: dict[str, Any], schema: Schema) -> list[Cause]:
    """Validate everything but apiVersion/kind/metadata (the registry checks those)."""
    body = {k: v for k, v in obj.items() if k not in _TYPE_META}
    required = [r for r in schema.get("required") or [] if r not in _TYPE_META]
    props = {k: v for k, v in (schema.get("properties") or {}).items() if k not in _TYPE_META}
    return structural.validate(body, {**schema, "properties": props, "required": required})
