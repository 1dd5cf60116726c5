"""Structural schemas (CustomResourceDefinitions, extension-server resources): validating, defaulting and
pruning custom resources, and checking that a CRD's own schema is structural.

Field paths and messages follow apiextensions-apiserver (which reports
kube-openapi's validation errors as field errors): `spec.replicas: Invalid
value: "string": spec.replicas in body must be of type integer: "string"`.
`x-kubernetes-validations` CEL rules are in cel.py.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import uuid
from datetime import date, datetime
from typing import Any

from kplane.apimachinery.errors import (
    Cause,
    field_duplicate,
    field_forbidden,
    field_invalid,
    field_not_supported,
    field_required,
    field_too_long,
    field_type_invalid,
)
from kplane.apimachinery.validation import go_quote

Schema = dict[str, Any]
Obj = dict[str, Any]

_TYPES = ("object", "array", "string", "integer", "number", "boolean")
_EMBEDDED_FIELDS = ("apiVersion", "kind", "metadata")
_ROOT_METADATA_ALLOWED = {"name", "generateName"}


# ---- paths ------------------------------------------------------------------------------------


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def index(path: str, i: int | str) -> str:
    return f"{path}[{i}]"


def _type_name(value: Any) -> str:
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
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _in_body(path: str) -> str:
    return f"{path or 'body'} in body"


def _number_text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


# ---- validation -------------------------------------------------------------------------------


def validate(obj: Any, schema: Schema | None, path: str = "") -> list[Cause]:
    """Validate a custom resource (or any value) against a structural schema."""
    causes: list[Cause] = []
    if schema:
        _validate(obj, schema, path, causes, root=not path)
    return causes


def _type_ok(value: Any, schema: Schema) -> bool:
    t = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)
    if not t:
        return True
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "string":
        return isinstance(value, str)
    if t == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "boolean":
        return isinstance(value, bool)
    return True


def _validate(value: Any, schema: Schema, path: str, causes: list[Cause], root: bool = False) -> None:
    if value is None:
        if schema.get("nullable") or (not schema.get("type") and not schema.get("x-kubernetes-int-or-string")):
            return
        expected = "integer,string" if schema.get("x-kubernetes-int-or-string") else schema.get("type")
        causes.append(field_type_invalid(path, "null", f'{_in_body(path)} must be of type {expected}: "null"'))
        return
    if not _type_ok(value, schema):
        expected = "integer,string" if schema.get("x-kubernetes-int-or-string") else schema.get("type")
        actual = _type_name(value)
        causes.append(field_type_invalid(path, actual, f'{_in_body(path)} must be of type {expected}: "{actual}"'))
        return
    _validate_combinators(value, schema, path, causes)
    if "enum" in schema and value not in schema["enum"]:
        causes.append(field_not_supported(path, value, [v if isinstance(v, str) else _render_plain(v)
                                                        for v in schema["enum"]]))
    if isinstance(value, str):
        _validate_string(value, schema, path, causes)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _validate_number(value, schema, path, causes)
    elif isinstance(value, list):
        _validate_array(value, schema, path, causes)
    elif isinstance(value, dict):
        _validate_object(value, schema, path, causes, root)


def _validate_combinators(value: Any, schema: Schema, path: str, causes: list[Cause]) -> None:
    """allOf/anyOf/oneOf/not: value validations only (structural schemas forbid types in them)."""
    for sub in schema.get("allOf") or []:
        _validate(value, sub, path, causes)
    any_of = schema.get("anyOf")
    if any_of and all(validate(value, sub, path) for sub in any_of):
        causes.append(field_invalid(path, _type_name(value) if isinstance(value, (dict, list)) else value,
                                    f"{_in_body(path)} must validate at least one schema (anyOf)"))
    one_of = schema.get("oneOf")
    if one_of and sum(1 for sub in one_of if not validate(value, sub, path)) != 1:
        causes.append(field_invalid(path, _type_name(value) if isinstance(value, (dict, list)) else value,
                                    f"{_in_body(path)} must validate one and only one schema (oneOf)"))
    not_ = schema.get("not")
    if isinstance(not_, dict) and not validate(value, not_, path):
        causes.append(field_invalid(path, _type_name(value) if isinstance(value, (dict, list)) else value,
                                    f"{_in_body(path)} must not validate the schema (not)"))


def _render_plain(v: Any) -> str:
    import orjson

    return orjson.dumps(v).decode()


def _second_occurrences(values: list[Any]) -> list[int]:
    """Indices of the items equal to an earlier one, each distinct value reported once (at its
    second occurrence), as apiextensions' validateListSet does."""
    counts: list[tuple[Any, int]] = []
    found = []
    for i, v in enumerate(values):
        for n, (seen, times) in enumerate(counts):
            if seen == v:
                if times == 1:
                    found.append(i)
                counts[n] = (seen, times + 1)
                break
        else:
            counts.append((v, 1))
    return found


