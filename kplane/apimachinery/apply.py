"""Server-side apply and metadata.managedFields, after sigs.k8s.io/structured-merge-diff.

A *field set* is a set of paths; a path is a tuple of FieldsV1 path elements exactly as
they are spelled in managedFields:

    "f:<name>"         a field of a map/struct
    "k:{...}"          an item of a list-map, by its key fields (sorted, compact JSON)
    "v:<json>"         an item of a set
    "i:<index>"        an item of a list without keys (kept only for decoding)

Field sets follow SMD's rules: leaves are members; list items are members too (FieldsV1
marks a member that also has children with "."); fields of undeclared maps (labels,
ConfigMap data, free-form objects) are members; declared struct fields are members only
when they are leaves.

List and map semantics come from the resource's OpenAPI schema (x-kubernetes-list-type,
-list-map-keys, -map-type, or the patch-strategy/merge-key pair, which upstream's schema
conversion also honours). Without schema, maps are granular and lists atomic.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kplane.apimachinery.errors import Cause, StatusError, bad_request, field_required, invalid
from kplane.apimachinery.patch import field_schema, is_declared, item_schema, json_equal, with_object_meta

Obj = dict[str, Any]
Schema = dict[str, Any]
Path = tuple[str, ...]
FieldSet = set[Path]

BEFORE_FIRST_APPLY = "before-first-apply"
ANCIENT_CHANGES = "ancient-changes"
MAX_UPDATE_MANAGERS = 10

# Never owned by anyone (upstream's stripMetaManager): identity and server-set metadata.
_STRIPPED: FieldSet = {("f:apiVersion",), ("f:kind",), ("f:metadata",)} | {
    ("f:metadata", "f:" + name) for name in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
        "managedFields", "resourceVersion")}
_STRIPPED_PARENTS = {path[:-1] for path in _STRIPPED}  # nodes some of whose children are stripped

_MISSING: Any = object()


class _TypeMismatch(Exception):
    """The applied object does not fit its schema (bad list keys, duplicates)."""


# --------------------------------------------------------------------------- schema reading


def _atomic_map(schema: Schema | None) -> bool:
    return bool(schema) and schema.get("x-kubernetes-map-type") == "atomic"


def _list_type(schema: Schema | None) -> tuple[str, list[str]]:
    """("atomic" | "set" | "map", key fields) for an array schema."""
    if not schema:
        return "atomic", []
    declared = schema.get("x-kubernetes-list-type")
    merge_key = schema.get("x-kubernetes-patch-merge-key")
    if declared == "map":
        return "map", list(schema.get("x-kubernetes-list-map-keys") or ([merge_key] if merge_key else []))
    if declared in ("set", "atomic"):
        return declared, []
    if "merge" in str(schema.get("x-kubernetes-patch-strategy", "")).split(","):
        return ("map", [merge_key]) if merge_key else ("set", [])
    return "atomic", []


def _shape(schema: Schema | None, *values: Any) -> str:
    """How to walk a node: "map", "list" or "leaf" (scalars, nulls, atomic containers).

    Missing and null values do not count; the others must all be maps, or all lists."""
    maps = lists = False
    for v in values:
        if isinstance(v, dict):
            maps = True
        elif isinstance(v, list):
            lists = True
        elif v is not _MISSING and v is not None:
            return "leaf"
    if maps and not lists:
        return "leaf" if _atomic_map(schema) else "map"
    if lists and not maps:
        kind, keys = _list_type(schema)
        return "leaf" if kind == "atomic" or (kind == "map" and not keys) else "list"
    return "leaf"


def _key_default(schema: Schema | None, key: str) -> Any:
    """The schema default of key field `key` of a list-map's items, None when it has none.

    Like SMD's getAssociativeKeyDefault: only a declared field of the item type counts, and
    a null default is no default."""
    props = (item_schema(schema) or {}).get("properties")
    field_def = props.get(key) if isinstance(props, dict) else None
    return field_def.get("default") if isinstance(field_def, dict) else None


def _item_element(item: Any, schema: Schema | None) -> str:
    """The FieldsV1 element naming one item of a (non-atomic) list.

    A list-map item that omits a key field is identified by that field's schema default
    (SMD's keyedAssociativeListItemToPathElement, since Kubernetes 1.21): a Service port
    without protocol is k:{"port":80,"protocol":"TCP"}. The default only names the item;
    it is not written into it (the type's defaulting does that)."""
    kind, keys = _list_type(schema)
    if kind == "map":
        if not isinstance(item, dict):
            raise _TypeMismatch("associative list with keys may not have non-map elements")
        identity: dict[str, Any] = {}
        for key in keys:  # in declared order, so the error names the first missing key as upstream's does
            if key in item:
                identity[key] = item[key]
                continue
            default = _key_default(schema, key)
            if default is None:
                raise _TypeMismatch(f'associative list with keys has an element that omits key field "{key}" '
                                    "(and doesn't have default value)")
            identity[key] = default
        return "k:" + _compact({key: identity[key] for key in sorted(identity)})
    if isinstance(item, (dict, list)):
        raise _TypeMismatch("associative list without keys has an element that's a map type")
    return "v:" + _compact(item)


def _index_items(items: Any, schema: Schema | None, *, strict: bool) -> dict[str, Any]:
    """Items by path element. Live objects may hold duplicates (first wins); applied ones may not."""
    out: dict[str, Any] = {}
    for item in items if isinstance(items, list) else []:
        try:
            pe = _item_element(item, schema)
        except _TypeMismatch:
            if strict:
                raise
            continue
        if pe in out:
            if strict:
                raise _TypeMismatch(f"duplicate entries for key {_element_string(pe)}")
            continue
        out[pe] = item
    return out


# --------------------------------------------------------------------------- field sets


def fields_of(obj: Obj, schema: Schema | None, ignored_fields: Iterable[Sequence[str]] = ()) -> FieldSet:
    """The field set an object (an applied configuration) specifies.

    Server-set metadata is excluded, and so is everything under `ignored_fields`
    (field-name paths such as ("status",): upstream's reset fields of the endpoint).
    """
    out: FieldSet = set()
    _collect(obj, with_object_meta(schema), (), out)
    return _filter(out, _ignored_paths(ignored_fields))


def _collect(value: Any, schema: Schema | None, path: Path, out: FieldSet) -> None:
    if _shape(schema, value) == "map" and value:
        for name, child in value.items():
            child_path = path + ("f:" + name,)
            _collect(child, field_schema(schema, name), child_path, out)
            if not is_declared(schema, name):
                out.add(child_path)
        return
    if _shape(schema, value) == "list" and value:
        sub = item_schema(schema)
        for pe, item in _index_items(value, schema, strict=True).items():
            _collect(item, sub, path + (pe,), out)
            out.add(path + (pe,))
        return
    if path:
        # Scalars, nulls, atomic containers and empty containers are owned as a whole.
        out.add(path)


def _ignored_paths(ignored_fields: Iterable[Sequence[str]]) -> list[Path]:
    return [tuple("f:" + name for name in names) for names in ignored_fields]


def _filter(paths: Iterable[Path], ignored: Sequence[Path]) -> FieldSet:
    kept = (paths if isinstance(paths, set) else set(paths)) - _STRIPPED
    if not ignored:
        return kept
    return {p for p in kept if not any(p[:len(ig)] == ig for ig in ignored)}


def _with_named_parents(paths: Iterable[Path]) -> FieldSet:
    """Add every prefix that ends in a field name (SMD's EnsureNamedFieldsAreMembers)."""
    out = set(paths)
    for p in list(out):
        out.update(p[:i] for i in range(1, len(p)) if p[i - 1].startswith("f:"))
    return out


# --------------------------------------------------------------------------- FieldsV1


def to_fields_v1(paths: Iterable[Path]) -> Obj:
    """Encode a field set as FieldsV1 JSON ("." marks a member that also has children)."""
    members = set(paths)
    tree: Obj = {}
    for p in members:
        node = tree
        for element in p:
            node = node.setdefault(element, {})
    return _render(tree, (), members)


def _render(node: Obj, prefix: Path, members: FieldSet) -> Obj:
    out: Obj = {}
    if node and prefix in members:
        out["."] = {}
    for element in sorted(node, key=_element_sort_key):
        out[element] = _render(node[element], prefix + (element,), members)
    return out


def from_fields_v1(fields: Obj) -> FieldSet:
    """Decode FieldsV1 JSON into a field set."""
    out: FieldSet = set()
    _decode(fields or {}, (), out)
    return out


def _decode(node: Obj, prefix: Path, out: FieldSet) -> None:
    for element, child in node.items():
        if element == ".":
            out.add(prefix)
        elif isinstance(child, dict) and child:
            _decode(child, prefix + (element,), out)
        else:
            out.add(prefix + (element,))


def _element_sort_key(element: str) -> tuple[int, str]:
    # SMD orders path elements field names < keys < values < indexes.
    return ("fkvi".find(element[:1]), element)


def path_string(path: Path) -> str:
    """A path as upstream prints it in conflicts: .spec.containers[name="c"].image"""
    return "".join(_element_string(element) for element in path)


def _element_string(element: str) -> str:
    kind, body = element[:1], element[2:]
    if kind == "f":
        return "." + body
    if kind == "k":
        key = json.loads(body)
        return "[" + ",".join(f"{name}={_go_value(value)}" for name, value in key.items()) + "]"
    if kind == "v":
        return "[=" + _go_value(json.loads(body)) + "]"
    return "[" + body + "]"


def _go_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- compare, merge, remove


@dataclass
class Comparison:
    added: FieldSet = field(default_factory=set)
    modified: FieldSet = field(default_factory=set)
    removed: FieldSet = field(default_factory=set)

    @property
    def changed(self) -> FieldSet:
        return self.added | self.modified


def compare(old: Obj, new: Obj, schema: Schema | None) -> Comparison:
    """What changed from `old` to `new`, path by path (SMD's TypedValue.Compare)."""
    c = Comparison()
    _compare(old, new, with_object_meta(schema), (), c)
    return c


def _compare(lhs: Any, rhs: Any, schema: Schema | None, path: Path, c: Comparison) -> None:
    if lhs is not _MISSING and rhs is not _MISSING and lhs == rhs and json_equal(lhs, rhs):
        # Nothing under an unchanged node can be added, modified or removed; most of an
        # updated object is unchanged. (== first: it is fast and json_equal implies it.)
        return
    if lhs is _MISSING and rhs is not _MISSING:
        _added(rhs, schema, path, c.added)
        return
    shape = _shape(schema, lhs, rhs)
    if shape != "leaf" and not (_empty(lhs) and _empty(rhs)):
        if shape == "map":
            left, right = _as_dict(lhs), _as_dict(rhs)
            for name in {**left, **right}:
                _compare(left.get(name, _MISSING), right.get(name, _MISSING), field_schema(schema, name),
                         path + ("f:" + name,), c)
        else:
            sub = item_schema(schema)
            left, right = (_index_items(v, schema, strict=False) for v in (lhs, rhs))
            for pe in {**left, **right}:
                _compare(left.get(pe, _MISSING), right.get(pe, _MISSING), sub, path + (pe,), c)
        # A container that appeared or vanished is itself added/removed, besides its children.
        if lhs is _MISSING:
            c.added.add(path)
        elif rhs is _MISSING:
            c.removed.add(path)
        return
    if lhs is _MISSING:
        c.added.add(path)
    elif rhs is _MISSING:
        c.removed.add(path)
    elif not json_equal(lhs, rhs):
        c.modified.add(path)


def _added(value: Any, schema: Schema | None, path: Path, out: FieldSet) -> None:
    """What _compare reports for a node that did not exist before: the node and everything under it."""
    shape = _shape(schema, value)
    if shape == "map" and value:
        for name, child in value.items():
            _added(child, field_schema(schema, name), path + ("f:" + name,), out)
    elif shape == "list" and value:
        sub = item_schema(schema)
        for pe, item in _index_items(value, schema, strict=False).items():
            _added(item, sub, path + (pe,), out)
    out.add(path)


def _empty(value: Any) -> bool:
    return value is _MISSING or value is None or value == {} or value == []


def _as_dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _merge(live: Any, applied: Any, schema: Schema | None) -> Any:
    """Overlay `applied` on `live`: applied values win; nothing is removed (SMD's Merge)."""
    if applied is _MISSING:
        return live
    if live is _MISSING:
        return copy.deepcopy(applied)
    shape = _shape(schema, live, applied)
    if shape == "map" and isinstance(live, dict) and isinstance(applied, dict):
        out = dict(live)
        for name, value in applied.items():
            out[name] = _merge(live.get(name, _MISSING), value, field_schema(schema, name))
        return out
    if shape == "list" and isinstance(live, list) and isinstance(applied, list):
        return _merge_lists(live, applied, schema)
    return copy.deepcopy(applied)


def _merge_lists(live: list[Any], applied: list[Any], schema: Schema | None) -> list[Any]:
    """Merge list items by key. Items in both lists follow the applied order; live-only
    items stay where they were relative to their neighbours."""
    sub = item_schema(schema)
    left = _index_items(live, schema, strict=False)
    right = _index_items(applied, schema, strict=True)
    left_order, right_order = list(left), list(right)
    shared = [pe for pe in right_order if pe in left]
    out: list[Any] = []
    emitted: set[str] = set()

    def emit(pe: str, value: Any) -> None:
        out.append(value)
        emitted.add(pe)
        if pe in shared:
            shared.remove(pe)

    li = ri = 0
    while li < len(left_order) or ri < len(right_order):
        if li < len(left_order) and left_order[li] in emitted:
            li += 1
            continue
        if li < len(left_order) and ri < len(right_order):
            pe = left_order[li]
            if pe == right_order[ri]:
                emit(pe, _merge(left[pe], right[pe], sub))
                li, ri = li + 1, ri + 1
                continue
            if pe in right and shared and shared[0] != pe:
                li += 1  # a shared item the applied order places later: emitted from the right side
                continue
        if li < len(left_order) and left_order[li] not in right:
            emit(left_order[li], left[left_order[li]])
            li += 1
        elif ri < len(right_order):
            pe = right_order[ri]
            emit(pe, _merge(left.get(pe, _MISSING), right[pe], sub))
            ri += 1
        else:
            li += 1
    return out


def _remove_path(value: Any, path: Path, schema: Schema | None) -> None:
    """Delete the node at `path` (and everything under it) from `value`, in place."""
    head, rest = path[0], path[1:]
    if head.startswith("f:"):
        name = head[2:]
        if not isinstance(value, dict) or name not in value:
            return
        if rest:
            _remove_path(value[name], rest, field_schema(schema, name))
        else:
            del value[name]
        return
    if not isinstance(value, list):
        return
    for i, item in enumerate(value):
        try:
            pe = _item_element(item, schema)
        except _TypeMismatch:
            continue
        if pe == head:
            if rest:
                _remove_path(item, rest, item_schema(schema))
            else:
                del value[i]
            return


# --------------------------------------------------------------------------- managedFields entries


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    fields: FieldSet
    time: str | None = None
    subresource: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        # Appliers are one manager whatever version they apply with; updaters are per version.
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def describe(self) -> str:
        """The manager as conflict messages print it."""
        out = json.dumps(self.manager)
        if self.subresource:
            out += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            out += f" using {self.api_version}"
        return out

    def encode(self, fields_v1: Obj | None = None) -> Obj:
        """The managedFields entry; `fields_v1`, when given, is to_fields_v1(self.fields) already."""
        entry: Obj = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version}
        if self.time:
            entry["time"] = self.time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = to_fields_v1(self.fields) if fields_v1 is None else fields_v1
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


Managers = dict[tuple[str, str, str, str], _Entry]


def _decode_entries(entries: Any) -> Managers:
    managers: Managers = {}
    for raw in entries if isinstance(entries, list) else []:
        if not isinstance(raw, dict):
            continue
        entry = _Entry(manager=str(raw.get("manager", "")), operation=str(raw.get("operation", "")),
                       api_version=str(raw.get("apiVersion", "")),
                       fields=from_fields_v1(raw.get("fieldsV1") or {}),
                       time=raw.get("time"), subresource=str(raw.get("subresource", "")))
        if entry.key in managers:
            managers[entry.key].fields |= entry.fields
        else:
            managers[entry.key] = entry
    return managers


def _encode_entries(managers: Managers) -> list[Obj]:
    live = [e for e in managers.values() if e.fields]
    live.sort(key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource))
    return [e.encode() for e in live]


