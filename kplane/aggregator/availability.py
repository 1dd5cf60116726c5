"""The APIService availability controller (kube-aggregator's local and remote
AvailableConditionController, as of kube 1.32: Services and Endpoints).

Condition `Available` reasons and messages are upstream's: Local, Passed,
ServiceNotFound, ServicePortError, EndpointsNotFound, MissingEndpoints,
FailedDiscoveryCheck. Remote APIServices are probed with GET /apis/<g>/<v>
over mutual TLS (the front-proxy client certificate, no server verification,
identity system:kube-aggregator in system:masters), 5 attempts in parallel,
each bounded by 5 s. A sync runs on every change to the APIService, its
Service or its Endpoints, every 30 s (upstream's resync), and again with
exponential backoff (5 ms .. 30 s) while the check fails.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kplane.aggregator import apiservice as apis
from kplane.aggregator.endpoints import EndpointResolver, Lookup, ResolveError, has_ready_endpoint_in_subsets
from kplane.aggregator.httpclient import BackendError, Pool, read_head
from kplane.aggregator.metrics import AggregatorMetrics
from kplane.aio import cancel_and_wait, wait_for
from kplane.apimachinery.meta import now_rfc3339

log = logging.getLogger("kplane.aggregator.availability")

Obj = dict[str, Any]
RESYNC_SECONDS = 30.0
PROBE_TIMEOUT = 5.0
PROBE_ATTEMPTS = 5
BACKOFF_BASE = 0.005
BACKOFF_MAX = 30.0


class DiscoveryProber:
    """GET https://<endpoint>/apis/<group>/<version>; None on a 2xx/3xx answer, else the error text."""

    def __init__(self, client_cert: str | None, client_key: str | None, timeout: float = PROBE_TIMEOUT):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if client_cert and client_key:
            ctx.load_cert_chain(client_cert, client_key)
        ctx.set_alpn_protocols(["http/1.1"])
        self.ctx = ctx
        self.timeout = timeout
        self.pool = Pool(connect_timeout=timeout)

    async def probe(self, host: str, port: int, path: str) -> str | None:
        url = f"https://{_host(host, port)}{path}"
        try:
            return await wait_for(self._get(host, port, path, url), self.timeout)
        except TimeoutError:
            return (f'failing or missing response from {url}: Get "{url}": context deadline exceeded '
                    f"(Client.Timeout exceeded while awaiting headers)")

    async def _get(self, host: str, port: int, path: str, url: str) -> str | None:
        try:
            conn = await self.pool.acquire(host, port, self.ctx, None, fresh=True)
        except BackendError as e:
            return f'failing or missing response from {url}: Get "{url}": {e}'
        try:
            conn.writer.write((f"GET {path} HTTP/1.1\r\nHost: {_host(host, port)}\r\n"
                               "User-Agent: kplane-aggregator\r\nX-Remote-User: system:kube-aggregator\r\n"
                               "X-Remote-Group: system:masters\r\nConnection: close\r\n\r\n").encode())
            resp = await read_head(conn, self.pool, False)
        except Exception as e:  # noqa: BLE001 - any failure is the check's answer
            return f'failing or missing response from {url}: Get "{url}": {e or "EOF"}'
        finally:
            conn.close()
        if resp.status < 200 or resp.status >= 300:
            # Upstream's check wraps this error too (available_controller.go).
            return f"failing or missing response from {url}: bad status from {url}: {resp.status}"
        return None

    def close(self) -> None:
        self.pool.close()


