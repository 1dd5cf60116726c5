"""Serving custom resources: a CRD's served versions as ResourceDefs, and the
registry that adds structural pruning, defaulting and the terminating check
to the generic one."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson

from kplane.apimachinery import errors, structural
from kplane.apimachinery.jsonpath import compile_path
from kplane.apimachinery.table import since
from kplane.apimachinery.typeschema import API_VERSION_DOC, KIND_DOC
from kplane.apiserver.registry import Registry, WriteOptions
from kplane.apiserver.resource import Column, Obj, ResourceDef
from kplane.controlplane.crd.cel import Validator, has_rules
from kplane.controlplane.crd.conversion import is_webhook
from kplane.controlplane.types.printing import AGE_DOC, name_column

_META_SCHEMA = {"type": "object"}


class CustomResourceRegistry(Registry):
    """The generic registry with apiextensions' decoding steps (prune, then default) and the
    refusal to create while the CRD is terminating."""

    terminating = False
    structural_schema: Obj | None = None
    preserve_unknown = False

    async def create(self, namespace: str, obj: Obj, opts: WriteOptions) -> Obj:
        if self.terminating:
            raise errors.method_not_allowed("create not allowed while custom resource definition is terminating")
        return await super().create(namespace, obj, opts)

    def _drop_unknown(self, obj: Obj, opts: WriteOptions) -> None:
        schema = self.structural_schema
        if schema is None:
            return
        if not self.preserve_unknown:
            if opts.field_validation == "Strict":
                probe = copy.deepcopy(obj)
                unknown = structural.prune(probe, schema)
                if unknown:
                    listed = ", ".join(f'unknown field "{u[1:]}"' for u in unknown)
                    kind, version = self.rdef.kind, self.rdef.version
                    raise errors.bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: '
                                             f"strict decoding error: {listed}")
            unknown = structural.prune(obj, schema)
            if unknown and opts.field_validation == "Warn":
                opts.warnings.extend(f'unknown field "{u[1:]}"' for u in unknown)
        if structural.has_defaults(schema):
            structural.apply_defaults(obj, schema)


def crd_versions(crd: Obj) -> list[Obj]:
    return [v for v in (crd.get("spec") or {}).get("versions") or [] if isinstance(v, dict)]


def storage_version(crd: Obj) -> str:
    for v in crd_versions(crd):
        if v.get("storage"):
            return v.get("name", "")
    return ""


def served_versions(crd: Obj) -> list[str]:
    return [v["name"] for v in crd_versions(crd) if v.get("served") and v.get("name")]


def object_schema(open_api: Obj | None) -> Obj:
    """The version's schema as the whole object's (apiVersion, kind and metadata implicit)."""
    schema = copy.deepcopy(open_api) if isinstance(open_api, dict) else {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    props = schema.setdefault("properties", {}) if "properties" in schema or not schema.get(
        "x-kubernetes-preserve-unknown-fields") else None
    if props is not None:
        # Described as upstream's CRD OpenAPI builder does (kubectl explain shows it).
        props.setdefault("apiVersion", {"type": "string", "description": API_VERSION_DOC})
        props.setdefault("kind", {"type": "string", "description": KIND_DOC})
        meta = props.get("metadata")
        props["metadata"] = dict(meta) if isinstance(meta, dict) else dict(_META_SCHEMA)
        props["metadata"].setdefault("type", "object")
    schema.setdefault("type", "object")
    return schema


# ---- Table columns ----------------------------------------------------------------------------


def _cell(column_type: str, value: Any) -> Any:
    if value is None:
        return None
    if column_type == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return int(value)
        return None
    if column_type == "number":
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date":
        return since(value) if isinstance(value, str) else None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def _printer_value(path: str, column_type: str) -> Callable[[Obj], Any]:
    try:
        find = compile_path(path)
    except Exception:  # noqa: BLE001 - an unparsable path prints an empty cell, as upstream
        return lambda obj: None

    def value(obj: Obj) -> Any:
        try:
            results = find(obj)
        except Exception:  # noqa: BLE001
            return None
        return _cell(column_type, results[0]) if results else None

    return value


def columns_for(version: Obj) -> list[Column]:
    cols = [name_column()]
    printer = version.get("additionalPrinterColumns") or []
    if not printer:
        cols.append(Column("Age", "date", lambda o: since((o.get("metadata") or {}).get("creationTimestamp")),
                           description=AGE_DOC))
        return cols
    for c in printer:
        ctype = c.get("type", "string")
        cols.append(Column(c.get("name", ""), ctype, _printer_value(c.get("jsonPath", ""), ctype),
                           format=c.get("format", ""), description=c.get("description", ""),
                           priority=int(c.get("priority") or 0)))
    return cols


def _field_getter(path: str) -> Callable[[Obj], str]:
    find = compile_path(path)

    def get(obj: Obj) -> str:
        found = find(obj)
        if not found or found[0] is None:
            return ""
        v = found[0]
        return ("true" if v else "false") if isinstance(v, bool) else str(v)

    return get


# ---- ResourceDefs -------------------------------------------------------------------------------


def _coerce(obj: Obj, schema: Obj | None, defaults: bool) -> Obj:
    """After a conversion, as apiextensions' schemaCoercingConverter: the object pruned to the
    target version's schema; on the way to storage, also defaulted with the storage version's
    defaults (an object written through another version is stored as the storage version has it)."""
    if schema is not None:
        structural.prune(obj, schema)
        if defaults and structural.has_defaults(schema):
            structural.apply_defaults(obj, schema)
    return obj


def _coerced(convert: Callable[[Obj], Obj], schema: Obj | None, defaults: bool = False) -> Callable[[Obj], Obj]:
    return lambda obj: _coerce(convert(obj), schema, defaults)


def _coerced_batch(convert: Any, schema: Obj | None, defaults: bool = False) -> Any:
    async def coerced(objs: list[Obj]) -> list[Obj]:
        return [_coerce(o, schema, defaults) for o in await convert(objs)]
    return coerced


def build_defs(crd: Obj, converter: Any) -> list[tuple[ResourceDef, Obj | None, bool]]:
    """(ResourceDef, structural schema, preserve-unknown) per served version, named by acceptedNames."""
    spec = crd.get("spec") or {}
    names = (crd.get("status") or {}).get("acceptedNames") or spec.get("names") or {}
    group = spec.get("group", "")
    storage = storage_version(crd)
    schemas: dict[str, Obj] = {}  # each version's structural schema
    coercion: dict[str, Obj | None] = {}  # ... or None where unknown fields are kept (nothing to prune by)
    preserved: dict[str, bool] = {}
    for v in crd_versions(crd):
        if v.get("name"):
            open_api = (v.get("schema") or {}).get("openAPIV3Schema")
            preserved[v["name"]] = bool(spec.get("preserveUnknownFields")) or open_api is None
            schemas[v["name"]] = object_schema(open_api)
            coercion[v["name"]] = None if preserved[v["name"]] else schemas[v["name"]]
    out = []
    for v in crd_versions(crd):
        if not v.get("served"):
            continue
        vname = v["name"]
        schema = schemas[vname]
        subs = v.get("subresources") or {}
        subresources = [s for s in ("status", "scale") if isinstance(subs.get(s), dict)]
        cel_validator = Validator(schema) if has_rules(schema) else None
        validate_create, validate_update = _validators(schema, cel_validator)
        to_storage = from_storage = async_to_storage = async_from_storage = None
        if vname != storage and is_webhook(crd):
            async_to_storage = _coerced_batch(converter.webhook_to_version(crd, f"{group}/{storage}"),
                                              coercion.get(storage), defaults=True)
            async_from_storage = _coerced_batch(converter.webhook_to_version(crd, f"{group}/{vname}"),
                                                coercion.get(vname))
        elif vname != storage:
            to_storage = _coerced(converter.to_version(crd, f"{group}/{storage}"), coercion.get(storage),
                                  defaults=True)
            from_storage = _coerced(converter.to_version(crd, f"{group}/{vname}"), coercion.get(vname))
        rdef = ResourceDef(
            group=group, version=vname, kind=names.get("kind", ""), plural=names.get("plural", ""),
            singular=names.get("singular") or names.get("kind", "").lower(),
            list_kind=names.get("listKind") or names.get("kind", "") + "List",
            namespaced=spec.get("scope") == "Namespaced", short_names=list(names.get("shortNames") or []),
            categories=list(names.get("categories") or []), subresources=subresources, schema=schema,
            columns=columns_for(v), has_status=True, strategic_merge=False,
            field_selectors={f["jsonPath"].lstrip("."): _field_getter(f["jsonPath"])
                             for f in v.get("selectableFields") or [] if f.get("jsonPath")},
            validate_create=validate_create, validate_update=validate_update,
            to_storage=to_storage, from_storage=from_storage,
            async_to_storage=async_to_storage, async_from_storage=async_from_storage,
        )
        rdef.crd_scale = subs.get("scale") if isinstance(subs.get("scale"), dict) else None  # type: ignore[attr-defined]
        rdef.crd_name = crd["metadata"]["name"]  # type: ignore[attr-defined]
        out.append((rdef, schema, preserved[vname]))
    return out


# Schema failures after which CEL rules are not evaluated (hasBlockingErr): the object may not
# have the shape the rules assume. Other failures (a pattern, a minimum) leave the rules to run.
_BLOCKING = frozenset(("FieldValueNotSupported", "FieldValueRequired", "FieldValueTooLong", "FieldValueTooMany",
                       "FieldValueTypeInvalid"))
_NOT_CHECKED = errors.field_invalid("<nil>", "null", "some validation rules were not checked because the object "
                                    "was invalid; correct the existing errors to complete validation")


def _then_rules(causes: list[errors.Cause], rules: Callable[[], list[errors.Cause]]) -> list[errors.Cause]:
    """The schema's causes, then the CEL rules' unless a blocking one stops them."""
    if any(c.type in _BLOCKING for c in causes):
        return [*causes, _NOT_CHECKED]
    return causes + rules()


def _validators(schema: Obj, cel_validator: Validator | None) -> tuple[Any, Any]:
    def validate_create(obj: Obj) -> list[errors.Cause]:
        causes = structural.validate(obj, schema)
        if cel_validator is None:
            return causes
        return _then_rules(causes, lambda: cel_validator.validate(obj))

    def validate_update(new: Obj, old: Obj) -> list[errors.Cause]:
        causes = structural.validate(new, schema)
        if cel_validator is None:
            return causes
        return _then_rules(causes, lambda: cel_validator.validate(new, old))

    return validate_create, validate_update