def _cap_update_managers(managers: Managers) -> None:
    """Fold the oldest Update entries into per-version "ancient-changes" buckets beyond 10."""
    updaters = sorted((e for e in managers.values() if e.operation == "Update"),
                      key=lambda e: (e.time or "", e.manager))
    excess = len(updaters) - MAX_UPDATE_MANAGERS
    first_by_version: dict[str, _Entry] = {}
    for entry in updaters:
        if excess <= 0:
            break
        first = first_by_version.setdefault(entry.api_version, entry)
        if first is entry:
            continue
        bucket_key = (ANCIENT_CHANGES, "Update", entry.api_version, "")
        bucket = managers.get(bucket_key)
        if bucket is None:
            del managers[first.key]
            bucket = _Entry(ANCIENT_CHANGES, "Update", entry.api_version, set(first.fields))
            managers[bucket_key] = bucket
        bucket.fields |= entry.fields
        bucket.time = entry.time
        del managers[entry.key]
        excess -= 1


def _drop_empty(managers: Managers) -> None:
    for key in [k for k, e in managers.items() if not e.fields]:
        del managers[key]


def _without_managed_fields(obj: Obj | None) -> Obj:
    """A private copy of `obj` without metadata.managedFields."""
    out = copy.deepcopy(obj) if obj else {}
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return out


