"""The generic API server both kplane and extension servers are built from.

Filter chain (as upstream): recover -> request-info -> authentication ->
authorization -> dispatch. Dispatch goes, in order, to: non-resource paths
(health, version, metrics, OpenAPI), discovery, the `delegates` (the
aggregator's proxy installs itself there), then the local resource handler.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol

from aiohttp import web

from kplane.apimachinery import errors
from kplane.apiserver import discovery as disco
from kplane.apiserver import fastpath, negotiation
from kplane.apiserver.audit import HEADER_AUDIT_ID, Auditor, audit_id
from kplane.apiserver.auth import ALLOW, RequestAttributes, UserInfo
from kplane.apiserver.handlers import ResourceHandler, json_response, raw_json_response, status_response
from kplane.apiserver.health import HealthChecks
from kplane.apiserver.metrics import RequestMetrics, request_key, storage_objects_text
from kplane.apiserver.registry import Registry, decode_stored
from kplane.apiserver.requestinfo import RequestInfo, resolve, resolve_unwatched
from kplane.apiserver.resource import ResourceDef
from kplane.storage.cacher import Cacher, TooLargeResourceVersionError
from kplane.storage.interface import CompactedError, StorageError, Store, UnavailableError

log = logging.getLogger("kplane.apiserver")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A delegate may claim a request (return a response) or pass (return None).
Delegate = Callable[[web.Request, RequestInfo], Awaitable[web.StreamResponse | None]]


class Authenticator(Protocol):
    async def authenticate(self, request: web.Request) -> UserInfo | None: ...


class Authorizer(Protocol):
    async def authorize(self, attrs: RequestAttributes) -> tuple[str, str]: ...


ANONYMOUS = UserInfo("system:anonymous", ("system:unauthenticated",))

# Paths anyone may read without credentials until RBAC decides otherwise
# (upstream's system:public-info-viewer).
PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")


class GenericAPIServer:
    def __init__(self, store: Store, *, authenticator: Authenticator, authorizer: Authorizer,
                 version_info: dict[str, str], anonymous_auth: bool = True):
        self.store = store
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.version_info = version_info
        self.anonymous_auth = anonymous_auth
        # Optional impersonation filter (between authentication and authorization, as upstream):
        # (request, authenticated user) -> effective user; raises a StatusError to refuse.
        self.impersonation: Callable[[web.Request, UserInfo], Awaitable[UserInfo]] | None = None
        # Optional auditing (apiserver/audit.py Auditor); every response carries Audit-Id regardless.
        self.audit: Auditor | None = None
        # The fast lane (apiserver/fastpath.py): request targets ("/apis/…?…") this predicate claims
        # skip aiohttp's request machinery when nothing about them needs it; None turns it off.
        self.fast_path: Callable[[str], bool] | None = _api_target
        self.fast_lane: fastpath.FastLane | None = None  # set by start()
        self.registries: dict[tuple[str, str, str], Registry] = {}
        self.cachers: dict[str, Cacher] = {}
        self.defs: list[ResourceDef] = []
        self.group_priority: dict[str, int] = {}
        self.resource_handler = ResourceHandler(self.registries)
        self.delegates: list[Delegate] = []
        # A delegate that can also answer from the fast lane's callbacks (claims, serve_now):
        # the aggregator's proxy.
        self.express_delegate: Any = None
        self.health = HealthChecks()
        self.non_resource: dict[str, Handler] = {"/metrics": self._metrics}
        self.request_metrics = RequestMetrics()
        self.discovery = LocalDiscovery(self)
        self.on_defs_changed: list[Callable[[], None]] = []
        self.server_address = "127.0.0.1:6443"
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    # ---- resources ------------------------------------------------------

    def install(self, rdef: ResourceDef, registry_cls: type[Registry] = Registry) -> Registry:
        """Serve `rdef`. Definitions sharing a storage prefix share one watch cache,
        which holds objects in their storage form."""
        prefix = rdef.key_prefix()
        cacher = self.cachers.get(prefix)
        if cacher is None:
            cacher = Cacher(self.store, prefix, decode_stored)
            self.cachers[prefix] = cacher
            if self._runner is not None:
                asyncio.ensure_future(cacher.start())
        registry = registry_cls(rdef, self.store, cacher)
        self.registries[(rdef.group, rdef.version, rdef.plural)] = registry
        self.defs.append(rdef)
        self._defs_changed()
        return registry

    def caches_revision(self, resources: list[tuple[str, str, str]]) -> Callable[[], int]:
        """A revision of the watch caches of `resources` ((group, version, plural), built in:
        installed once with their caches): the sum of their revisions, each of which only grows,
        so it changes whenever one of their objects may have; -1 while one is not installed."""
        cachers: list[Cacher] = []

        def revision() -> int:
            if not cachers:
                found = [getattr(self.registries.get(r), "cacher", None) for r in resources]
                if any(c is None for c in found):
                    return -1
                cachers.extend(found)  # type: ignore[arg-type]
            total = 0
            for cacher in cachers:
                total += cacher.revision
            return total

        return revision

    def install_virtual(self, registry: Any) -> None:
        """Serve a registry whose objects are not stored (see apiserver/virtual.py)."""
        rdef = registry.rdef
        self.registries[(rdef.group, rdef.version, rdef.plural)] = registry
        self.defs.append(rdef)
        self._defs_changed()

    async def uninstall(self, rdef: ResourceDef) -> None:
        self.registries.pop((rdef.group, rdef.version, rdef.plural), None)
        self.defs = [d for d in self.defs if d is not rdef]
        prefix = rdef.key_prefix()
        if not any(d.key_prefix() == prefix for d in self.defs):
            cacher = self.cachers.pop(prefix, None)
            if cacher is not None:
                await cacher.stop()
        self._defs_changed()

    def _defs_changed(self) -> None:
        for cb in self.on_defs_changed:
            cb()

    def registry(self, group: str, version: str, plural: str) -> Registry:
        return self.registries[(group, version, plural)]

    # ---- lifecycle ------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=negotiation.MAX_BODY_BYTES + 1024,
                              middlewares=[self._filters])
        app.on_response_prepare.append(self._on_response_prepare)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        for cacher in self.cachers.values():
            await cacher.start()
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=2.0, **fastpath.HEAD_LIMITS)
        await self._runner.setup()
        lane = self._fast_lane(self._runner.app)
        self.fast_lane = lane if fastpath.install(self._runner.server, lane) else None
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context, backlog=1024)
        await site.start()

    def _fast_lane(self, app: web.Application) -> fastpath.FastLane:
        async def serve(request: Any) -> web.StreamResponse:
            return await self._filters(request, self._dispatch)

        async def on_response_prepare(request: Any, response: web.StreamResponse) -> None:
            if len(app.on_response_prepare) == 1 and app.on_response_prepare[0] == self._on_response_prepare:
                await self._on_response_prepare(request, response)  # the usual single hook, called directly
            else:
                await app.on_response_prepare.send(request, response)

        lane = fastpath.FastLane(
            claims=lambda target: self.fast_path is not None and self.fast_path(target),
            serve=serve, max_body=app._client_max_size, on_response_prepare=on_response_prepare,
            # The auditor reads all of aiohttp's request; audited servers keep the one lane.
            enabled=lambda: self.fast_path is not None and self.audit is None)
        lane.express = self._express
        return lane

    def _express(self, request: Any) -> Any:
        """The express delegate's exchange for `request` (the aggregator's proxy, express.py),
        when all the filter chain would do before it can be decided on the spot: a caller
        authenticated without waiting, no impersonation, allowed by the synchronous authorizer.
        None leaves the request to the filter chain, which also answers every failure. The
        delegate sends the request before it returns; the exchange takes the Audit-Id after."""
        delegate = self.express_delegate
        if delegate is None:
            return None
        verdict = self._express_verdict(request)
        if verdict is None:
            return None
        exchange = delegate.serve_now(request, verdict.info, verdict.user)
        if exchange is not None:  # the request is on its way: what is left is bookkeeping
            exchange.audit_id = audit_id(request)
            request["info"] = verdict.info
            request["authenticated_user"] = request["user"] = verdict.user
            request["attributes"] = verdict.attrs
        return exchange

    def _express_verdict(self, request: Any) -> _ExpressVerdict | None:
        """Who is asking and that they may, for the express lane; None when the filter chain must
        decide. A connection that repeats its last request (the same header block, method and
        path: a client polling, a controller's GETs) reuses the last decision while the
        authorizer's revision is unchanged, for up to EXPRESS_VERDICT_SECONDS (kube-apiserver
        keeps a token's authentication for 10 s)."""
        authenticate_now = getattr(self.authenticator, "authenticate_now", None)
        authorize_now = getattr(self.authorizer, "authorize_sync", None)
        if authenticate_now is None or authorize_now is None:
            return None
        revision_of = getattr(self.authorizer, "revision", None)
        revision = revision_of() if revision_of is not None else None
        now = time.monotonic()
        protocol = request._protocol
        last = protocol.express_verdict
        if (last is not None and revision is not None and last.headers is request.headers
                and last.raw_path == request.raw_path and last.method == request.method
                and last.revision == revision and now < last.expires):
            return last
        path = request.raw_path.partition("?")[0]
        # The lane takes no watch; a path without escapes is its own decoded form (yarl's, otherwise).
        info = resolve_unwatched(request.method, path if "%" not in path else request.path)
        if not self.express_delegate.claims(info):
            return None
        try:
            user = authenticate_now(request)
            if user is None or request.impersonating:
                return None
            attrs = _attributes(user, info)
            decision, _ = authorize_now(attrs)
        except Exception:  # noqa: BLE001 - the filter chain answers it (401, 403, 500)
            return None
        if decision != ALLOW:
            return None
        verdict = _ExpressVerdict(request.headers, request.method, request.raw_path, revision,
                                  now + EXPRESS_VERDICT_SECONDS, info, user, attrs)
        protocol.express_verdict = verdict if revision is not None else None
        return verdict

    async def stop(self) -> None:
        self.health.shutting_down = True
        if self._runner is not None:
            await self._runner.cleanup()
        for cacher in list(self.cachers.values()):
            await cacher.stop()

    # ---- filters --------------------------------------------------------

    @web.middleware
    async def _filters(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Audit (apiserver/audit.py) wraps the whole chain so that it sees every request, proxied
        # ones and failures included, with the code of the response.
        request["received_at"] = time.time()
        audit_id(request)
        auditor = self.audit
        if auditor is None:
            return await self._filter_chain(request, handler)
        try:
            resp = await self._filter_chain(request, handler)
        except BaseException as e:
            auditor.finish(request, None, e)
            raise
        auditor.finish(request, resp)
        return resp

    async def _on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        audit_id_value = request.get("audit_id")
        headers = response.headers
        if audit_id_value:
            headers[HEADER_AUDIT_ID] = audit_id_value
        # kube-apiserver's WithCacheControl (nothing it answers is for shared caches) and the
        # nosniff its response writers set.
        if "Cache-Control" not in headers:
            headers["Cache-Control"] = "no-cache, private"
        if "X-Content-Type-Options" not in headers:
            headers["X-Content-Type-Options"] = "nosniff"
        if self.audit is not None:
            self.audit.response_started(request, response)

    async def _filter_chain(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            info = resolve(request.method, request.path, request.query)  # type: ignore[arg-type]
            request["info"] = info
            user = await self.authenticator.authenticate(request)
            if user is None:
                if not self.anonymous_auth:
                    raise errors.unauthorized()
                user = ANONYMOUS
            request["authenticated_user"] = user
            if self.audit is not None:
                self.audit.received(request, user, info)
            if self.impersonation is not None:
                user = await self.impersonation(request, user)
            request["user"] = user
            attrs = _attributes(user, info)
            decision, reason = await self.authorizer.authorize(attrs)
            request["authorization"] = (decision, reason)
            if decision != ALLOW:
                if user is ANONYMOUS and not request.path.startswith(PUBLIC_PATHS) \
                        and not getattr(self.authorizer, "authorizes_anonymous", False):
                    raise errors.unauthorized()
                raise forbidden_error(attrs, reason)
            request["attributes"] = attrs
            if self.audit is not None:
                await self.audit.read_body(request)
            if not info.is_resource_request:
                return await handler(request)
            return await self._instrumented(request, info, handler)
        except (web.HTTPException, ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:  # noqa: BLE001 - the recover filter: answer a Status, never crash
            return self._error_response(request, e)

    def _error_response(self, request: web.Request, e: Exception) -> web.Response:
        """The Status a failure is answered with (logged when it is kplane's own fault)."""
        choice = negotiation.error_choice(request)
        if isinstance(e, errors.StatusError):
            return status_response(e, choice)
        if isinstance(e, StorageError):
            return status_response(storage_status(e), choice)
        log.exception("internal error serving %s %s", request.method, request.path)
        request["panic"] = e
        return status_response(errors.internal(str(e)), choice)

    async def _instrumented(self, request: web.Request, info: RequestInfo, handler: Handler
                            ) -> web.StreamResponse:
        """`handler`, counted in the request metrics (apiserver/metrics.py) unless a delegate passed
        the request on to another server (request["proxied"])."""
        metrics = self.request_metrics
        key = request_key(info, request.query, request.headers.get("Content-Type", "") if info.verb == "patch" else "")
        watch = info.verb == "watch"
        if watch:
            metrics.started_longrunning(key)
        started = time.perf_counter()
        resp: web.StreamResponse | None = None
        code = 0  # no answer: the client went away
        try:
            try:
                resp = await handler(request)
            except (web.HTTPException, ConnectionResetError):
                raise
            except Exception as e:  # noqa: BLE001 - answered here, as the recover filter would, to count it
                resp = self._error_response(request, e)
            if not watch and not request.get("proxied"):
                negotiation.compress_if_large(request.headers, resp)
            return resp
        except web.HTTPException as e:
            code = e.status
            raise
        finally:
            if resp is not None:
                code = resp.status
            if watch:
                metrics.ended_longrunning(key)
            if not request.get("proxied"):
                metrics.observe(key, code, time.perf_counter() - started)

    def storage_object_counts(self) -> dict[str, int]:
        """Objects per stored resource ("configmaps", "apiservices.apiregistration.k8s.io"), as
        the watch caches hold them now; one entry per resource, whatever its versions."""
        counts: dict[str, int] = {}
        for (group, _, plural), registry in self.registries.items():
            cacher = getattr(registry, "cacher", None)
            if "/" not in plural and isinstance(cacher, Cacher):
                counts[f"{plural}.{group}" if group else plural] = cacher.count()
        return counts

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        text = self.request_metrics.render() + storage_objects_text(self.storage_object_counts())
        if self.fast_lane is not None:
            text += self.fast_lane.metrics_text()
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        info: RequestInfo = request["info"]
        path = request.path.rstrip("/") or "/"
        for delegate in self.delegates:
            resp = await delegate(request, info)
            if resp is not None:
                return resp
        if info.is_resource_request:
            return await self.resource_handler.handle(request, info)
        handler = self.non_resource.get(path)
        if handler is not None:
            return await handler(request)
        for endpoint in ("healthz", "livez", "readyz"):
            if path == "/" + endpoint:
                return await self.health.handle(request, endpoint)
            if path.startswith(f"/{endpoint}/"):
                return await self.health.handle(request, endpoint, path.split("/", 2)[2])
        if path == "/version":
            return raw_json_response(self.version_info)
        if path in ("/api", "/apis") or info.api_prefix:
            return await self._discovery(request, info)
        if path == "/":
            return raw_json_response({"paths": sorted(self._root_paths())})
        raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", {})

    def _root_paths(self) -> set[str]:
        paths = {"/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version", "/metrics",
                 "/openapi/v2", "/openapi/v3"}
        for d in self.defs:
            if d.group:
                paths.add(f"/apis/{d.group}")
                paths.add(f"/apis/{d.group}/{d.version}")
        return paths | set(self.non_resource)

    async def _discovery(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed()
        choice = negotiation.negotiate(request)
        json_choice = negotiation.PRETTY if choice.pretty else None  # discovery is always JSON here
        path = request.path.rstrip("/")
        if path in ("/api", "/apis") and choice.as_kind == "APIGroupDiscoveryList":
            doc = await self.discovery.aggregated(path[1:])
            content_type = negotiation.AGGREGATED_DISCOVERY_V2
            if choice.as_version == "v2beta1":  # what kubectl before 1.30 asks for first
                doc = {**doc, "apiVersion": "apidiscovery.k8s.io/v2beta1"}
                content_type = content_type.replace("v=v2;", "v=v2beta1;")
            tag = disco.etag(doc)
            headers = {"ETag": tag, "Vary": "Accept", "Content-Type": content_type}
            if request.headers.get("If-None-Match") == tag:
                return web.Response(status=304, headers=headers)
            body, _ = negotiation.encode(doc, json_choice)
            return web.Response(body=body, headers=headers)
        if path == "/api":
            return json_response(disco.api_versions(self.server_address), choice=json_choice)
        if path == "/apis":
            return json_response(await self.discovery.group_list(), choice=json_choice)
        if info.api_prefix == "api" and info.api_version and not info.is_resource_request:
            doc = await self.discovery.resource_list("", info.api_version)
        elif info.api_prefix == "apis" and info.api_group and not info.api_version:
            doc = await self.discovery.group(info.api_group)
        elif info.api_prefix == "apis" and info.api_version:
            doc = await self.discovery.resource_list(info.api_group, info.api_version)
        else:
            doc = None
        if doc is None:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", {})
        return json_response(doc, choice=json_choice)


def _api_target(target: str) -> bool:
    return target.startswith(("/api/", "/apis/"))


class LocalDiscovery:
    """Discovery of the resources this server serves itself. The aggregator
    wraps it to merge in remote groups."""

    def __init__(self, server: GenericAPIServer):
        self.server = server

    def local_groups(self) -> dict[str, dict[str, list[ResourceDef]]]:
        groups: dict[str, dict[str, list[ResourceDef]]] = {}
        for d in self.server.defs:
            groups.setdefault(d.group, {}).setdefault(d.version, []).append(d)
        return groups

    def ordered_versions(self, group: str, versions: list[str]) -> list[str]:
        from kplane.apimachinery.versions import sort_versions

        return sort_versions(versions)

    def ordered_groups(self) -> list[str]:
        groups = [g for g in self.local_groups() if g]
        prio = self.server.group_priority
        # Higher groupPriorityMinimum first, then by name, as upstream sorts APIServices.
        return sorted(groups, key=lambda g: (-prio.get(g, 1000), g))

    async def group_list(self) -> dict[str, Any]:
        local = self.local_groups()
        return disco.api_group_list([disco.api_group(g, self.ordered_versions(g, list(local[g])))
                                     for g in self.ordered_groups()])

    async def group(self, name: str) -> dict[str, Any] | None:
        local = self.local_groups()
        if name not in local or not name:
            return None
        return disco.api_group(name, self.ordered_versions(name, list(local[name])))

    async def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        defs = self.local_groups().get(group, {}).get(version)
        if not defs:
            return None
        return disco.api_resource_list(f"{group}/{version}" if group else version, defs)

    async def aggregated(self, prefix: str) -> dict[str, Any]:
        local = self.local_groups()
        if prefix == "api":
            core = local.get("", {})
            return disco.aggregated_list([disco.aggregated_group("", [
                disco.aggregated_version(v, core[v]) for v in self.ordered_versions("", list(core))])] if core
                else [])
        items = []
        for g in self.ordered_groups():
            versions = self.ordered_versions(g, list(local[g]))
            items.append(disco.aggregated_group(g, [disco.aggregated_version(v, local[g][v]) for v in versions]))
        return disco.aggregated_list(items)


# How long a connection's express decision is reused (GenericAPIServer._express_verdict).
EXPRESS_VERDICT_SECONDS = 1.0


class _ExpressVerdict(NamedTuple):
    headers: Any  # the header block's parsed headers (fastpath._Head): the same object while it repeats
    method: str
    raw_path: str
    revision: Any  # the authorizer's revision it was decided at
    expires: float  # time.monotonic()
    info: RequestInfo
    user: UserInfo
    attrs: RequestAttributes


def _attributes(user: UserInfo, info: RequestInfo) -> RequestAttributes:
    return RequestAttributes(user=user, verb=info.verb, is_resource_request=info.is_resource_request,
                             path=info.path, api_group=info.api_group, api_version=info.api_version,
                             resource=info.resource, subresource=info.subresource, namespace=info.namespace,
                             name=info.name)


def forbidden_message(attrs: RequestAttributes, reason: str = "") -> str:
    """Upstream's forbidden message (endpoints/handlers/responsewriters)."""
    user = attrs.user.name
    if not attrs.is_resource_request:
        msg = f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
        msg = f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}"'
        if attrs.namespace:
            msg += f' in the namespace "{attrs.namespace}"'
        else:
            msg += " at the cluster scope"
    if reason:
        msg += ": " + reason
    return msg


def storage_status(e: StorageError) -> errors.StatusError:
    """Storage failures a request can hit, as upstream's apiserver reports them."""
    if isinstance(e, TooLargeResourceVersionError):
        return errors.resource_version_too_large(str(e))
    if isinstance(e, CompactedError):
        return errors.expired(f"too old resource version: {e.requested} ({e.compacted})")
    if isinstance(e, UnavailableError):
        return errors.service_unavailable(f"storage is unavailable: {e}")
    return errors.internal(str(e))


def forbidden_error(attrs: RequestAttributes, reason: str = "") -> errors.StatusError:
    """403 wrapped as upstream's NewForbidden: `<resource>.<group> "<name>" is forbidden: <message>`."""
    msg = forbidden_message(attrs, reason)
    if not attrs.is_resource_request:
        return errors.StatusError(403, "Forbidden", f"forbidden: {msg}", {})
    qualified = attrs.resource + (f".{attrs.api_group}" if attrs.api_group else "")
    named = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    details: dict[str, Any] = {"kind": attrs.resource}
    if attrs.name:
        details = {"name": attrs.name, **details}
    if attrs.api_group:
        details["group"] = attrs.api_group
    return errors.StatusError(403, "Forbidden", f"{named} is forbidden: {msg}", details)