def _host(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class AvailabilityController:
    def __init__(self, *, get: Callable[[str], Obj | None], names: Callable[[], list[str]], lookup: Lookup,
                 resolver: EndpointResolver, write_status: Callable[[str, Obj], Awaitable[Any]],
                 prober: Any, metrics: AggregatorMetrics | None = None, resync: float = RESYNC_SECONDS,
                 workers: int = 5, now: Callable[[], str] = now_rfc3339):
        self.get = get
        self.names = names
        self.lookup = lookup
        self.resolver = resolver
        self.write_status = write_status
        self.prober = prober
        self.metrics = metrics or AggregatorMetrics()
        self.resync = resync
        self.workers = workers
        self.now = now
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty_again: set[str] = set()
        self._failures: dict[str, int] = {}
        self._delayed: dict[str, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task] = []
        self.on_change: list[Callable[[str], None]] = []

    # ---- queue (a de-duplicating work queue, as client-go's) -----------------------------------------

    def enqueue(self, name: str) -> None:
        if name in self._processing:
            self._dirty_again.add(name)
            return
        if name in self._queued:
            return
        self._queued.add(name)
        self._queue.put_nowait(name)

    def enqueue_after(self, name: str, delay: float) -> None:
        old = self._delayed.pop(name, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._delayed[name] = loop.call_later(delay, self._fire_delayed, name)

    def _fire_delayed(self, name: str) -> None:
        self._delayed.pop(name, None)
        self.enqueue(name)

    def enqueue_for_service(self, namespace: str, service: str) -> None:
        for name in self.names():
            obj = self.get(name)
            ref = apis.service_ref(obj) if obj else None
            if ref and ref.get("namespace") == namespace and ref.get("name") == service:
                self.enqueue(name)

    def start(self) -> None:
        for _ in range(self.workers):
            self._tasks.append(asyncio.ensure_future(self._worker()))
        self._tasks.append(asyncio.ensure_future(self._resync_loop()))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        for h in self._delayed.values():
            h.cancel()
        self._delayed.clear()

    async def _resync_loop(self) -> None:
        while True:
            for name in self.names():
                self.enqueue(name)
            await asyncio.sleep(self.resync)

    async def _worker(self) -> None:
        while True:
            name = await self._queue.get()
            self._queued.discard(name)
            self._processing.add(name)
            try:
                ok = await self.sync(name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("availability sync of %s failed", name)
                ok = False
            finally:
                self._processing.discard(name)
            if ok:
                self._failures.pop(name, None)
            else:
                n = self._failures.get(name, 0)
                self._failures[name] = n + 1
                self.enqueue_after(name, min(BACKOFF_BASE * (2 ** n), BACKOFF_MAX))
            if name in self._dirty_again:
                self._dirty_again.discard(name)
                self.enqueue(name)

    # ---- the check -------------------------------------------------------------------------------------

    async def compute(self, obj: Obj) -> Obj:
        """The Available condition for `obj` (without writing it)."""
        now = self.now()
        ref = apis.service_ref(obj)
        if ref is None:
            return apis.condition("True", apis.LOCAL_REASON, apis.LOCAL_MESSAGE, now)
        ns, name = ref.get("namespace", ""), ref.get("name", "")
        port = int(ref.get("port") or 443)
        svc = self.lookup("", "v1", "services", ns, name)
        if svc is None:
            return apis.condition("False", "ServiceNotFound", f'service/{name} in "{ns}" is not present', now)
        if ((svc.get("spec") or {}).get("type") or "ClusterIP") == "ClusterIP":
            port_name = None
            for p in (svc.get("spec") or {}).get("ports") or []:
                if p.get("port") == port:
                    port_name = p.get("name") or ""
                    break
            if port_name is None:
                return apis.condition("False", "ServicePortError",
                                      f'service/{name} in "{ns}" is not listening on port {port}', now)
            eps = self.lookup("", "v1", "endpoints", ns, name)
            if eps is None:
                return apis.condition("False", "EndpointsNotFound",
                                      f'cannot find endpoints for service/{name} in "{ns}"', now)
            if not has_ready_endpoint_in_subsets(eps, port_name):
                return apis.condition("False", "MissingEndpoints",
                                      f'endpoints for service/{name} in "{ns}" have no addresses with '
                                      f'port name "{port_name}"', now)
        group, version = apis.spec(obj).get("group", ""), apis.spec(obj).get("version", "")
        path = f"/api/{version}" if obj["metadata"]["name"] == "v1." else f"/apis/{group}/{version}"
        error = await self._probe(ns, name, port, path)
        if error is not None:
            return apis.condition("False", "FailedDiscoveryCheck", error, now)
        return apis.condition("True", "Passed", "all checks passed", now)

    async def _probe(self, ns: str, name: str, port: int, path: str) -> str | None:
        async def attempt() -> str | None:
            try:
                ep = self.resolver.resolve(ns, name, port)
            except ResolveError as e:
                return str(e)
            return await self.prober.probe(ep.host, ep.port, path)

        tasks = [asyncio.ensure_future(attempt()) for _ in range(PROBE_ATTEMPTS)]
        last: str | None = "no attempts"
        try:
            for fut in asyncio.as_completed(tasks):
                last = await fut
                if last is None:
                    return None
        finally:
            for t in tasks:
                t.cancel()
        return last

    async def sync(self, name: str) -> bool:
        """Recompute and (if changed) write the condition. False asks for a retry with backoff."""
        obj = self.get(name)
        if obj is None:
            self.metrics.forget(name)
            return True
        cond = await self.compute(obj)
        obj = self.get(name) or obj  # the object may have changed while we probed
        new = _copy(obj)
        apis.set_condition(new, cond)
        was = apis.is_available(obj)
        now_available = cond["status"] == "True"
        self.metrics.set_available(name, now_available)
        if new.get("status") != obj.get("status"):
            old_c = apis.get_condition(obj) or {}
            if (old_c.get("status"), old_c.get("reason"), old_c.get("message")) != \
                    (cond["status"], cond["reason"], cond["message"]):
                log.info("changing APIService availability name=%s oldStatus=%s newStatus=%s reason=%s "
                         "message=%r", name, old_c.get("status", "Unknown"), cond["status"], cond["reason"],
                         cond["message"])
            await self.write_status(name, new["status"])
            if was != now_available and not now_available:
                self.metrics.count_unavailable(name, cond["reason"])
            for cb in self.on_change:
                cb(name)
        return cond["reason"] != "FailedDiscoveryCheck"


def _copy(obj: Any) -> Any:
    import orjson

    return orjson.loads(orjson.dumps(obj))


def monotonic() -> float:
    return time.monotonic()