def _view_without_managed_fields(obj: Obj | None) -> Obj:
    """`obj` without metadata.managedFields, sharing everything else: for read-only use
    (a deep copy per write was the largest cost of a create)."""
    if not obj:
        return {}
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def _set_managed_fields(obj: Obj, managers: Managers) -> None:
    entries = _encode_entries(managers)
    meta = obj.setdefault("metadata", {})
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)


# --------------------------------------------------------------------------- update (non-apply writes)


def update_managed_fields(old: Obj | None, new: Obj, *, manager: str, operation: str = "Update",
                          subresource: str = "", api_version: str, now: str, schema: Schema | None,
                          ignored_fields: Iterable[Sequence[str]] = ()) -> None:
    """Record a create/update/patch by `manager` in new.metadata.managedFields (in place).

    Fields this write added or changed become `manager`'s (taken from whoever owned
    them); fields it removed leave every set. A client may rewrite managedFields in a
    main-resource write: what it sends is the starting point (`[{}]` clears them all).
    An existing object that has no managedFields is left untracked, as upstream does.
    """
    sent = (new.get("metadata") or {}).get("managedFields")
    if sent and not subresource:
        managers = _decode_entries(sent)
    else:
        managers = _decode_entries(((old or {}).get("metadata") or {}).get("managedFields"))
        if old is not None and not managers:
            (new.get("metadata") or {}).pop("managedFields", None)
            return
    ignored = _ignored_paths(ignored_fields)
    writer = _Entry(manager, operation, api_version, set(), now, subresource)
    if old is None and not managers and not ignored:
        _record_first_write(new, writer, schema)
        return
    _record_update(managers, _view_without_managed_fields(old), _view_without_managed_fields(new),
                   writer, schema, ignored)
    _cap_update_managers(managers)
    _set_managed_fields(new, managers)


