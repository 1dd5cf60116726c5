"""REST handlers: HTTP requests for a resource turned into Registry calls."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
from aiohttp import web

from kplane.apimachinery import errors
from kplane.apimachinery.meta import now_rfc3339
from kplane.apimachinery.selectors import parse_field_selector, parse_label_selector
from kplane.apimachinery.table import build_table
from kplane.apiserver import negotiation
from kplane.apiserver.registry import ListOptions, ListResult, Registry, WatchEvent, WriteOptions
from kplane.apiserver.requestinfo import RequestInfo

Obj = dict[str, Any]

# The 406 of a watch asked for in a media type without a stream serializer (YAML): upstream lists
# MediaTypesForSerializer's stream types; kplane streams JSON only.
WATCH_NOT_ACCEPTABLE = "only the following media types are accepted: application/json;stream=watch"

MIN_REQUEST_TIMEOUT = 1800  # seconds; watches last a random time in [1x, 2x] upstream


def json_response(obj: Any, status: int = 200, choice: negotiation.MediaChoice | None = None,
                  headers: dict[str, str] | None = None) -> web.Response:
    body, ctype = negotiation.encode(obj, choice)
    return web.Response(body=body, status=status, content_type=ctype, headers=headers)


def raw_json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=negotiation.encode_raw(obj), status=status, content_type="application/json")


def status_response(err: errors.StatusError, choice: negotiation.MediaChoice | None = negotiation.COMPACT
                    ) -> web.Response:
    """A Status error as negotiation.error_choice decided: JSON (compact or indented) or YAML;
    None is upstream's WriteRawJSON (indented JSON, for an Accept header that cannot be met)."""
    body, ctype = negotiation.encode(err.to_status(), negotiation.PRETTY if choice is None else choice)
    return web.Response(body=body, status=err.code, content_type=ctype, headers=err.headers or None)


