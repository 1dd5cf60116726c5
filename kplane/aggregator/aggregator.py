"""The aggregator assembled on a GenericAPIServer: the APIService API, the
proxy delegate, merged discovery, OpenAPI aggregation, the availability
controller, auto-registration, the extension-apiserver-authentication
ConfigMap and the /metrics exposition of all of it.

    aggregator = Aggregator(server, openapi=install_openapi(server), client_cert=..., client_key=...,
                            client_ca_pem=..., requestheader_ca_pem=...)
    await aggregator.start()   # after the server listens and kube-system exists
    aggregator.availability.start()   # the caller's: kplane runs it on the elected replica only
    await aggregator.stop()
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from kplane.aggregator import apiservice as apis
from kplane.aggregator import handshake
from kplane.aggregator.autoregister import AutoRegistrar
from kplane.aggregator.availability import AvailabilityController, DiscoveryProber
from kplane.aggregator.discovery import MergedDiscovery
from kplane.aggregator.endpoints import EndpointResolver, registry_lookup, registry_revision, registry_slice_lister
from kplane.aggregator.liveness import BackendLiveness
from kplane.aggregator.metrics import AggregatorMetrics
from kplane.aggregator.namespaces import RemoteContent, delete_remote_content
from kplane.aggregator.openapi import OpenAPIAggregator
from kplane.aggregator.proxy import Proxy, Target, build_target
from kplane.aio import cancel_and_wait, wait_for
from kplane.apiserver.registry import ListOptions, WriteOptions

log = logging.getLogger("kplane.aggregator")

Obj = dict[str, Any]


class Aggregator:
    def __init__(self, server: Any, *, openapi: Any = None, client_cert: str | None, client_key: str | None,
                 client_ca_pem: str = "", requestheader_ca_pem: str = "",
                 requestheader_allowed_names: list[str] | None = None,
                 feature_gates: dict[str, bool] | None = None):
        self.server = server
        self.client_cert = client_cert
        self.client_key = client_key
        self.client_ca_pem = client_ca_pem
        self.requestheader_ca_pem = requestheader_ca_pem
        self.allowed_names = requestheader_allowed_names or ["front-proxy-client"]
        gates = feature_gates or {}
        self.metrics = AggregatorMetrics()
        self.registry = server.install(apis.apiservice_def())
        self.lookup = registry_lookup(server)
        self.resolver = EndpointResolver(self.lookup, registry_slice_lister(server), registry_revision(server))
        self.proxy = Proxy(self.resolver, self.metrics)
        self.cache: dict[str, Obj] = {}
        self._specs: dict[str, Any] = {}
        self.targets: dict[str, Target] = {}
        self.discovery = MergedDiscovery(server.discovery, self.apiservices, self._fetch_for_discovery,
                                         timeout_enabled=gates.get("EnableAggregatedDiscoveryTimeout", True),
                                         group_priority=server.group_priority)
        server.discovery = self.discovery
        self.autoregister = AutoRegistrar(self.registry, server)
        self.availability = AvailabilityController(
            get=self.cache.get, names=lambda: list(self.cache), lookup=self.lookup, resolver=self.resolver,
            write_status=self._write_status, prober=DiscoveryProber(client_cert, client_key),
            metrics=self.metrics)
        self.liveness = BackendLiveness(self.resolver, self.targets.get, self.availability.enqueue)
        self.openapi: OpenAPIAggregator | None = None
        self._install_openapi(openapi)
        server.delegates.insert(0, self.proxy)
        server.express_delegate = self.proxy
        self._install_metrics()
        self._tasks: list[asyncio.Task] = []
        self._synced = asyncio.Event()
        server.on_defs_changed.append(self._defs_changed)
        server.health.add("autoregister-completion", self._autoregister_check,
                          endpoints=("healthz", "readyz"))

    # ---- public -------------------------------------------------------------------------------------

    def apiservices(self) -> list[Obj]:
        return list(self.cache.values())

    async def delete_namespace_content(self, namespace: str) -> RemoteContent:
        """For the namespace controller: the remote APIServices' content of a terminating
        namespace, deleted; what is left, and the group-versions that could not be asked."""
        return await delete_remote_content(namespace, self.apiservices(), self.targets.get, self.proxy)

    async def add_crd_group_version(self, group: str, version: str) -> None:
        """For the CRD code: a Local APIService for a CRD's group-version (crdregistration)."""
        await self.autoregister.add_crd_group_version(group, version)

    async def remove_crd_group_version(self, group: str, version: str) -> None:
        await self.autoregister.remove_crd_group_version(group, version)

    async def start(self) -> None:
        self._tasks.append(asyncio.ensure_future(self._watch_apiservices()))
        for plural in ("services", "endpoints"):
            self._tasks.append(asyncio.ensure_future(self._watch_backends(plural)))
        try:
            await wait_for(self._synced.wait(), 10)
        except TimeoutError:
            log.warning("APIService cache did not sync in 10s")
        self.liveness.start(list(self.targets))
        self.discovery.start()
        if self.openapi is not None:
            self.openapi.start()
        await self._publish_handshake()
        try:
            await self.autoregister.sync_builtin()
        except Exception:
            log.exception("APIService auto-registration failed")

    async def stop(self) -> None:
        await self.availability.stop()
        await self.liveness.stop()
        await self.discovery.stop()
        if self.openapi is not None:
            await self.openapi.stop()
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        self.proxy.close()
        self.availability.prober.close()

    # ---- watches --------------------------------------------------------------------------------------

    async def _watch_apiservices(self) -> None:
        while True:
            try:
                fresh: dict[str, Obj] = {}
                listed = await self.registry.list("", ListOptions())
                for obj in listed.items:
                    fresh[obj["metadata"]["name"]] = obj
                self._replace_all(fresh)
                self._synced.set()
                async for ev in self.registry.watch("", ListOptions(resource_version=listed.resource_version),
                                                    send_initial_events=False):
                    if ev.type in ("ADDED", "MODIFIED"):
                        self._upsert(ev.object)
                    elif ev.type == "DELETED":
                        self._delete(ev.object["metadata"]["name"])
                    elif ev.type == "ERROR":
                        break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("APIService watch failed; re-listing")
            await asyncio.sleep(0.5)

    async def _watch_backends(self, plural: str) -> None:
        while True:
            reg = self.server.registries.get(("", "v1", plural))
            if reg is None:
                await asyncio.sleep(2)
                continue
            try:
                listed = await reg.list("", ListOptions())
                async for ev in reg.watch("", ListOptions(resource_version=listed.resource_version),
                                          send_initial_events=False):
                    m = ev.object.get("metadata") or {}
                    if ev.type in ("ADDED", "MODIFIED", "DELETED"):
                        self.availability.enqueue_for_service(m.get("namespace", ""), m.get("name", ""))
                        for name, obj in self.cache.items():
                            ref = apis.service_ref(obj)
                            if ref and ref.get("namespace") == m.get("namespace") and \
                                    ref.get("name") == m.get("name"):
                                self.discovery.mark_dirty(name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s watch failed; retrying", plural)
            await asyncio.sleep(0.5)

    def _replace_all(self, fresh: dict[str, Obj]) -> None:
        for name in list(self.cache):
            if name not in fresh:
                self._delete(name)
        for obj in fresh.values():
            self._upsert(obj)

    def _upsert(self, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        self.cache[name] = obj
        group, version = apis.spec(obj).get("group", ""), apis.spec(obj).get("version", "")
        old_key = self._specs.get(name)
        spec_key = (repr(apis.spec(obj)),)
        old = self.targets.get(name)
        was_available = old.available if old is not None else None
        if apis.is_local(obj):
            self.targets.pop(name, None)
            self.proxy.targets.pop((group, version), None)
            self.liveness.untrack(name)
        elif old_key != spec_key or old is None:
            target = build_target(obj, self.client_cert, self.client_key)
            self.targets[name] = target
            self.proxy.targets[(group, version)] = target
            self.liveness.track(name)
        else:
            old.available = apis.is_available(obj)
        self._specs[name] = spec_key
        self.discovery.set_apiservices(self.apiservices())
        if old_key is not None and (apis.is_available(obj) or was_available):
            self.discovery.mark_dirty(name)  # upstream's AddAPIService: refetch (or go Stale) on a change
        self.availability.enqueue(name)
        if self.openapi is not None:
            self.openapi.changed()

    def _delete(self, name: str) -> None:
        obj = self.cache.pop(name, None)
        self._specs.pop(name, None)
        self.targets.pop(name, None)
        self.liveness.untrack(name)
        if obj is not None:
            key = (apis.spec(obj).get("group", ""), apis.spec(obj).get("version", ""))
            t = self.proxy.targets.get(key)
            if t is not None and t.name == name:
                del self.proxy.targets[key]
        self.discovery.set_apiservices(self.apiservices())
        self.availability.enqueue(name)
        if self.openapi is not None:
            self.openapi.changed()

    async def _write_status(self, name: str, status: Obj) -> None:
        def mutate(old: Obj) -> Obj:
            old["status"] = status
            return old

        await self.registry.patch("", name, mutate, WriteOptions(subresource="status",
                                                                 field_manager="kube-apiserver"))

    async def _fetch_for_discovery(self, st: Any, path: str, headers: dict[str, str]
                                   ) -> tuple[int, dict[str, str], bytes]:
        target = self.targets.get(st.name)
        if target is None:
            raise RuntimeError(f"no target for {st.name}")
        return await self.proxy.fetch(target, path, headers)

    # ---- auto-registration ----------------------------------------------------------------------------

    def _defs_changed(self) -> None:
        if self._synced.is_set():
            asyncio.ensure_future(self._resync_builtin())

    async def _resync_builtin(self) -> None:
        try:
            await self.autoregister.sync_builtin()
        except Exception:
            log.exception("APIService auto-registration failed")

    async def _autoregister_check(self) -> None:
        missing = [n for n in self.autoregister.wanted_builtin()
                   if n not in self.cache or not apis.is_available(self.cache[n])]
        if missing:
            raise RuntimeError(f"missing APIService: {sorted(missing)}")

    # ---- handshake ------------------------------------------------------------------------------------

    async def _publish_handshake(self) -> None:
        configmaps = self.server.registries.get(("", "v1", "configmaps"))
        if configmaps is None or not self.client_ca_pem:
            log.warning("not publishing %s/%s: no configmaps or client CA", handshake.NAMESPACE,
                        handshake.NAME)
            return
        rh = handshake.RequestHeaderConfig(self.requestheader_ca_pem, list(self.allowed_names)) \
            if self.requestheader_ca_pem else None
        for attempt in range(20):
            try:
                await handshake.publish(configmaps, handshake.configmap_data(self.client_ca_pem, rh))
                return
            except Exception as e:  # noqa: BLE001 - kube-system may not exist yet
                if attempt == 19:
                    log.warning("publishing %s failed: %s", handshake.NAME, e)
                await asyncio.sleep(0.25)

    # ---- OpenAPI and metrics --------------------------------------------------------------------------

    def _install_openapi(self, local: Any) -> None:
        """local: the server's own OpenAPI service (v2() -> bytes, v3_index() -> bytes), or None."""
        if local is None:
            return
        self.openapi = OpenAPIAggregator(local.v2, self.proxy.fetch, lambda: self.targets, self.apiservices)
        self.server.non_resource["/openapi/v2"] = self.openapi.handle_v2
        openapi = self.openapi

        async def local_index() -> bytes | None:
            return local.v3_index() if hasattr(local, "v3_index") else None

        async def v3_delegate(request: web.Request, info: Any) -> web.StreamResponse | None:
            if request.path.startswith("/openapi/v3"):
                return await openapi.handle_v3(request, local_index)
            return None

        self.server.delegates.insert(0, v3_delegate)

    def _install_metrics(self) -> None:
        existing = self.server.non_resource.get("/metrics")
        metrics = self.metrics

        async def handle(request: web.Request) -> web.StreamResponse:
            text = metrics.render()
            if existing is not None:  # the generic server's (request metrics, fast lane)
                resp = await existing(request)
                body = getattr(resp, "body", None)
                if isinstance(body, (bytes, bytearray)):
                    text = body.decode() + text
            return web.Response(text=text, content_type="text/plain", charset="utf-8",
                                headers={"X-Content-Type-Options": "nosniff"})

        self.server.non_resource["/metrics"] = handle