def _record_first_write(new: Obj, writer: _Entry, schema: Schema | None) -> None:
    """update_managed_fields for a create nobody tracked before (the common create).

    Then the writer owns every field of the object, so its FieldsV1 is rendered straight
    from the object: what _record_update + _set_managed_fields give, without the diff
    against an empty object and the field-set round trip."""
    root = with_object_meta(schema)
    view = _view_without_managed_fields(new)
    meta = new.setdefault("metadata", {})
    if _shape(root, view) != "map":  # (never for a real object; keep the general rules exact)
        managers: Managers = {}
        _record_update(managers, {}, view, writer, schema, ())
        _set_managed_fields(new, managers)
        return
    fields_v1 = _new_fields_v1(view, root, ())
    if fields_v1:
        meta["managedFields"] = [writer.encode(fields_v1)]
    else:
        meta.pop("managedFields", None)


def _new_fields_v1(value: Any, schema: Schema | None, path: Path) -> Obj:
    """to_fields_v1 of every node under `value` (all of them new), less the _STRIPPED paths.

    Mirrors _added (which nodes a new value has) and _render (children in SMD order, "."
    on a member that has children). Runs on every create: scalars are rendered inline, and
    a child's path is only built where it can matter (containers, or a parent of a
    stripped path)."""
    shape = _shape(schema, value)
    if shape == "map" and value:
        out: Obj = {".": {}} if path and path not in _STRIPPED else {}
        check_leaves = path in _STRIPPED_PARENTS
        # Field names all sort as "f:" elements: in name order. A scalar is a leaf whatever
        # its schema says, so only containers look theirs up.
        for name in sorted(value):
            child = value[name]
            element = "f:" + name
            if isinstance(child, (dict, list)):
                child_path = path + (element,)
                node = _new_fields_v1(child, field_schema(schema, name), child_path)
                if node or child_path not in _STRIPPED:
                    out[element] = node
            elif not check_leaves or path + (element,) not in _STRIPPED:
                out[element] = {}
    elif shape == "list" and value:
        sub = item_schema(schema)
        children = sorted(((pe, item, sub) for pe, item in _index_items(value, schema, strict=False).items()),
                          key=_child_sort_key)
        out = {} if not path or path in _STRIPPED else {".": {}}
        for element, child, child_schema in children:
            child_path = path + (element,)
            node = _new_fields_v1(child, child_schema, child_path) if isinstance(child, (dict, list)) else {}
            if node or child_path not in _STRIPPED:
                out[element] = node
    else:
        return {}
    if len(out) == 1 and "." in out:
        return {}  # every child was stripped: a member without children renders as {}
    return out