def _duplicate(path: str, value: Any) -> Cause:
    """field.Duplicate: a scalar as %q/%v, a map or list as Go's %#v of the decoded JSON."""
    if isinstance(value, (dict, list)):
        return Cause("FieldValueDuplicate", f"Duplicate value: {_go_sharp_v(value)}", path)
    return field_duplicate(path, value)


def _go_sharp_v(v: Any) -> str:
    if isinstance(v, dict):
        return "map[string]interface {}{" + ", ".join(f"{go_quote(k)}:{_go_sharp_v(v[k])}" for k in sorted(v)) + "}"
    if isinstance(v, list):
        return "[]interface {}{" + ", ".join(_go_sharp_v(x) for x in v) + "}"
    if v is None:
        return "interface {}(nil)"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return go_quote(v)
    return repr(v)


def _validate_string(value: str, schema: Schema, path: str, causes: list[Cause]) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        causes.append(field_too_long(path, value, schema["maxLength"]))
    if "minLength" in schema and len(value) < schema["minLength"]:
        causes.append(field_invalid(path, value,
                                    f"{_in_body(path)} should be at least {schema['minLength']} chars long"))
    pattern = schema.get("pattern")
    if pattern and not _compiled(pattern).search(value):
        causes.append(field_invalid(path, value, f"{_in_body(path)} should match '{pattern}'"))
    fmt = schema.get("format")
    if fmt and not schema.get("x-kubernetes-int-or-string") and not check_format(fmt, value):
        causes.append(field_invalid(path, value, f'{_in_body(path)} must be of type {fmt}: "{value}"'))


def _validate_number(value: float, schema: Schema, path: str, causes: list[Cause]) -> None:
    if "maximum" in schema:
        mx = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= mx:
            causes.append(field_invalid(path, value, f"{_in_body(path)} should be less than {_number_text(mx)}"))
        elif value > mx:
            causes.append(field_invalid(path, value,
                                        f"{_in_body(path)} should be less than or equal to {_number_text(mx)}"))
    if "minimum" in schema:
        mn = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= mn:
            causes.append(field_invalid(path, value,
                                        f"{_in_body(path)} should be greater than {_number_text(mn)}"))
        elif value < mn:
            causes.append(field_invalid(path, value,
                                        f"{_in_body(path)} should be greater than or equal to {_number_text(mn)}"))
    if "multipleOf" in schema and schema["multipleOf"]:
        m = schema["multipleOf"]
        if (value / m) != int(value / m):
            causes.append(field_invalid(path, value,
                                        f"{_in_body(path)} should be a multiple of {_number_text(m)}"))


def _validate_array(value: list, schema: Schema, path: str, causes: list[Cause]) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append(Cause("FieldValueTooMany",
                            f"Too many: {len(value)}: must have at most {schema['maxItems']} items", path))
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append(field_invalid(path, len(value),
                                    f"{_in_body(path)} should have at least {schema['minItems']} items"))
    list_type = schema.get("x-kubernetes-list-type")
    if schema.get("uniqueItems") or list_type == "set":
        for i in _second_occurrences(value):
            causes.append(_duplicate(index(path, i), value[i]))
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        # Each item's key fields (those it has): what upstream compares and reports.
        idents = [{k: item[k] for k in keys if k in item} if isinstance(item, dict) else {} for item in value]
        for i in _second_occurrences(idents):
            causes.append(_duplicate(index(path, i), idents[i]))
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _validate(item, items, index(path, i), causes)


def _validate_object(value: Obj, schema: Schema, path: str, causes: list[Cause], root: bool) -> None:
    props: dict = schema.get("properties") or {}
    for name in schema.get("required") or []:
        if name not in value:
            causes.append(field_required(child(path, name), "Required value"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append(Cause("FieldValueTooMany", f"Too many: {len(value)}: must have at most "
                                                 f"{schema['maxProperties']} items", path))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append(field_invalid(path, len(value), f"{_in_body(path)} should have at least "
                                                      f"{schema['minProperties']} properties"))
    embedded = bool(schema.get("x-kubernetes-embedded-resource"))
    if embedded:
        for name in ("apiVersion", "kind"):
            if not value.get(name) and name not in props:
                causes.append(field_required(child(path, name), "Required value: must not be empty"))
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if (root or embedded) and key in _EMBEDDED_FIELDS and key not in props:
            continue
        if key in props:
            if root and key == "metadata":
                continue  # ObjectMeta is validated by the generic registry
            _validate(item, props[key], child(path, key), causes)
        elif isinstance(additional, dict):
            _validate(item, additional, index(path, key), causes)


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    rx = _REGEX_CACHE.get(pattern)
    if rx is None:
        rx = re.compile(pattern)
        _REGEX_CACHE[pattern] = rx
    return rx


# ---- formats (the strfmt registry apiextensions uses; unknown formats are not checked) ----------

_HOSTNAME = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}"
                       r"[a-zA-Z0-9])?)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}([0-9A-Fa-f]{2})$")