class ResourceHandler:
    """Serves every resource request for the registries it is given."""

    def __init__(self, registries: dict[tuple[str, str, str], Registry]):
        # (group, version, plural) -> Registry
        self.registries = registries

    def lookup(self, info: RequestInfo) -> Registry | None:
        return self.registries.get((info.api_group, info.api_version, info.resource))

    async def handle(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        if info.subresource:
            # Subresources served by a registry of their own (serviceaccounts/token, custom actions).
            sub = self.registries.get((info.api_group, info.api_version, f"{info.resource}/{info.subresource}"))
            if sub is not None:
                return await self._subresource(request, info, sub)
        reg = self.lookup(info)
        if reg is None:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource",
                                     {})
        rdef = reg.rdef
        if info.subresource and info.subresource not in rdef.subresources:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", {})
        if rdef.namespaced and not info.namespace and info.verb not in ("list", "watch"):
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", {})
        namespace = info.namespace if rdef.namespaced else ""
        if rdef.kind == "Namespace":
            namespace = ""
        query = request.query
        choice = negotiation.negotiate(request)
        verb = info.verb
        if verb not in rdef.verbs and not (info.subresource and verb in ("get", "update", "patch")):
            raise errors.method_not_allowed()
        if verb == "get":
            rv = query.get("resourceVersion", "")
            # The response only serializes the object: the cache's own copy will do.
            obj = await reg.get(namespace, info.name, rv, shared=True)
            return self._object_response(reg, obj, choice, include=_include_object(query, choice))
        if verb in ("list", "watch"):
            # A watch of one object (/watch/.../NAME) is a watch of its name, as upstream's ListResource.
            opts = _list_options(reg, query, watch=verb == "watch", name=info.name if verb == "watch" else "")
            if verb == "watch":
                return await self._watch(request, reg, namespace, opts, choice)
            result = await reg.list(namespace, opts, shared=True)
            return self._list_response(reg, result, choice, query)
        wopts = _write_options(request, info)
        if verb == "create":
            body = await _read_body(request)
            obj = await reg.create(namespace, body, wopts)
            return self._object_response(reg, obj, choice, 201, wopts)
        if verb == "update":
            body = await _read_body(request)
            obj, created = await reg.update(namespace, info.name, body, wopts)
            return self._object_response(reg, obj, choice, 201 if created else 200, wopts)
        if verb == "patch":
            return await self._patch(request, reg, namespace, info, wopts, choice)
        if verb == "delete":
            options = await _delete_options(request)
            wopts.dry_run = wopts.dry_run or bool(options.get("dryRun"))
            obj, deleted_now = await reg.delete(namespace, info.name, options, wopts)
            if deleted_now and not _returns_deleted_object(reg):
                return json_response(reg.delete_status(obj), choice=negotiation.PRETTY if choice.pretty else None)
            return self._object_response(reg, obj, choice, 200 if deleted_now else 202, wopts)
        if verb == "deletecollection":
            options = await _delete_options(request)
            wopts.dry_run = wopts.dry_run or bool(options.get("dryRun"))
            opts = _list_options(reg, query)
            result = await reg.delete_collection(namespace, options, opts, wopts)
            return self._list_response(reg, result, choice, query)
        raise errors.method_not_allowed()

    async def _subresource(self, request: web.Request, info: RequestInfo, reg: Any) -> web.StreamResponse:
        namespace = info.namespace if reg.rdef.namespaced else ""
        choice = negotiation.negotiate(request)
        if info.verb == "create":
            wopts = _write_options(request, info)
            obj = await reg.create(namespace, await _read_body(request), wopts)
            return json_response(obj, 201, choice)
        if info.verb == "get":
            return json_response(await reg.get(namespace, info.name), 200, choice)
        raise errors.method_not_allowed()

    # ---- responses ------------------------------------------------------

    def _object_response(self, reg: Registry, obj: Obj, choice: negotiation.MediaChoice, status: int = 200,
                         wopts: WriteOptions | None = None, include: str = "Metadata") -> web.Response:
        headers = _warning_headers(wopts)
        if choice.as_kind == "Table":
            return json_response(build_table(reg.rdef.columns, [obj], include_object=include,
                                             resource_version=obj["metadata"].get("resourceVersion", ""),
                                             api_version=choice.meta_api_version),
                                 status, choice, headers=headers)
        if choice.as_kind in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return json_response(_partial(obj, choice.meta_api_version), status, choice, headers=headers)
        return json_response(obj, status, choice, headers=headers)

    def _list_response(self, reg: Registry, result: ListResult, choice: negotiation.MediaChoice,
                       query: Any) -> web.Response:
        rdef = reg.rdef
        if choice.as_kind == "Table":
            include = _include_object(query, choice)
            table = build_table(rdef.columns, result.items, include_object=include,
                                resource_version=result.resource_version, continue_token=result.continue_token,
                                remaining=result.remaining, api_version=choice.meta_api_version)
            return json_response(table, 200, choice)
        list_meta: Obj = {"resourceVersion": result.resource_version}
        if result.continue_token:
            list_meta["continue"] = result.continue_token
        if result.remaining is not None:
            list_meta["remainingItemCount"] = result.remaining
        if choice.as_kind in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            api_version = choice.meta_api_version
            return json_response({"kind": "PartialObjectMetadataList", "apiVersion": api_version,
                                  "metadata": list_meta, "items": [_partial(o, api_version) for o in result.items]},
                                 200, choice)
        body = {"kind": rdef.list_kind, "apiVersion": rdef.api_version, "metadata": list_meta,
                "items": result.items}
        return json_response(body, 200, choice)

    async def _watch(self, request: web.Request, reg: Registry, namespace: str, opts: ListOptions,
                     choice: negotiation.MediaChoice) -> web.StreamResponse:
        query = request.query
        bookmarks = query.get("allowWatchBookmarks", "").lower() in ("1", "true")
        send_initial = query.get("sendInitialEvents")
        send_initial_events = None if send_initial is None else send_initial.lower() == "true"
        timeout = _watch_timeout(query)
        include = _include_object(query, choice)
        # Bookmarks come every minute, and one shortly before the watch times out (as upstream's
        # cacheWatcher does) so that the client resumes from a recent resourceVersion.
        interval = min(60.0, max(1.0, timeout - 2.0))
        # Opened before the 200 goes out: a bad resourceVersion is still an error response.
        stream = await reg.open_watch(namespace, opts, bookmarks=bookmarks, send_initial_events=send_initial_events,
                                      bookmark_interval=interval, shared=True)
        if choice.yaml:
            # YAML has no stream serializer: upstream's serveWatchHandler, once the watch is open,
            # fails NegotiateOutputMediaTypeStream with a 406 naming the stream media types.
            await stream.aclose()
            raise errors.not_acceptable(WATCH_NOT_ACCEPTABLE)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                       "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
        except BaseException:
            await stream.aclose()
            raise
        first_table = True
        # A watch of a quiet resource writes nothing for long stretches, so a client that has gone
        # would only be noticed at the next event: check the connection meanwhile (as upstream's
        # handler selects on the request context) and end the watch when it closes.
        watchdog = asyncio.ensure_future(_end_when_client_leaves(request, asyncio.current_task()))
        try:
            async with asyncio.timeout(timeout):
                async for ev in stream:
                    if ev.type == "BOOKMARK" and not bookmarks:
                        continue
                    obj = self._watch_object(reg, ev, choice, first_table, include)
                    if choice.as_kind == "Table" and ev.type not in ("BOOKMARK", "ERROR"):
                        first_table = False
                    await resp.write(negotiation.go_escaped(orjson.dumps({"type": ev.type, "object": obj}) + b"\n"))
        except (TimeoutError, ConnectionResetError):
            pass
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if watchdog.done() and current is not None:
                current.uncancel()  # the watchdog's own cancellation: the client left, nothing more
        finally:
            watchdog.cancel()
            await stream.aclose()
        try:
            await resp.write_eof()
        except ConnectionResetError:
            pass
        return resp

    def _watch_object(self, reg: Registry, ev: WatchEvent, choice: negotiation.MediaChoice,
                      first_table: bool, include: str = "Metadata") -> Obj:
        if ev.type in ("BOOKMARK", "ERROR"):
            return ev.object
        if choice.as_kind == "Table":
            table = build_table(reg.rdef.columns, [ev.object], include_object=include,
                                resource_version=ev.object["metadata"].get("resourceVersion", ""),
                                api_version=choice.meta_api_version)
            if not first_table:
                table["columnDefinitions"] = None
            return table
        if choice.as_kind in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return _partial(ev.object, choice.meta_api_version)
        return ev.object

    async def _patch(self, request: web.Request, reg: Registry, namespace: str, info: RequestInfo,
                     wopts: WriteOptions, choice: negotiation.MediaChoice) -> web.Response:
        from kplane.apimachinery import apply as ssa
        from kplane.apimachinery import patch as patches

        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        kind = negotiation.PATCH_TYPES.get(ctype)
        if kind is None or (kind == "strategic" and not reg.rdef.strategic_merge):
            raise errors.StatusError(415, "UnsupportedMediaType",
                                     f"the body of the request was in an unknown format - accepted media "
                                     f"types include: {', '.join(_patch_types(reg))}")
        raw = await read_limited(request)
        schema = reg.rdef.schema
        create_if_missing = None
        if kind == "json":
            body = negotiation.decode_body(raw, ctype)

            def apply_patch(current: Obj) -> Obj:
                return patches.apply_json_patch(current, body)
        elif kind == "merge":
            body = _object_body(negotiation.decode_body(raw, ctype))

            def apply_patch(current: Obj) -> Obj:
                return patches.apply_merge_patch(current, body)
        elif kind == "strategic":
            body = _object_body(negotiation.decode_body(raw, ctype))

            def apply_patch(current: Obj) -> Obj:
                return patches.apply_strategic_merge_patch(current, body, schema)
        else:
            # An empty (or null) configuration decodes, as upstream's YAML decoding into a map does,
            # to no fields at all; the type check below then refuses it.
            body = negotiation.decode_body(raw, ctype)
            body = _object_body({} if body is None else body)
            if not request.query.get("fieldManager"):
                raise errors.bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required "
                                         "value: is required for apply patch")
            wopts.apply = True
            force = request.query.get("force", "").lower() in ("1", "true")
            _check_applied(reg, body, info.name, namespace)

            def apply_patch(current: Obj) -> Obj:
                return ssa.server_side_apply(current, body, manager=wopts.field_manager, force=force,
                                             schema=schema, api_version=reg.rdef.api_version,
                                             now=now_rfc3339(), subresource=info.subresource)

            def create_if_missing() -> Obj:
                return ssa.server_side_apply(None, body, manager=wopts.field_manager, force=force,
                                             schema=schema, api_version=reg.rdef.api_version,
                                             now=now_rfc3339(), subresource=info.subresource)
        obj = await reg.patch(namespace, info.name, apply_patch, wopts, create_if_missing=create_if_missing)
        return self._object_response(reg, obj, choice, 200, wopts)