def _child_sort_key(child: tuple[str, Any, Any]) -> tuple[int, str]:
    return _element_sort_key(child[0])


def _record_update(managers: Managers, old: Obj, new: Obj, writer: _Entry, schema: Schema | None,
                   ignored: Sequence[Path]) -> None:
    diff = compare(old, new, schema)
    changed = _filter(diff.changed, ignored)
    removed = _filter(diff.removed, ignored)
    for entry in managers.values():
        entry.fields -= changed | removed
    if changed:
        previous = managers.get(writer.key)
        writer.fields = changed | (previous.fields if previous else set())
        managers[writer.key] = writer
    _drop_empty(managers)


# --------------------------------------------------------------------------- server-side apply


def server_side_apply(live: Obj | None, applied: Obj, *, manager: str, force: bool, schema: Schema | None,
                      api_version: str, now: str, kind: str | None = None, subresource: str = "",
                      ignored_fields: Iterable[Sequence[str]] = (), name: str | None = None) -> Obj:
    """Apply `applied` (a partial object) to `live` (None when creating) for `manager`.

    Returns the merged object carrying updated metadata.managedFields. Raises 409
    Conflict when the configuration changes fields other managers own (unless `force`),
    400 when the configuration is not a valid apply body for this endpoint.
    `name`, when given, is the name in the URL the result must carry.
    """
    kind = kind or (live or {}).get("kind") or (applied.get("kind") if isinstance(applied, dict) else "") or ""
    check_applied(applied, api_version, kind)
    schema = with_object_meta(schema)
    ignored = _ignored_paths(ignored_fields)
    live_obj = _without_managed_fields(live)
    managers = _decode_entries(((live or {}).get("metadata") or {}).get("managedFields"))
    if live is not None and not managers:
        # Existing fields nobody tracked yet belong to a stand-in updater, so the
        # first applier sees conflicts instead of silently taking them over.
        _record_update(managers, {}, live_obj, _Entry(BEFORE_FIRST_APPLY, "Update", api_version, set(), now),
                       schema, ignored)

    config = _drop_ignored(copy.deepcopy(applied), ignored)
    try:
        applied_set = _filter(fields_of(config, schema), ignored)
        merged = _merge(live_obj, config, schema)
    except _TypeMismatch as e:
        raise bad_request(f"failed to create typed patch object ({_gvknn(applied, api_version)}): {e}") from None

    applier = _Entry(manager, "Apply", api_version, applied_set, None, subresource)
    previous = managers.get(applier.key)
    applier.time = previous.time if previous else None
    managers[applier.key] = applier
    if previous and previous.fields:
        merged = _prune(merged, previous.fields, managers, schema)

    diff = compare(live_obj, merged, schema)
    # kubectl's first server-side apply of an object it applied client-side takes over what its
    # last-applied configuration still says (upstream's lastAppliedManager).
    transferable = _last_applied_fields(live_obj, schema) if manager == KUBECTL_MANAGER else set()
    _take_ownership(managers, applier, _filter(diff.changed, ignored), force, transferable)
    removed = _filter(diff.removed, ignored)
    for entry in managers.values():
        if entry is not applier:
            entry.fields -= removed
    _drop_empty(managers)
    if not json_equal(live_obj, merged):
        applier.time = now
    _check_name(merged, name, kind, live is None)
    _set_managed_fields(merged, managers)
    if manager == KUBECTL_MANAGER:
        _update_last_applied(merged, applied)
    return merged


