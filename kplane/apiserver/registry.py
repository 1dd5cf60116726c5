"""The generic registry: every verb of one ResourceDef over a Store.

This is kplane's genericregistry.Store: it turns API semantics (names,
uid, generation, resourceVersion preconditions, status subresource,
finalizers, dry run, managed fields) into Store calls. It knows nothing of
HTTP; the handlers translate requests into calls here.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from kplane.apimachinery import errors
from kplane.apimachinery.meta import drop_empty_meta, generate_name, meta, new_uid, now_rfc3339
from kplane.apimachinery.pruning import prune, type_mismatch
from kplane.apiserver.resource import Obj, ResourceDef
from kplane.storage.cacher import Bookmark, Cacher
from kplane.storage.interface import (
    KV,
    CompactedError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    RevisionConflictError,
    Store,
)

_CONTINUE_VERSION = "meta.k8s.io/v1"
_MAX_UPDATE_RETRIES = 16
_SERVER_SET_META = ("uid", "creationTimestamp", "resourceVersion", "generation", "deletionTimestamp",
                    "deletionGracePeriodSeconds", "selfLink")


@dataclass
class WriteOptions:
    """What a write request carries beside its body."""

    user: Any = None
    dry_run: bool = False
    field_manager: str = ""
    field_validation: str = "Warn"  # Strict | Warn | Ignore
    force: bool = False
    subresource: str = ""
    name: str = ""  # the name in the URL (for subresource registries)
    # Server-side apply maintains managedFields itself.
    apply: bool = False
    # Undo actions registered by create hooks (e.g. release an allocated
    # ClusterIP), run when the write does not happen.
    rollbacks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # The caller only reads (serializes) the written object: it may get the watch cache's
    # own copy (see Registry.view) instead of a freshly decoded one.
    shared_result: bool = False


@dataclass
class ListOptions:
    label_selector: Any = None  # selectors.LabelSelector or None
    field_selector: Any = None  # selectors.FieldSelector or None
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass
class ListResult:
    items: list[Obj]
    resource_version: str
    continue_token: str = ""
    remaining: int | None = None


@dataclass
class WatchEvent:
    type: str  # ADDED MODIFIED DELETED BOOKMARK ERROR
    object: Obj


# Hooks other parts of the control plane attach to a registry: the namespace
# lifecycle check before creates, ClusterIP allocation for services, ...
CreateHook = Callable[[Obj, WriteOptions], Awaitable[None]]
UpdateHook = Callable[[Obj, Obj, WriteOptions], Awaitable[None]]  # (new, old, opts)
DeleteHook = Callable[[Obj], Awaitable[None]]
AfterUpdateHook = Callable[[Obj, Obj], Awaitable[None]]  # (new, old)
BeforeDeleteHook = Callable[[Obj, WriteOptions], Awaitable[None]]


class Registry:
    def __init__(self, rdef: ResourceDef, store: Store, cacher: Cacher):
        self.rdef = rdef
        self.store = store
        self.cacher = cacher
        # Admission-like hooks, run after validation; they may raise StatusError.
        self.before_create: list[CreateHook] = []
        self.before_update: list[UpdateHook] = []
        self.after_update: list[AfterUpdateHook] = []  # (new, old) once an update is stored
        self.before_delete: list[BeforeDeleteHook] = []
        self.after_delete: list[DeleteHook] = []
        # (namespace, this ResourceDef, the object's name): refuses a create in a missing or terminating
        # namespace.
        self.namespace_check: Callable[[str, ResourceDef, str], Awaitable[None]] | None = None

    # ---- encoding -------------------------------------------------------

    def decode(self, kv: KV) -> Obj:
        """A stored value as an object of this registry's version."""
        obj = decode_stored(kv)
        if self.rdef.from_storage:
            obj = self.rdef.from_storage(obj)
        return obj

    def view(self, stored: Obj, shared: bool = False) -> Obj:
        """A private copy of a watch-cache object (storage form), in this registry's version.

        The cache holds the storage form shared by every version served from one prefix.
        With `shared`, a caller that only reads the result (e.g. serializes it) gets the
        cached object itself when no conversion is needed: it must never mutate it."""
        if shared and not self.rdef.from_storage:
            return stored
        obj = _copy(stored)
        return self.rdef.from_storage(obj) if self.rdef.from_storage else obj

    def encode(self, obj: Obj) -> bytes:
        stored = self.rdef.to_storage(obj) if self.rdef.to_storage else obj
        m = stored["metadata"]
        rv = m.pop("resourceVersion", None)
        try:
            return orjson.dumps(stored)
        finally:
            if rv is not None:
                m["resourceVersion"] = rv

    # A def with async converters (a CRD's conversion webhook) is converted through these;
    # the read paths test `rdef.async_from_storage` first, so other types never get here.

    async def decode_async(self, kv: KV) -> Obj:
        if self.rdef.async_from_storage is None:
            return self.decode(kv)
        return (await self.rdef.async_from_storage([decode_stored(kv)]))[0]

    async def view_async(self, stored: list[Obj]) -> list[Obj]:
        """Private copies of watch-cache objects, converted in one batch (async converters only)."""
        return await self.rdef.async_from_storage([_copy(o) for o in stored])  # type: ignore[misc]

    async def encode_async(self, obj: Obj) -> bytes:
        if self.rdef.async_to_storage is not None:
            obj = (await self.rdef.async_to_storage([obj]))[0]
        return self.encode(obj)

    def _key(self, namespace: str, name: str) -> str:
        return self.rdef.key(namespace if self.rdef.namespaced else None, name)

    def _not_found(self, name: str) -> errors.StatusError:
        return errors.not_found(self.rdef.plural, name, self.rdef.group)

    # ---- reads ----------------------------------------------------------

    async def get(self, namespace: str, name: str, resource_version: str = "", *, shared: bool = False) -> Obj:
        """The object; with `shared` possibly the watch cache's own (read-only) dict, see view()."""
        key = self._key(namespace, name)
        if resource_version == "0":
            hit = self.cacher.get(key)
        else:
            # Unset: the latest state. In a single process the cache is fed
            # synchronously after each write; waiting on the current revision
            # keeps this consistent for backends fed asynchronously too.
            await self._fresh(resource_version)
            hit = self.cacher.get(key)
        if hit is None:
            raise self._not_found(name)
        if self.rdef.async_from_storage is not None:
            return (await self.view_async([hit[1]]))[0]
        return self.view(hit[1], shared)

    async def _fresh(self, resource_version: str) -> None:
        if resource_version and resource_version != "0":
            rv = _parse_rv(resource_version)
        else:
            rv = await self.store.current_revision()
        await self.cacher.wait_until_fresh(rv)

    async def list(self, namespace: str, opts: ListOptions, *, shared: bool = False) -> ListResult:
        """With `shared` the items may be the watch cache's own (read-only) dicts, see view()."""
        prefix = self.rdef.key_prefix(namespace or None)
        if opts.continue_token:
            rv, start_after = _decode_continue(opts.continue_token, prefix)
            # -1: the token a compacted continue hands out, to go on at the latest revision.
            return await self._list_from_store(prefix, max(rv, 0), start_after, opts)
        if opts.limit > 0 and opts.resource_version != "0":
            rv = 0
            if opts.resource_version and opts.resource_version_match == "Exact":
                rv = _parse_rv(opts.resource_version)
            elif opts.resource_version:
                await self._fresh(opts.resource_version)  # NotOlderThan: a future one is "too large"
            return await self._list_from_store(prefix, rv, None, opts)
        if opts.resource_version_match == "Exact" and opts.resource_version:
            return await self._list_from_store(prefix, _parse_rv(opts.resource_version), None, opts)
        if opts.resource_version != "0":
            await self._fresh(opts.resource_version)
        entries, revision, _ = self.cacher.list(prefix)
        if self.rdef.async_from_storage is not None:
            items = [o for o in await self.view_async([obj for _, obj in entries]) if self._matches(o, opts)]
        elif opts.label_selector is None and opts.field_selector is None:
            items = [self.view(obj, shared) for _, obj in entries]
        else:
            items = [o for o in (self.view(obj, shared) for _, obj in entries) if self._matches(o, opts)]
        return ListResult(items, str(revision))

    async def _list_from_store(self, prefix: str, rv: int, start_after: str | None,
                               opts: ListOptions) -> ListResult:
        items: list[Obj] = []
        last_key = start_after
        remaining: int | None = None
        try:
            while True:
                page = await self.store.list(prefix, revision=rv, start_after=last_key,
                                             limit=(opts.limit - len(items)) if opts.limit else 0)
                rv = page.revision
                decoded = (map(self.decode, page.items) if self.rdef.async_from_storage is None else
                           await self.rdef.async_from_storage([decode_stored(kv) for kv in page.items]))
                for kv, obj in zip(page.items, decoded, strict=True):
                    last_key = kv.key
                    if self._matches(obj, opts):
                        items.append(obj)
                if not page.more or (opts.limit and len(items) >= opts.limit):
                    more = page.more
                    if more and opts.label_selector is None and opts.field_selector is None:
                        # Counted by the store: only exact when every key is an item (no selector).
                        remaining = page.remaining
                    break
        except CompactedError:
            if opts.continue_token:
                # handleCompactedErrorForPaging: a token to go on at the latest revision comes with it.
                err = errors.expired(
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter, or use the continue token "
                    "in this response to retrieve the remainder of the results. Continuing with the "
                    "provided token results in an inconsistent list - objects that were created, "
                    "modified, or deleted between the time the first chunk was returned and now may show "
                    "up in the list.")
                err.list_meta["continue"] = _encode_continue(-1, (start_after or prefix)[len(prefix):])
                raise err from None
            raise errors.expired("The resourceVersion for the provided list is too old.") from None
        except FutureRevisionError as e:
            raise errors.resource_version_too_large(
                f"Too large resource version: {e.requested}, current: {e.current}") from None
        token = _encode_continue(rv, last_key[len(prefix):]) if more and last_key else ""
        return ListResult(items, str(rv), token, remaining if token else None)

    def _matches(self, obj: Obj, opts: ListOptions) -> bool:
        if opts.label_selector is not None and not opts.label_selector.matches(
                obj.get("metadata", {}).get("labels") or {}):
            return False
        if opts.field_selector is not None and not opts.field_selector.matches(
                lambda f: self.field_value(obj, f)):
            return False
        return True

    def field_value(self, obj: Obj, field_name: str) -> str | None:
        m = obj.get("metadata", {})
        if field_name == "metadata.name":
            return m.get("name", "")
        if field_name == "metadata.namespace":
            return m.get("namespace", "")
        getter = self.rdef.field_selectors.get(field_name)
        return getter(obj) if getter else None

    def supported_fields(self) -> set[str]:
        return {"metadata.name", "metadata.namespace", *self.rdef.field_selectors}

    # ---- watch ----------------------------------------------------------

    async def watch(self, namespace: str, opts: ListOptions, *, bookmarks: bool = False,
                    send_initial_events: bool | None = None,
                    bookmark_interval: float = 60.0, shared: bool = False) -> AsyncIterator[WatchEvent]:
        """Watch events; with `shared` their objects may be the cache's own (read-only) dicts."""
        events = await self.open_watch(namespace, opts, bookmarks=bookmarks, send_initial_events=send_initial_events,
                                       bookmark_interval=bookmark_interval, shared=shared)
        try:
            async for ev in events:
                yield ev
        finally:
            await events.aclose()

    async def open_watch(self, namespace: str, opts: ListOptions, *, bookmarks: bool = False,
                         send_initial_events: bool | None = None, bookmark_interval: float = 60.0,
                         shared: bool = False) -> AsyncGenerator[WatchEvent, None]:
        """watch(), with everything that can fail as a request error (a malformed or too new
        resourceVersion) done before it returns: a handler opens the watch first and commits to
        a streaming 200 only then. What fails later (history compacted) is an ERROR event."""
        prefix = self.rdef.key_prefix(namespace or None)
        rv_param = opts.resource_version
        initial: list[Obj] = []
        if send_initial_events is None:
            send_initial_events = rv_param in ("", "0")
        if send_initial_events:
            if rv_param not in ("", "0"):
                await self.cacher.wait_until_fresh(_parse_rv(rv_param))
            elif rv_param == "":
                await self._fresh("")
            entries, revision, _ = self.cacher.list(prefix)
            views = (self.view(obj, shared) for _, obj in entries) if self.rdef.async_from_storage is None \
                else await self.view_async([obj for _, obj in entries])
            initial = [o for o in views if self._matches(o, opts)]
            start = revision
        else:
            # No initial events: from the given revision, or (none, "0") from now. One the cache
            # has not reached within its wait is "too large" (504), before anything streams.
            start = _parse_rv(rv_param) if rv_param not in ("", "0") else 0
            if start:
                await self.cacher.wait_until_fresh(start)
        try:
            stream = self.cacher.watch(prefix, start, bookmark_interval=bookmark_interval if bookmarks else None)
        except CompactedError as e:
            return _single(_expired_event(e))
        end_bookmark = start if send_initial_events and opts.resource_version_match == "NotOlderThan" \
            and bookmarks else None
        return self._events(stream, initial, end_bookmark, opts, shared)

    async def _events(self, stream: Any, initial: list[Obj], end_bookmark: int | None, opts: ListOptions,
                      shared: bool) -> AsyncGenerator[WatchEvent, None]:
        for obj in initial:
            yield WatchEvent("ADDED", obj)
        if end_bookmark is not None:
            yield WatchEvent("BOOKMARK", self._bookmark(end_bookmark, initial_end=True))
        try:
            async for ev in stream:
                if isinstance(ev, Bookmark):
                    yield WatchEvent("BOOKMARK", self._bookmark(ev.revision))
                    continue
                if self.rdef.async_from_storage is not None:
                    try:  # converted here; view() in _convert_event then only copies
                        objs = await self.view_async([o for o in (ev.obj, ev.prev_obj) if o is not None])
                    except errors.StatusError as e:
                        yield WatchEvent("ERROR", e.to_status())
                        return
                    ev = replace(ev, obj=objs[0], prev_obj=objs[1] if len(objs) > 1 else None)
                converted = self._convert_event(ev, opts, shared)
                if converted is not None:
                    yield converted
        except CompactedError as e:
            yield _expired_event(e)
        finally:
            await stream.aclose()

    def _convert_event(self, ev: Any, opts: ListOptions, shared: bool = False) -> WatchEvent | None:
        """Apply selectors the way upstream's cacher does: an object that stops
        matching is reported DELETED, one that starts matching ADDED."""
        obj = self.view(ev.obj, shared)
        if opts.label_selector is None and opts.field_selector is None:
            # Everything matches: the previous state cannot change the event type.
            if ev.type == "DELETED":
                return WatchEvent("DELETED", obj)
            return WatchEvent("ADDED" if ev.type == "ADDED" or ev.prev_obj is None else "MODIFIED", obj)
        prev = self.view(ev.prev_obj) if ev.prev_obj is not None else None
        cur_ok = self._matches(obj, opts)
        if ev.type == "DELETED":
            return WatchEvent("DELETED", obj) if cur_ok else None
        prev_ok = prev is not None and self._matches(prev, opts)
        if ev.type == "ADDED" or prev is None:
            return WatchEvent("ADDED", obj) if cur_ok else None
        if cur_ok and prev_ok:
            return WatchEvent("MODIFIED", obj)
        if cur_ok:
            return WatchEvent("ADDED", obj)
        if prev_ok:
            gone = prev
            gone["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
            return WatchEvent("DELETED", gone)
        return None

    def _bookmark(self, rv: int, initial_end: bool = False) -> Obj:
        m: Obj = {"resourceVersion": str(rv)}
        if initial_end:
            m["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": self.rdef.kind, "apiVersion": self.rdef.api_version, "metadata": m}

    # ---- writes ---------------------------------------------------------

    async def create(self, namespace: str, obj: Obj, opts: WriteOptions) -> Obj:
        rdef = self.rdef
        self._check_type_meta(obj)
        m = meta(obj)
        self._check_namespace(namespace, m)
        if m.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        if not m.get("name") and m.get("generateName"):
            m["name"] = generate_name(m["generateName"])
        self._drop_unknown(obj, opts)
        for k in _SERVER_SET_META:
            m.pop(k, None)
        m["uid"] = new_uid()
        m["creationTimestamp"] = now_rfc3339()
        if rdef.has_status:
            if rdef.generation:
                m["generation"] = 1
            if "status" in rdef.subresources:
                obj.pop("status", None)
        if rdef.prepare_create:
            rdef.prepare_create(obj)
        drop_empty_meta(obj)
        self._validate(obj, None)
        if rdef.namespaced and self.namespace_check is not None:
            await self.namespace_check(namespace, rdef, m.get("name", ""))
        try:
            for hook in self.before_create:
                await hook(obj, opts)
            if not opts.apply:
                self._track_fields(None, obj, opts, "Update")
            if opts.dry_run:
                return obj
            kv = await self.store.create(self._key(namespace, m["name"]), await self.encode_async(obj))
        except KeyExistsError:
            await _run_rollbacks(opts)
            raise errors.already_exists(rdef.plural, m["name"], rdef.group) from None
        except BaseException:
            await _run_rollbacks(opts)
            raise
        return await self._written(kv, opts)

    async def _written(self, kv: KV, opts: WriteOptions) -> Obj:
        """The object a write stored, as the caller gets it back.

        The watch cache decodes every write anyway; a backend that feeds it synchronously
        (SQLite: the event is reflected before the writer resumes) has it cached already,
        so a caller that only reads the result takes that one instead of a second decode."""
        if opts.shared_result and self.rdef.async_from_storage is None and not self.rdef.from_storage:
            hit = self.cacher.get(kv.key)
            if hit is not None and hit[0].mod_revision == kv.mod_revision:
                return hit[1]
        return await self.decode_async(kv)

    def _check_type_meta(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        api_version = obj.get("apiVersion")
        kind = obj.get("kind")
        if api_version and api_version != self.rdef.api_version:
            raise errors.bad_request(f"the API version in the data ({api_version}) does not match the "
                                     f"expected API version ({self.rdef.api_version})")
        if kind and kind != self.rdef.kind:
            raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind "
                                     f"({self.rdef.kind})")
        obj["apiVersion"] = self.rdef.api_version
        obj["kind"] = self.rdef.kind

    def _check_namespace(self, namespace: str, m: Obj) -> None:
        if self.rdef.namespaced:
            ns = m.get("namespace")
            if ns and ns != namespace:
                raise errors.bad_request("the namespace of the provided object does not match the "
                                         "namespace sent on the request")
            m["namespace"] = namespace
        else:
            m.pop("namespace", None)

    def _drop_unknown(self, obj: Obj, opts: WriteOptions) -> None:
        if self.rdef.go_typed:
            mismatch = type_mismatch(obj, self.rdef.schema)
            if mismatch is not None:
                field_path, found, wanted = mismatch
                kind, version = self.rdef.kind, self.rdef.version
                raise errors.bad_request(
                    f'{kind} in version "{version}" cannot be handled as a {kind}: json: cannot unmarshal '
                    f"{found} into Go struct field {kind}{field_path} of type {wanted}")
        unknown = prune(obj, self.rdef.schema)
        if not unknown or opts.field_validation == "Ignore":
            return
        if opts.field_validation == "Strict":
            kind, version = self.rdef.kind, self.rdef.version
            listed = ", ".join(f'unknown field "{u[1:]}"' for u in unknown)
            raise errors.bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: '
                                     f"strict decoding error: {listed}")
        opts.warnings.extend(f'unknown field "{u[1:]}"' for u in unknown)

    def _validate(self, obj: Obj, old: Obj | None) -> None:
        from kplane.apimachinery.validation import validate_object_meta, validate_object_meta_update

        rdef = self.rdef
        causes = validate_object_meta(obj, namespaced=rdef.namespaced, name_validation=rdef.name_validation,
                                      is_create=old is None)
        if old is not None:
            causes += validate_object_meta_update(obj, old)
            if rdef.validate_update:
                causes += rdef.validate_update(obj, old)
        elif rdef.validate_create:
            causes += rdef.validate_create(obj)
        if causes:
            raise errors.invalid(rdef.kind, obj.get("metadata", {}).get("name", ""), causes, rdef.group)

    def _track_fields(self, old: Obj | None, new: Obj, opts: WriteOptions, operation: str) -> None:
        from kplane.apimachinery.apply import update_managed_fields

        if not opts.field_manager:
            return
        update_managed_fields(old, new, manager=opts.field_manager, operation=operation,
                              subresource=opts.subresource, api_version=self.rdef.api_version,
                              now=now_rfc3339(), schema=self.rdef.schema)

    async def update(self, namespace: str, name: str, obj: Obj, opts: WriteOptions) -> tuple[Obj, bool]:
        """PUT. Returns (object, created)."""
        self._check_type_meta(obj)
        m = meta(obj)
        self._check_namespace(namespace, m)
        if m.get("name") and m["name"] != name:
            raise errors.bad_request(f"the name of the object ({m['name']}) does not match the name on the "
                                     f"URL ({name})")
        m["name"] = name
        self._drop_unknown(obj, opts)
        rv = m.get("resourceVersion", "")
        key = self._key(namespace, name)
        current, cached = await self._current(key, opts)
        if current is None:
            if not self.rdef.allow_create_on_update or opts.subresource:
                raise self._not_found(name)
            return await self.create(namespace, obj, opts), True

        def mutate(_old: Obj) -> Obj:
            return _copy(obj)  # a fresh copy per attempt: the update path changes it

        expected = _parse_rv(rv) if rv else 0
        return await self._guaranteed_update(key, name, mutate, opts, expected, current=current,
                                             cached=cached), False

    async def _current(self, key: str, opts: WriteOptions) -> tuple[KV | None, bool]:
        """The state an update starts from and whether it is the watch cache's (see
        _guaranteed_update), which saves a store read per update. Only the store can
        tell that an object does not exist; a dry run reads the store as upstream's does."""
        hit = None if opts.dry_run else self.cacher.get(key)
        if hit is not None:
            return hit[0], True
        return await self.store.get(key), False

    async def patch(self, namespace: str, name: str, apply_patch: Callable[[Obj], Obj], opts: WriteOptions,
                    *, create_if_missing: Callable[[], Obj] | None = None) -> Obj:
        """PATCH: `apply_patch` turns the current object into the desired one.

        For server-side apply a missing object is created from
        `create_if_missing()`; other patch types answer 404.
        """
        key = self._key(namespace, name)
        current, cached = await self._current(key, opts)
        if current is None:
            if create_if_missing is None or opts.subresource:
                raise self._not_found(name)
            obj = create_if_missing()
            meta(obj)["name"] = name
            return await self.create(namespace, obj, opts)

        def mutate(old: Obj) -> Obj:
            new = apply_patch(_copy(old))  # old is the attempt's own: patch a copy of it
            if not isinstance(new, dict):
                raise errors.bad_request("the patch did not produce an object")
            self._check_type_meta(new)
            self._drop_unknown(new, opts)
            nm = meta(new)
            if nm.get("name", name) != name:
                raise errors.bad_request("metadata.name: Invalid value: the name of the object does not "
                                         "match the name on the URL")
            return new

        return await self._guaranteed_update(key, name, mutate, opts, 0, patching=True, current=current,
                                             cached=cached)

    async def _guaranteed_update(self, key: str, name: str, mutate: Callable[[Obj], Obj],
                                 opts: WriteOptions, expected: int, patching: bool = False,
                                 current: KV | None = None, cached: bool = False) -> Obj:
        """Read, mutate, write with the read's revision as precondition; on a conflict re-read
        and retry. `current`, a state the caller has just read, saves the first read.

        With `cached`, `current` came from the watch cache and may be stale, as the state
        upstream's cacher hands etcd3's GuaranteedUpdate: a write against it that conflicts,
        an error computed from it (unless the store still holds that very revision) and a
        no-op all re-read the store before deciding, so the outcome is the store's.

        `mutate` must not change its argument (the old object, validated against below).

        What the before_update hooks claimed (opts.rollbacks) is given back when the update
        fails; after_update hooks run once it is stored."""
        try:
            return await self._update_loop(key, name, mutate, opts, expected, patching, current, cached)
        except BaseException:
            await _run_rollbacks(opts)
            raise

    async def _update_loop(self, key: str, name: str, mutate: Callable[[Obj], Obj], opts: WriteOptions,
                           expected: int, patching: bool, current: KV | None, cached: bool) -> Obj:
        rdef = self.rdef
        kv = current
        for _ in range(_MAX_UPDATE_RETRIES):
            await _run_rollbacks(opts)  # a retry: what the last attempt's hooks claimed is claimed anew
            if kv is None:
                kv, cached = await self.store.get(key), False
                if kv is None:
                    raise self._not_found(name)
            try:
                old = await self.decode_async(kv)
                new = mutate(old)
                nm = meta(new)
                new_rv = nm.get("resourceVersion", "")
                if patching and new_rv and new_rv != old["metadata"]["resourceVersion"]:
                    # A patch that carries a resourceVersion is a precondition.
                    raise errors.conflict(rdef.plural, name, rdef.group)
                if expected and expected != kv.mod_revision:
                    raise errors.conflict(rdef.plural, name, rdef.group)
                new = self._prepare_update(new, old, opts)
                drop_empty_meta(new)
                self._validate(new, old)
                for hook in self.before_update:
                    await hook(new, old, opts)
                if not opts.apply:
                    self._track_fields(old, new, opts, "Update")
            except errors.StatusError:
                if not cached:
                    raise
                latest = await self.store.get(key)
                if latest is not None and latest.mod_revision == kv.mod_revision:
                    raise  # the cached state was the current one: the error stands
                kv, cached = latest, False
                if kv is None:
                    raise self._not_found(name) from None
                continue
            if _semantically_equal(new, old):
                if cached:
                    kv = None  # nothing to write against the cache's state: make sure of the store's
                    continue
                return old
            deleting = bool(new["metadata"].get("deletionTimestamp"))
            if deleting and not new["metadata"].get("finalizers") and not self._has_pending_finalizers(new):
                if opts.dry_run:
                    return new
                try:
                    await self._delete_now(key, kv.mod_revision)
                except RevisionConflictError:
                    kv = None  # someone else changed it meanwhile: re-read and re-apply
                    continue
                except KeyNotFoundError:
                    raise self._not_found(name) from None
                return new
            if opts.dry_run:
                return new
            try:
                written = await self.store.update(key, await self.encode_async(new),
                                                  expected_revision=kv.mod_revision)
            except RevisionConflictError:
                if expected and not cached:
                    raise errors.conflict(rdef.plural, name, rdef.group) from None
                kv = None
                continue
            except KeyNotFoundError:
                raise self._not_found(name) from None
            opts.rollbacks.clear()  # stored: what the hooks claimed is in use
            for after in self.after_update:
                await after(new, old)
            return await self._written(written, opts)
        raise errors.conflict(rdef.plural, name, rdef.group, "too many concurrent updates, try again")

    def _has_pending_finalizers(self, obj: Obj) -> bool:
        # Namespaces also wait on spec.finalizers (the "kubernetes" finalizer).
        return bool(self.rdef.kind == "Namespace" and obj.get("spec", {}).get("finalizers"))

    def _prepare_update(self, new: Obj, old: Obj, opts: WriteOptions) -> Obj:
        rdef = self.rdef
        nm, om = new["metadata"], old["metadata"]
        # As upstream's BeforeUpdate: server-owned fields come from the stored object
        # (a client's reformatted creationTimestamp is not a change); a uid the client
        # sends must match (validation reports it as immutable).
        for k in ("creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if k in om:
                nm[k] = om[k]
            else:
                nm.pop(k, None)
        if not nm.get("uid"):
            nm["uid"] = om.get("uid")
        nm["resourceVersion"] = om["resourceVersion"]
        if om.get("deletionTimestamp") and _added_finalizers(nm, om):
            raise errors.invalid(rdef.kind, nm.get("name", ""), [errors.field_forbidden(
                "metadata.finalizers", "no new finalizers can be added if the object is being deleted")],
                rdef.group)
        if opts.subresource == "finalize":
            # /finalize changes only a namespace's spec.finalizers.
            result = _copy(old)
            result.setdefault("spec", {})["finalizers"] = list((new.get("spec") or {}).get("finalizers") or [])
            return result
        if opts.subresource == "status":
            # /status changes only status (and nothing of spec or metadata but labels/annotations
            # are ignored too, as upstream's status strategies do).
            result = _copy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
            result["metadata"]["managedFields"] = nm.get("managedFields", om.get("managedFields"))
            if result["metadata"]["managedFields"] is None:
                result["metadata"].pop("managedFields")
            return result
        if "status" in rdef.subresources:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if rdef.prepare_update:
            rdef.prepare_update(new, old)
        if rdef.has_status and rdef.generation and _spec_changed(new, old):
            nm["generation"] = om.get("generation", 1) + 1
        return new

    async def delete(self, namespace: str, name: str, options: Obj, opts: WriteOptions) -> tuple[Obj, bool]:
        """Returns (object, deleted_now). A false `deleted_now` means finalizers hold it (202)."""
        rdef = self.rdef
        key = self._key(namespace, name)
        pre = (options or {}).get("preconditions") or {}
        policy = (options or {}).get("propagationPolicy")
        if policy is None and (options or {}).get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"  # the deprecated form
        if policy is not None and policy not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid("DeleteOptions", "", [errors.field_not_supported(
                "propagationPolicy", policy, ["Foreground", "Background", "Orphan", "nil"])])
        for _ in range(_MAX_UPDATE_RETRIES):
            kv = await self.store.get(key)
            if kv is None:
                raise self._not_found(name)
            obj = await self.decode_async(kv)
            m = obj["metadata"]
            if pre.get("uid") and pre["uid"] != m.get("uid"):
                raise errors.conflict(rdef.plural, name, rdef.group,
                                      f"Precondition failed: UID in precondition: {pre['uid']}, "
                                      f"UID in object meta: {m.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != m["resourceVersion"]:
                raise errors.conflict(rdef.plural, name, rdef.group,
                                      f"Precondition failed: ResourceVersion in precondition: "
                                      f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                      f"{m['resourceVersion']}")
            if not m.get("deletionTimestamp"):
                for hook in self.before_delete:
                    await hook(obj, opts)
            finalizers = list(m.get("finalizers") or [])
            if policy is not None and not m.get("deletionTimestamp"):
                # An explicit policy overrides the one a finalizer chose (deletionFinalizersForGarbageCollection).
                wanted = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(policy)
                finalizers = [f for f in finalizers if f not in ("foregroundDeletion", "orphan") or f == wanted]
                if wanted is not None and wanted not in finalizers:
                    finalizers.append(wanted)
            pending = finalizers or self._has_pending_finalizers(obj)
            if pending:
                if m.get("deletionTimestamp"):
                    return obj, False
                m["deletionTimestamp"] = now_rfc3339()
                if finalizers:
                    m["finalizers"] = finalizers
                else:
                    m.pop("finalizers", None)
                if rdef.kind == "Namespace":
                    # Upstream's namespace storage sets the timestamp and the phase, and no grace period.
                    obj.setdefault("status", {})["phase"] = "Terminating"
                else:
                    m["deletionGracePeriodSeconds"] = 0
                if opts.dry_run:
                    return obj, False
                try:
                    written = await self.store.update(key, await self.encode_async(obj),
                                                      expected_revision=kv.mod_revision)
                except RevisionConflictError:
                    continue
                return await self.decode_async(written), False
            if opts.dry_run:
                return obj, True
            try:
                await self._delete_now(key, kv.mod_revision)
            except RevisionConflictError:
                continue
            except KeyNotFoundError:
                raise self._not_found(name) from None
            return obj, True
        raise errors.conflict(rdef.plural, name, rdef.group, "too many concurrent updates, try again")

    async def _delete_now(self, key: str, expected: int) -> None:
        deleted = await self.store.delete(key, expected_revision=expected)
        if self.after_delete:
            obj = await self.decode_async(deleted)
            for hook in self.after_delete:
                await hook(obj)

    async def delete_collection(self, namespace: str, options: Obj, list_opts: ListOptions,
                                opts: WriteOptions) -> ListResult:
        listed = await self.list(namespace, ListOptions(label_selector=list_opts.label_selector,
                                                        field_selector=list_opts.field_selector))
        deleted = []
        for obj in listed.items:
            m = obj["metadata"]
            try:
                result, _ = await self.delete(m.get("namespace", ""), m["name"], options, opts)
                deleted.append(result)
            except errors.StatusError as e:
                if e.code != 404:
                    raise
        return ListResult(deleted, listed.resource_version)

    def delete_status(self, obj: Obj) -> Obj:
        m = obj.get("metadata", {})
        details: Obj = {"name": m.get("name", ""), "kind": self.rdef.plural, "uid": m.get("uid", "")}
        if self.rdef.group:
            details["group"] = self.rdef.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


async def _run_rollbacks(opts: WriteOptions) -> None:
    while opts.rollbacks:
        await opts.rollbacks.pop()()


async def _single(event: WatchEvent) -> AsyncGenerator[WatchEvent, None]:
    yield event


def _expired_event(e: CompactedError) -> WatchEvent:
    status = errors.expired(f"too old resource version: {e.requested} ({e.compacted})").to_status()
    return WatchEvent("ERROR", status)


def decode_stored(kv: KV) -> Obj:
    """A stored value in its storage form, with resourceVersion from the revision."""
    obj = orjson.loads(kv.value)
    obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
    return obj


def _copy(obj: Obj) -> Obj:
    # orjson round trip: several times faster than copy.deepcopy for JSON data.
    return orjson.loads(orjson.dumps(obj))


def _parse_rv(value: str) -> int:
    """A resourceVersion as upstream's versioner parses it (strconv.ParseUint: digits only, at
    most 2^64-1); anything else is a 400."""
    if not value.isascii() or not value.isdigit() or int(value) >= 2**64:
        raise errors.bad_request(f'invalid resource version "{value}"')
    return int(value)


def _encode_continue(rv: int, start: str) -> str:
    token = orjson.dumps({"v": _CONTINUE_VERSION, "rv": rv, "start": start + "\x00"})
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def _decode_continue(token: str, prefix: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        if data.get("v") != _CONTINUE_VERSION or not isinstance(data.get("rv"), int):
            raise ValueError
        start = str(data.get("start", "")).rstrip("\x00")
        if start.startswith("/") or ".." in start.split("/"):
            raise ValueError
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                                 "(version meta.k8s.io/v1)") from None
    return data["rv"], prefix + start


def _added_finalizers(nm: Obj, om: Obj) -> bool:
    return bool(set(nm.get("finalizers") or []) - set(om.get("finalizers") or []))


def _spec_changed(new: Obj, old: Obj) -> bool:
    ignore = ("metadata", "status", "apiVersion", "kind")
    return {k: v for k, v in new.items() if k not in ignore} != {k: v for k, v in old.items() if k not in ignore}


def _semantically_equal(new: Obj, old: Obj) -> bool:
    """Upstream skips the write (and keeps the resourceVersion) when an update changes nothing
    but managedFields timestamps."""
    def strip(o: Obj) -> Obj:
        c = dict(o)
        m = dict(c.get("metadata", {}))
        mf = m.pop("managedFields", None)
        if mf:
            m["managedFields"] = [{k: v for k, v in e.items() if k != "time"} for e in mf]
        c["metadata"] = m
        return c
    return strip(new) == strip(old)