# ---- request parsing ----------------------------------------------------


def _patch_types(reg: Registry) -> list[str]:
    return [t for t, k in negotiation.PATCH_TYPES.items() if k != "strategic" or reg.rdef.strategic_merge]


def _object_body(body: Any) -> Obj:
    if not isinstance(body, dict):
        raise errors.bad_request("the patch must be a JSON object")
    return body


def _check_applied(reg: Registry, body: Obj, name: str, namespace: str) -> None:
    from kplane.apimachinery import apply as ssa

    ssa.check_applied(body, reg.rdef.api_version, reg.rdef.kind)  # before the name, as upstream
    m = body.get("metadata") or {}
    if m.get("name") and m["name"] != name:
        raise errors.bad_request(f"the name of the object ({m['name']}) does not match the name on the URL "
                                 f"({name})")


async def _read_body(request: web.Request) -> Any:
    if request.content_length and request.content_length > negotiation.MAX_BODY_BYTES:
        raise errors.too_large()
    raw = await read_limited(request)
    if not raw:
        raise errors.bad_request("the request body is empty")
    return negotiation.decode_body(raw, request.headers.get("Content-Type", "application/json"))


async def read_limited(request: web.Request) -> bytes:
    """The whole body, refusing (413) as soon as it passes the 3 MiB limit.

    StreamReader.read(n) returns what is buffered, not n bytes: loop to EOF."""
    chunks = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > negotiation.MAX_BODY_BYTES:
            raise errors.too_large()
        chunks.append(chunk)