KUBECTL_MANAGER = "kubectl"  # kubectl apply --server-side's field manager
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _last_applied_fields(live: Obj, schema: Schema | None) -> FieldSet:
    """The fields the last-applied annotation (kubectl's client-side apply) names with the value
    the object still has: what the client-side applier set and nobody has changed since."""
    raw = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not raw:
        return set()
    try:
        last = json.loads(raw)
        if not isinstance(last, dict):
            return set()
        named = fields_of(last, schema)
        changed = compare(last, live, schema)
    except (ValueError, _TypeMismatch):
        return set()
    return named - changed.modified - changed.removed


def _update_last_applied(merged: Obj, applied: Obj) -> None:
    """Upstream's lastAppliedUpdater: where the annotation exists, kubectl's server-side apply
    rewrites it to the configuration just applied, so a later client-side apply merges right."""
    annotations = (merged.get("metadata") or {}).get("annotations")
    if not annotations or LAST_APPLIED not in annotations:
        return
    config = copy.deepcopy(applied)
    meta = config.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
        meta["annotations"].pop(LAST_APPLIED, None)
        if not meta["annotations"]:
            del meta["annotations"]
    annotations[LAST_APPLIED] = json.dumps(config, sort_keys=True, separators=(",", ":")) + "\n"


def check_applied(applied: Any, api_version: str, kind: str) -> None:
    """Upstream's versionCheckManager and the managed-fields checks run on an apply configuration
    before it is merged (an empty one is a configuration of no type: "invalid object type: /, Kind=")."""
    if not isinstance(applied, dict):
        raise bad_request("error decoding YAML: the apply configuration must be an object")
    if applied.get("apiVersion") != api_version or not applied.get("kind") or applied.get("kind") != kind:
        raise bad_request(f"invalid object type: {_gvk(applied)}")
    meta = applied.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise bad_request("failed to create typed patch object: .metadata: expected map")
    if (meta or {}).get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil")


