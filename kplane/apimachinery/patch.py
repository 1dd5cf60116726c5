"""PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch.

Pure functions over plain dicts. Errors are StatusErrors shaped like kube-apiserver's
(k8s.io/apiserver/pkg/endpoints/handlers/patch.go):

- a body that is not a JSON patch document           -> 400 BadRequest
- a JSON patch that does not apply (failed `test`,
  missing path)                                      -> 422 Invalid, "the server rejected our request
                                                        due to an error in our request", the patch
                                                        library's message as an UnexpectedServerResponse cause
- more than 10000 JSON patch operations              -> 413 RequestEntityTooLarge
- copy operations adding more than 3 MiB in all      -> 422, as any patch that does not apply
- a malformed strategic merge patch                  -> 400 BadRequest (upstream answers a few of these
                                                        with a bare 500; kplane never answers bad input with 500)

Strategic merge patch reads its list semantics from the resource's OpenAPI schema
(x-kubernetes-patch-strategy / x-kubernetes-patch-merge-key); the schema helpers at the
bottom are shared with server-side apply (apply.py).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import jsonpatch
import jsonpointer

from kplane.apimachinery.errors import StatusError, bad_request

Obj = dict[str, Any]
Schema = dict[str, Any]

MAX_JSON_PATCH_OPERATIONS = 10000
# genericapiserver's JSONPatchMaxCopyBytes (jsonpatch.AccumulatedCopySizeLimit): what all the copy
# operations of one patch may add together, so that a few bytes of patch cannot double an object
# again and again.
MAX_JSON_PATCH_COPY_BYTES = 3 * 1024 * 1024

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"
_SET_ELEMENT_ORDER = "$setElementOrder/"


# --------------------------------------------------------------------------- JSON patch


def apply_json_patch(obj: Obj, patch: bytes | str | list[Any]) -> Obj:
    """Apply an RFC 6902 patch to a copy of `obj`."""
    ops = _decode_json_patch(patch)
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise StatusError(413, "RequestEntityTooLarge",
                          f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
                          f"got {len(ops)}")
    doc = copy.deepcopy(obj)
    copied = 0
    for op in ops:
        try:
            if op.get("op") == "copy":
                copied += _copy_size(doc, op)
                if copied > MAX_JSON_PATCH_COPY_BYTES:
                    raise _json_patch_failed(
                        f"Unable to complete the copy, the accumulated size increase of copy is {copied}, "
                        f"exceeding the limit {MAX_JSON_PATCH_COPY_BYTES}")
            # In place: `doc` is already this call's own copy, and a copy per operation would make
            # 10000 operations on a large object cost 10000 deep copies of it.
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except jsonpatch.JsonPatchTestFailed:
            raise _json_patch_failed(f"testing value {op.get('path')} failed: test failed") from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
            raise _json_patch_failed(f"{op.get('op')} operation does not apply: {e}") from None
    if not isinstance(doc, dict):
        raise _json_patch_failed("the patched document is not a JSON object")
    return doc


def _copy_size(doc: Any, op: dict[str, Any]) -> int:
    """The size a copy operation adds, as json-patch's deepCopy measures it: the copied value's JSON."""
    try:
        value = jsonpointer.resolve_pointer(doc, op.get("from", ""))
    except (jsonpointer.JsonPointerException, TypeError):
        return 0  # the operation itself reports the missing path
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _decode_json_patch(patch: bytes | str | list[Any]) -> list[dict[str, Any]]:
    if isinstance(patch, (bytes, str)):
        try:
            patch = json.loads(patch)
        except ValueError as e:
            raise bad_request(str(e)) from None
    if not isinstance(patch, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    for op in patch:
        if not isinstance(op, dict):
            raise bad_request("json: cannot unmarshal into Go value of type jsonpatch.Operation")
    return patch


def _json_patch_failed(message: str) -> StatusError:
    # errors.NewGenericServerResponse(422, ...) with the library error as the only cause.
    return StatusError(422, "Invalid", "the server rejected our request due to an error in our request",
                       {"causes": [{"reason": "UnexpectedServerResponse", "message": message}]})


# --------------------------------------------------------------------------- merge patch


def apply_merge_patch(obj: Obj, patch: Any) -> Obj:
    """Apply an RFC 7386 JSON merge patch to a copy of `obj`."""
    if not isinstance(patch, dict):
        # A non-object merge patch replaces the whole document, which can never be an object.
        raise bad_request("Invalid JSON Patch")
    return _merge_patch_value(copy.deepcopy(obj), patch)


def _merge_patch_value(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch_value(result.get(key), value)
    return result


def compute_merge_patch(original: Obj, modified: Obj) -> Obj:
    """The RFC 7386 merge patch that turns `original` into `modified`."""
    patch: Obj = {}
    for key in original:
        if key not in modified:
            patch[key] = None
    for key, new in modified.items():
        old = original.get(key, _MISSING)
        if isinstance(old, dict) and isinstance(new, dict):
            sub = compute_merge_patch(old, new)
            if sub:
                patch[key] = sub
        elif old is _MISSING or not json_equal(old, new):
            patch[key] = copy.deepcopy(new)
    return patch


# --------------------------------------------------------------------------- strategic merge patch


def apply_strategic_merge_patch(obj: Obj, patch: Any, schema: Schema | None) -> Obj:
    """Apply a Kubernetes strategic merge patch to a copy of `obj`.

    Follows k8s.io/apimachinery/pkg/util/strategicpatch as the apiserver runs it
    (MergeParallelList and IgnoreUnmatchedNulls on). Where the schema says nothing about
    a field, maps merge and lists are replaced, exactly like a JSON merge patch.
    """
    if not isinstance(patch, dict):
        raise bad_request("Invalid JSON Patch")
    return _smp_map(copy.deepcopy(obj), copy.deepcopy(patch), with_object_meta(schema))


def _smp_map(original: Obj | None, patch: Obj, schema: Schema | None) -> Obj:
    if _DIRECTIVE in patch:
        return _map_directive(patch)
    original = original if isinstance(original, dict) else {}
    _apply_retain_keys(original, patch)
    _apply_set_element_order(original, patch, schema)
    for key, value in patch.items():
        delete_list = key.startswith(_DELETE_FROM_PRIMITIVE_LIST)
        if delete_list:
            key = _directive_target(key, _DELETE_FROM_PRIMITIVE_LIST, "invalid patch format of primitive list")
        if value is None:
            original.pop(key, None)
            continue
        sub = field_schema(schema, key)
        if key not in original:
            if not delete_list:
                original[key] = _smp_new_value(value, sub)
            continue
        current = original[key]
        if isinstance(current, dict) and isinstance(value, dict):
            original[key] = _smp_map_field(current, value, sub)
        elif isinstance(current, list) and isinstance(value, list):
            original[key] = _smp_list(current, value, sub, delete_list)
        elif not delete_list:
            original[key] = _smp_new_value(value, sub)
    return original


def _map_directive(patch: Obj) -> Obj:
    directive = patch[_DIRECTIVE]
    if directive == "replace":
        del patch[_DIRECTIVE]
        return _strip_directives(patch)
    if directive == "delete":
        # Upstream empties the map rather than removing the field.
        return {}
    raise bad_request(f"unknown patch type: {directive} in map: {_compact(patch)}")


def _smp_map_field(current: Obj, value: Obj, schema: Schema | None) -> Obj:
    if "replace" in _strategies(schema):
        return _strip_directives(value)
    return _smp_map(current, value, schema)


def _smp_new_value(value: Any, schema: Schema | None) -> Any:
    """A patch value with nothing to merge into: process its directives against emptiness."""
    if isinstance(value, dict):
        return _smp_map({}, value, schema)
    if isinstance(value, list):
        return _smp_list([], value, schema, False)
    return value


def _smp_list(original: list[Any], patch: list[Any], schema: Schema | None, delete_list: bool) -> list[Any]:
    if delete_list:
        # $deleteFromPrimitiveList/<field>: every listed value goes.
        return [item for item in original if not any(json_equal(item, p) for p in patch)]
    if "merge" not in _strategies(schema):
        return _strip_directives(patch)
    if not original and not patch:
        return original
    if not _is_map_list(original, patch):
        return _dedup(original + patch)
    merge_key = (schema or {}).get("x-kubernetes-patch-merge-key")
    if not merge_key:
        raise bad_request("cannot merge lists without merge key")
    original, patch = _list_special_elements(original, patch, merge_key)
    return _merge_by_key(original, patch, merge_key, item_schema(schema))


def _list_special_elements(original: list[Any], patch: list[Any], key: str) -> tuple[list[Any], list[Any]]:
    """Handle `$patch` items in a merging list: delete by key, or replace the whole list."""
    plain: list[Any] = []
    replace = False
    for item in patch:
        directive = item.get(_DIRECTIVE) if isinstance(item, dict) else None
        if directive is None:
            plain.append(item)
        elif directive == "delete":
            if key not in item:
                raise bad_request(f"map: {_compact(item)} does not contain declared merge key: {key}")
            original = [o for o in original if not (isinstance(o, dict) and json_equal(o.get(key), item[key]))]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise bad_request("merging lists cannot yet be specified in the patch")
        else:
            raise bad_request(f"unknown patch type: {directive} in map: {_compact(item)}")
    if replace:
        return [], plain
    return original, plain


def _merge_by_key(original: list[Any], patch: list[Any], key: str, schema: Schema | None) -> list[Any]:
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map: {_compact(item)} does not contain declared merge key: {key}")
        index = _find_by_key(original, key, item[key])
        if index is None:
            original.append(_smp_map({}, item, schema))
        else:
            original[index] = _smp_map(original[index], item, schema)
    return original


def _find_by_key(items: list[Any], key: str, value: Any) -> int | None:
    for i, item in enumerate(items):
        if isinstance(item, dict) and key in item and json_equal(item[key], value):
            return i
    return None


def _apply_retain_keys(original: Obj, patch: Obj) -> None:
    """`$retainKeys`: drop every field of `original` that is not listed (the patch may only set listed ones)."""
    if _RETAIN_KEYS not in patch:
        return
    keep = patch.pop(_RETAIN_KEYS)
    if not isinstance(keep, list):
        raise bad_request("invalid patch format of retainKeys")
    for key, value in patch.items():
        if value is None or key.startswith((_DELETE_FROM_PRIMITIVE_LIST, _SET_ELEMENT_ORDER)):
            continue
        if key not in keep:
            raise bad_request("invalid patch format of retainKeys")
    for key in list(original):
        if key not in keep:
            del original[key]


def _apply_set_element_order(original: Obj, patch: Obj, schema: Schema | None) -> None:
    """`$setElementOrder/<field>`: merge that list now and order it by the directive.

    Precedence is the directive's order, then the live order for items the directive
    does not mention (they keep their place relative to the items around them).
    """
    for directive_key in [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]:
        order = patch.pop(directive_key)
        field = _directive_target(directive_key, _SET_ELEMENT_ORDER, "invalid patch format of setElementOrder list")
        if not isinstance(order, list):
            raise bad_request("invalid patch format of setElementOrder list")
        sub = field_schema(schema, field)
        live = original.get(field)
        live = live if isinstance(live, list) else None
        patched = patch.pop(field, None)
        if live is None and patched is None:
            continue
        if live is None:
            merged = _smp_list([], patched, sub, False)
        elif patched is None:
            merged = live
        else:
            merged = _smp_list(copy.deepcopy(live), patched, sub, False)
        merge_key = (sub or {}).get("x-kubernetes-patch-merge-key") if _is_map_list(merged, []) else None
        original[field] = _order_by(merged, order, live or [], merge_key)


def _order_by(merged: list[Any], order: list[Any], live: list[Any], merge_key: str | None) -> list[Any]:
    def ident(item: Any) -> Any:
        return item.get(merge_key) if merge_key and isinstance(item, dict) else item

    def position(items: list[Any], item: Any) -> int:
        target = ident(item)
        for i, other in enumerate(items):
            if json_equal(ident(other), target):
                return i
        return -1

    ordered = sorted((m for m in merged if position(order, m) >= 0), key=lambda m: position(order, m))
    server_only = [m for m in merged if position(order, m) < 0]
    # Interleave: a server-only item goes before an ordered item only when both exist in
    # the live list and it came first there.
    out: list[Any] = []
    while ordered or server_only:
        if ordered and server_only:
            ls, lo = position(live, server_only[0]), position(live, ordered[0])
            take_server = ls >= 0 and lo >= 0 and ls < lo
        else:
            take_server = bool(server_only)
        out.append(server_only.pop(0) if take_server else ordered.pop(0))
    return out


def _directive_target(key: str, prefix: str, error: str) -> str:
    target = key[len(prefix):]
    if not target or "/" in target:
        raise bad_request(error)
    return target


def _strip_directives(value: Any) -> Any:
    """Remove `$patch`/`$retainKeys`/... from a value that is taken verbatim."""
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value
                if not (isinstance(v, dict) and v.get(_DIRECTIVE) in ("delete", "replace"))]
    return value


def _strategies(schema: Schema | None) -> list[str]:
    return str((schema or {}).get("x-kubernetes-patch-strategy", "")).split(",")


def _is_map_list(a: list[Any], b: list[Any]) -> bool:
    items = a + b
    return bool(items) and isinstance(items[0], dict)


def _dedup(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if not any(json_equal(item, seen) for seen in out):
            out.append(item)
    return out


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# --------------------------------------------------------------------------- values and schemas

_MISSING: Any = object()


def json_equal(a: Any, b: Any) -> bool:
    """Equality of decoded JSON values where true != 1 (Python's == says they are equal)."""
    if type(a) is str:  # the common case first
        return type(b) is str and a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def field_schema(schema: Schema | None, name: str) -> Schema | None:
    """Schema of field `name` of an object schema: a declared property or the map's value schema."""
    if not schema:
        return None
    props = schema.get("properties") or {}
    if name in props:
        return props[name]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def item_schema(schema: Schema | None) -> Schema | None:
    """Schema of the items of an array schema."""
    items = (schema or {}).get("items")
    return items if isinstance(items, dict) else None


def sub_schema(schema: Schema | None, path: Sequence[str]) -> Schema | None:
    """Follow field names from `schema`, stepping through array items transparently.

    None when the schema does not describe the path; callers then treat maps as
    granular/merging and lists as atomic.
    """
    for name in path:
        while schema and schema.get("type") == "array":
            schema = item_schema(schema)
        schema = field_schema(schema, name)
        if schema is None:
            return None
    return schema


def is_declared(schema: Schema | None, name: str) -> bool:
    return bool(schema) and name in (schema.get("properties") or {})


# ObjectMeta as every Kubernetes type declares it; used when a resource schema leaves
# metadata out (CRDs commonly do) so labels, finalizers and ownerReferences still merge
# like they do upstream.
_STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META_SCHEMA: Schema = {
    "type": "object",
    "properties": {
        **{name: {"type": "string"} for name in (
            "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion",
            "creationTimestamp", "deletionTimestamp")},
        "generation": {"type": "integer"},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set",
                       "x-kubernetes-patch-strategy": "merge"},
        "ownerReferences": {
            "type": "array",
            "items": {"type": "object", "properties": {
                **{name: {"type": "string"} for name in ("apiVersion", "kind", "name", "uid")},
                "controller": {"type": "boolean"},
                "blockOwnerDeletion": {"type": "boolean"}}},
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"],
            "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"},
        "managedFields": {"type": "array", "items": {"type": "object",
                                                      "x-kubernetes-preserve-unknown-fields": True},
                          "x-kubernetes-list-type": "atomic"},
    },
}


def with_object_meta(schema: Schema | None) -> Schema:
    """The root schema with apiVersion/kind/metadata declared (filled in where missing)."""
    root: Schema = dict(schema or {})
    props = dict(root.get("properties") or {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props.setdefault("metadata", OBJECT_META_SCHEMA)
    root["properties"] = props
    if not schema:
        # Nothing else is known: keep every other top-level field free-form.
        root["x-kubernetes-preserve-unknown-fields"] = True
    return root