_DURATION = re.compile(r"^(-?\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d|w))+$")
_HEXCOLOR = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


def check_format(fmt: str, value: str) -> bool:
    try:
        if fmt == "date-time" or fmt == "datetime":
            datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            return "T" in value.upper() or " " in value
        if fmt == "date":
            date.fromisoformat(value)
            return len(value) == 10
        if fmt == "byte":
            base64.b64decode(value, validate=True)
            return True
        if fmt in ("uuid", "uuid3", "uuid4", "uuid5"):
            u = uuid.UUID(value)
            return fmt == "uuid" or u.version == int(fmt[-1])
        if fmt == "ipv4":
            ipaddress.IPv4Address(value)
            return True
        if fmt == "ipv6":
            ipaddress.IPv6Address(value)
            return True
        if fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
            return "/" in value
        if fmt == "hostname":
            return bool(_HOSTNAME.match(value)) and len(value) <= 253
        if fmt == "email":
            return bool(_EMAIL.match(value))
        if fmt == "mac":
            return bool(_MAC.match(value))
        if fmt == "duration":
            return bool(_DURATION.match(value))
        if fmt == "hexcolor":
            return bool(_HEXCOLOR.match(value))
        if fmt == "uri":
            return ":" in value
    except (ValueError, TypeError):
        return False
    return True


# ---- defaulting -------------------------------------------------------------------------------


def apply_defaults(value: Any, schema: Schema | None, root: bool = True) -> None:
    """Set `default`s of missing (or null, non-nullable) fields in place, as apiextensions does after
    pruning; defaults are themselves defaulted."""
    if not schema:
        return
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name, sub in props.items():
            if root and name == "metadata":
                continue
            if name in value and value[name] is None and not sub.get("nullable") and "default" in sub:
                del value[name]
            if name not in value and "default" in sub:
                value[name] = _deep_copy(sub["default"])
            if name in value:
                apply_defaults(value[name], sub, root=False)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for k in list(value):
                if k not in props:
                    apply_defaults(value[k], additional, root=False)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in value:
                apply_defaults(item, items, root=False)


def _deep_copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _deep_copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_deep_copy(x) for x in v]
    return v


def has_defaults(schema: Any) -> bool:
    if isinstance(schema, dict):
        if "default" in schema:
            return True
        props = schema.get("properties") or {}
        return any(has_defaults(v) for v in props.values()) or has_defaults(schema.get("items")) or \
            has_defaults(schema.get("additionalProperties"))
    return False


# ---- pruning ----------------------------------------------------------------------------------


def prune(value: Any, schema: Schema | None, path: str = "", root: bool = True) -> list[str]:
    """Drop fields the structural schema does not specify, in place. Returns their paths as
    `.spec.foo` (the form strict field validation reports)."""
    if schema is None or not isinstance(value, (dict, list)):
        return []
    if schema.get("x-kubernetes-int-or-string"):
        return []
    unknown: list[str] = []
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                unknown += prune(item, items, f"{path}[{i}]", root=False)
        return unknown
    props = schema.get("properties")
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    embedded = root or bool(schema.get("x-kubernetes-embedded-resource"))
    for key in list(value):
        if props and key in props:
            if root and key == "metadata":
                continue
            unknown += prune(value[key], props[key], f"{path}.{key}", root=False)
        elif embedded and key in _EMBEDDED_FIELDS:
            continue
        elif isinstance(additional, dict):
            unknown += prune(value[key], additional, f"{path}.{key}", root=False)
        elif additional is True or preserve:
            continue
        else:
            unknown.append(f"{path}.{key}")
            del value[key]
    return unknown


# ---- the CRD's schema itself must be structural -----------------------------------------------