def _check_name(merged: Obj, url_name: str | None, kind: str, creating: bool) -> None:
    name = (merged.get("metadata") or {}).get("name") or ""
    if url_name is not None and name != url_name:
        raise bad_request(f"the name of the object ({name}) does not match the name on the URL ({url_name})")
    if not name and creating:
        # What create validation answers for a nameless object.
        raise invalid(kind, "", [field_required("metadata.name", "Required value: name or generateName is required")])


def _drop_ignored(config: Obj, ignored: Sequence[Path]) -> Obj:
    for path in ignored:
        _remove_path(config, path, None)
    return config


def _prune(merged: Obj, last: FieldSet, managers: Managers, schema: Schema | None) -> Obj:
    """Remove what the applier owned last time, no longer applies, and nobody else owns."""
    still_owned: FieldSet = set()
    for entry in managers.values():
        still_owned |= entry.fields
    doomed = _with_named_parents(last) - _with_named_parents(still_owned)
    for path in sorted(doomed, key=len):
        _remove_path(merged, path, schema)
    return merged


def _take_ownership(managers: Managers, applier: _Entry, changed: FieldSet, force: bool,
                    transferable: FieldSet = frozenset()) -> None:  # type: ignore[assignment]
    conflicts = {key: entry.fields & changed for key, entry in managers.items()
                 if entry is not applier and entry.fields & changed}
    if conflicts and not force:
        left = {key: paths - transferable for key, paths in conflicts.items() if paths - transferable}
        if left:  # conflicts the last-applied configuration cannot explain stand
            raise _conflict_error([(managers[key], paths) for key, paths in sorted(left.items())])
    for key, paths in conflicts.items():
        managers[key].fields -= paths


def _conflict_error(conflicts: list[tuple[_Entry, FieldSet]]) -> StatusError:
    flat = [(entry, path) for entry, paths in conflicts for path in _sorted_paths(paths)]
    causes = [Cause("FieldManagerConflict", f"conflict with {entry.describe()}", path_string(path))
              for entry, path in flat]
    if len(flat) == 1:
        entry, path = flat[0]
        message = f"Apply failed with 1 conflict: conflict with {entry.describe()}: {path_string(path)}"
    else:
        lines: list[str] = []
        for entry, paths in conflicts:
            lines.append(f"conflicts with {entry.describe()}:")
            lines.extend(f"- {path_string(p)}" for p in _sorted_paths(paths))
        message = f"Apply failed with {len(flat)} conflicts: " + "\n".join(lines)
    return StatusError(409, "Conflict", message, {"causes": [c.to_dict() for c in causes]})


def _sorted_paths(paths: Iterable[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: [_element_sort_key(e) for e in p])


def _gvk(obj: Obj) -> str:
    api_version = str(obj.get("apiVersion") or "")
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={obj.get('kind') or ''}"


def _gvknn(obj: Obj, api_version: str) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}; {_gvk(obj)}"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