async def _delete_options(request: web.Request) -> Obj:
    raw = await read_limited(request)
    options: Obj = {}
    if raw.strip():
        decoded = negotiation.decode_body(raw, request.headers.get("Content-Type", "application/json"))
        if not isinstance(decoded, dict):
            raise errors.bad_request("DeleteOptions must be an object")
        options = decoded
    # Upstream reads the options from the body when there is one, else from the query; the
    # query fills in here what a body leaves out (and a dryRun in either is honoured).
    q = request.query
    if "propagationPolicy" in q and "propagationPolicy" not in options:
        options["propagationPolicy"] = q["propagationPolicy"]
    if "gracePeriodSeconds" in q and "gracePeriodSeconds" not in options:
        options["gracePeriodSeconds"] = _query_int64(q["gracePeriodSeconds"])
    grace = options.get("gracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int) or grace not in _INT64):
        raise errors.bad_request(f"json: cannot unmarshal {_json_kind(grace)} into Go struct field "
                                 "DeleteOptions.gracePeriodSeconds of type int64")
    if "orphanDependents" in q and "orphanDependents" not in options:
        value = q["orphanDependents"].lower()
        if value not in ("true", "false"):
            raise errors.bad_request(f'strconv.ParseBool: parsing "{q["orphanDependents"]}": invalid syntax')
        options["orphanDependents"] = value == "true"
    if not options.get("dryRun") and "dryRun" in q:
        options["dryRun"] = q.getall("dryRun")
    _validate_delete_options(options)
    return options


def _json_kind(value: Any) -> str:
    """How Go's encoding/json names a JSON value in an unmarshal type error."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {value}"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "value")


def _validate_delete_options(options: Obj) -> None:
    """ValidateDeleteOptions: 422 Invalid for DeleteOptions."""
    causes = []
    policy = options.get("propagationPolicy")
    if options.get("orphanDependents") is not None and policy is not None:
        causes.append(errors.field_invalid("propagationPolicy", policy,
                                           "orphanDependents and deletionPropagation cannot be both set"))
    if policy is not None and policy not in ("Foreground", "Background", "Orphan"):
        causes.append(errors.field_not_supported("propagationPolicy", policy,
                                                 ["Foreground", "Background", "Orphan", "nil"]))
    dry_run = options.get("dryRun") or []
    if not isinstance(dry_run, list) or any(v != "All" for v in dry_run):
        causes.append(errors.field_not_supported("dryRun", dry_run, ["All"]))
    if causes:
        raise errors.invalid("DeleteOptions", "", causes, group="meta.k8s.io")


def _dry_run(query: Any) -> bool:
    values = query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(values)


def _write_options(request: web.Request, info: RequestInfo) -> WriteOptions:
    q = request.query
    validation = q.get("fieldValidation", "Warn")
    if validation not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(f"fieldValidation parameter unsupported: {validation}")
    manager = q.get("fieldManager", "")
    if not manager:
        agent = request.headers.get("User-Agent", "unknown")
        manager = agent.split("/")[0][:128]
    # The handlers only serialize what a write returns: the watch cache's copy will do.
    return WriteOptions(user=request.get("user"), dry_run=_dry_run(q), field_manager=manager,
                        field_validation=validation, subresource=info.subresource, name=info.name,
                        shared_result=True)


def _validate_list_options(query: Any, rv: str, rv_match: str, watch: bool) -> None:
    """ValidateListOptions (a watch's rules differ): 422 Invalid for ListOptions."""
    causes = []
    has_continue = bool(query.get("continue"))
    send_initial = "sendInitialEvents" in query
    if watch:
        if send_initial and rv_match != "NotOlderThan":
            causes.append(errors.field_forbidden(
                "resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"))
        if rv_match:
            if not send_initial:
                causes.append(errors.field_forbidden(
                    "resourceVersionMatch", "resourceVersionMatch is forbidden for watch unless sendInitialEvents "
                    "is provided"))
            if rv_match != "NotOlderThan":
                causes.append(errors.field_not_supported("resourceVersionMatch", rv_match, ["NotOlderThan"]))
            if has_continue:
                causes.append(errors.field_forbidden("resourceVersionMatch",
                                                     "resourceVersionMatch is forbidden when continue is provided"))
    else:
        if rv_match:
            if not rv:
                causes.append(errors.field_forbidden(
                    "resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided"))
            if has_continue:
                causes.append(errors.field_forbidden("resourceVersionMatch",
                                                     "resourceVersionMatch is forbidden when continue is provided"))
            if rv_match not in ("Exact", "NotOlderThan"):
                causes.append(errors.field_not_supported("resourceVersionMatch", rv_match,
                                                         ["Exact", "NotOlderThan", ""]))
            if rv_match == "Exact" and rv == "0":
                causes.append(errors.field_forbidden(
                    "resourceVersionMatch", 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'))
        if send_initial:
            causes.append(errors.field_forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"))
    if causes:
        raise errors.invalid("ListOptions", "", causes, group="meta.k8s.io")


def _list_options(reg: Registry, query: Any, watch: bool = False, name: str = "") -> ListOptions:
    label_selector = None
    field_selector = None
    if query.get("labelSelector"):
        label_selector = parse_label_selector(query["labelSelector"])
    selector = query.get("fieldSelector", "")
    if name:  # ANDed with the request's own field selector
        escaped = name.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        selector = f"{selector},metadata.name={escaped}" if selector else f"metadata.name={escaped}"
    if selector:
        field_selector = parse_field_selector(selector)
        unsupported = field_selector.fields - reg.supported_fields()
        if unsupported:
            raise errors.bad_request(f'field label not supported: {sorted(unsupported)[0]}')
    limit = 0
    if query.get("limit"):
        limit = max(_query_int64(query["limit"]), 0)
    rv_match = query.get("resourceVersionMatch", "")
    rv = query.get("resourceVersion", "")
    _validate_list_options(query, rv, rv_match, watch)
    if query.get("continue") and rv not in ("", "0"):
        raise errors.bad_request("specifying resource version is not allowed when using continue")
    return ListOptions(label_selector=label_selector, field_selector=field_selector, limit=limit,
                       continue_token=query.get("continue", ""), resource_version=rv,
                       resource_version_match=rv_match)


_INT64 = range(-(2**63), 2**63)  # Go's int64


def _query_int64(value: str) -> int:
    """An int64 query parameter as upstream's conversion reads it (strconv.ParseInt(v, 10, 64));
    malformed or out of range is a 400 with strconv's message."""
    digits = value[1:] if value[:1] in ("+", "-") else value
    if not digits or not digits.isascii() or not digits.isdigit():
        raise errors.bad_request(f'strconv.ParseInt: parsing "{value}": invalid syntax')
    n = int(value)
    if n not in _INT64:
        raise errors.bad_request(f'strconv.ParseInt: parsing "{value}": value out of range')
    return n


def _watch_timeout(query: Any) -> float:
    """The watch's timeout in seconds, as upstream's ListResource works it out: timeoutSeconds
    is an int64 (400 otherwise); 0 or none means the server's own (minRequestTimeout, jittered);
    a negative one ends the watch at once (Go's timer fires immediately)."""
    value = query.get("timeoutSeconds")
    seconds = _query_int64(value) if value else 0
    if seconds != 0:
        return float(seconds)
    return MIN_REQUEST_TIMEOUT * (1 + random.random())


_CLIENT_CHECK_INTERVAL = 2.0


async def client_gone(request: web.Request, interval: float) -> None:
    """Return once the request's connection has closed (checked every `interval` seconds): a
    long-running response that writes nothing for a while would notice only at its next write."""
    while True:
        await asyncio.sleep(interval)
        transport = request.transport
        if transport is None or transport.is_closing():
            return


async def _end_when_client_leaves(request: web.Request, watcher: asyncio.Task | None) -> None:
    await client_gone(request, _CLIENT_CHECK_INTERVAL)
    if watcher is not None:
        watcher.cancel()


def _include_object(query: Any, choice: negotiation.MediaChoice) -> str:
    """Table's includeObject (Metadata unless asked), a 400 for a value upstream does not know."""
    value = query.get("includeObject", "")
    if choice.as_kind != "Table":
        return "Metadata"
    if value not in ("", "None", "Metadata", "Object"):
        raise errors.bad_request(f'Unable to convert to Table as requested: includeObject: Invalid value: "{value}": '
                                 "must be 'Metadata', 'Object', 'None', or empty")
    return value or "Metadata"


def _warning_headers(wopts: WriteOptions | None) -> dict[str, str] | None:
    if not wopts or not wopts.warnings:
        return None
    # One header per warning upstream; aiohttp's dict headers take one value, so join per RFC 7234.
    return {"Warning": ", ".join(f'299 - "{w.replace(chr(34), chr(92) + chr(34))}"' for w in wopts.warnings)}


def _partial(obj: Obj, api_version: str) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": obj.get("metadata", {})}


def _returns_deleted_object(reg: Registry) -> bool:
    # Upstream's generic store answers a Status for most types; these return the object.
    return reg.rdef.kind in ("Namespace", "CustomResourceDefinition", "APIService") or bool(
        getattr(reg.rdef, "return_deleted_object", False))