def validate_structural(schema: Any, path: str) -> list[Cause]:
    """The structural-schema rules of apiextensions (a subset: the ones a CRD author meets)."""
    if not isinstance(schema, dict):
        return [field_required(path, "Required value: schemas are required")]
    causes: list[Cause] = []
    if not schema.get("type") and not schema.get("x-kubernetes-int-or-string") and \
            not schema.get("x-kubernetes-preserve-unknown-fields"):
        causes.append(field_required(child(path, "type"), "Required value: must not be empty at the root"))
    elif schema.get("type") and schema["type"] != "object":
        causes.append(field_invalid(child(path, "type"), schema["type"], "must be object at the root"))
    props = schema.get("properties") or {}
    meta = props.get("metadata")
    if isinstance(meta, dict):
        extra = set(meta) - {"type", "properties", "description"}
        meta_props = set(meta.get("properties") or {})
        if extra or meta_props - _ROOT_METADATA_ALLOWED or (meta.get("type") not in (None, "object")):
            causes.append(field_forbidden(f"{path}.properties[metadata]",
                                          "must not specify anything other than name and generateName, but "
                                          "metadata is implicitly specified"))
    _structural_node(schema, path, causes, root=True)
    return causes


def _structural_node(s: Schema, path: str, causes: list[Cause], root: bool = False) -> None:
    t = s.get("type")
    if t is not None and t not in _TYPES:
        causes.append(field_not_supported(child(path, "type"), t, list(_TYPES)))
    if s.get("x-kubernetes-int-or-string") and t:
        causes.append(field_forbidden(child(path, "type"), "must be empty if x-kubernetes-int-or-string is true"))
    if "x-kubernetes-preserve-unknown-fields" in s and s["x-kubernetes-preserve-unknown-fields"] is not True:
        causes.append(field_invalid(child(path, "x-kubernetes-preserve-unknown-fields"),
                                    s["x-kubernetes-preserve-unknown-fields"], "must be true or undefined"))
    if "properties" in s and "additionalProperties" in s and s["additionalProperties"] not in (None, False):
        causes.append(field_forbidden(child(path, "additionalProperties"),
                                      "additionalProperties and properties are mutual exclusive"))
    if t == "array" and not isinstance(s.get("items"), dict):
        causes.append(field_required(child(path, "items"), "Required value: must be specified"))
    list_type = s.get("x-kubernetes-list-type")
    if list_type is not None:
        if list_type not in ("atomic", "set", "map"):
            causes.append(field_not_supported(child(path, "x-kubernetes-list-type"), list_type,
                                              ["atomic", "set", "map"]))
        if t != "array":
            causes.append(field_invalid(child(path, "x-kubernetes-list-type"), list_type,
                                        "must only be used if type is array"))
        if list_type == "map":
            keys = s.get("x-kubernetes-list-map-keys") or []
            item_props = (s.get("items") or {}).get("properties") or {}
            if not keys:
                causes.append(field_required(child(path, "x-kubernetes-list-map-keys"),
                                             "Required value: must not be empty if x-kubernetes-list-type is map"))
            for k in keys:
                if k not in item_props:
                    causes.append(field_invalid(child(path, "x-kubernetes-list-map-keys"), keys,
                                                "entries must all be names of item properties"))
                    break
    elif s.get("x-kubernetes-list-map-keys"):
        causes.append(field_invalid(child(path, "x-kubernetes-list-map-keys"), s["x-kubernetes-list-map-keys"],
                                    "must only be used if x-kubernetes-list-type is map"))
    for name, sub in (s.get("properties") or {}).items():
        sub_path = f"{path}.properties[{name}]"
        if not isinstance(sub, dict):
            causes.append(field_required(sub_path, "Required value"))
            continue
        if root and name == "metadata":
            continue
        if not sub.get("type") and not sub.get("x-kubernetes-int-or-string") and \
                not sub.get("x-kubernetes-preserve-unknown-fields"):
            causes.append(field_required(child(sub_path, "type"),
                                         "Required value: must not be empty for specified object fields"))
        _structural_node(sub, sub_path, causes)
    items = s.get("items")
    if isinstance(items, dict):
        if not items.get("type") and not items.get("x-kubernetes-int-or-string") and \
                not items.get("x-kubernetes-preserve-unknown-fields"):
            causes.append(field_required(child(child(path, "items"), "type"),
                                         "Required value: must not be empty for specified array items"))
        _structural_node(items, child(path, "items"), causes)
    additional = s.get("additionalProperties")
    if isinstance(additional, dict):
        _structural_node(additional, child(path, "additionalProperties"), causes)
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(s.get(key) or []):
            if isinstance(sub, dict) and ("default" in sub or "nullable" in sub or "description" in sub
                                          or "type" in sub):
                causes.append(field_forbidden(f"{path}.{key}[{i}]",
                                              "must not be set inside a value validation"))
    if "default" in s and not root:
        dflt = s["default"]
        sub_causes = validate(_deep_copy(dflt), s, "")
        if sub_causes:
            causes.append(field_invalid(child(path, "default"), dflt if not isinstance(dflt, (dict, list))
                                        else _render_plain(dflt), sub_causes[0].message))
