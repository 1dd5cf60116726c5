"""Noticing a remote APIService's backend go away or come back within a second.

The availability controller re-checks on changes to the APIService, its
Service and Endpoints, and every 30 s (upstream's cadence). A backend process
that dies changes none of those objects, so on its own kplane would notice only
at the next resync. This keeps one idle TLS connection (the proxy's transport:
front-proxy client certificate, caBundle, <service>.<namespace>.svc) open to
each remote APIService's backend and asks for a re-check when that connection
closes, and when a backend that refused connections accepts one again. The
Available condition itself is still decided only by the availability
controller's discovery check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

from kplane.aggregator.endpoints import EndpointResolver, ResolveError
from kplane.aio import cancel_and_wait, wait_for

log = logging.getLogger("kplane.aggregator.liveness")

CONNECT_TIMEOUT = 5.0
RETRY_SECONDS = 1.0
VERIFY_FAILED_RETRY_SECONDS = 10.0


class BackendLiveness:
    def __init__(self, resolver: EndpointResolver, target: Callable[[str], Any],
                 changed: Callable[[str], None]):
        self.resolver = resolver
        self.target = target  # name -> proxy Target or None
        self.changed = changed  # name -> None: re-check that APIService now
        self._tasks: dict[str, asyncio.Task] = {}
        self.running = False

    def start(self, names: list[str]) -> None:
        self.running = True
        for name in names:
            self.track(name)

    def track(self, name: str) -> None:
        """Watch `name` (a remote APIService); restart the watch if its target changed."""
        if not self.running:
            return
        self.untrack(name)
        self._tasks[name] = asyncio.ensure_future(self._watch(name))

    def untrack(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        self.running = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await cancel_and_wait(tasks)

    async def _watch(self, name: str) -> None:
        reachable: bool | None = None  # unknown until the first attempt
        while True:
            target = self.target(name)
            if target is None or target.ssl_context is None:
                return
            try:
                ep = self.resolver.resolve(target.namespace, target.service, target.port)
            except ResolveError:
                await asyncio.sleep(RETRY_SECONDS)  # the Endpoints watch triggers the re-check
                continue
            delay = RETRY_SECONDS
            try:
                reader, writer = await wait_for(asyncio.open_connection(
                    ep.host, ep.port, ssl=target.ssl_context, server_hostname=target.server_hostname),
                    CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as e:
                if isinstance(e, ssl.SSLCertVerificationError):
                    delay = VERIFY_FAILED_RETRY_SECONDS
                if reachable:
                    self._notify(name, "unreachable")
                reachable = False
                await asyncio.sleep(delay)
                continue
            if reachable is False:
                self._notify(name, "reachable again")
            reachable = True
            try:
                while await reader.read(4096):
                    pass  # nothing is expected; a server that talks first is simply ignored
            except (OSError, ssl.SSLError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()
            self._notify(name, "connection closed")
            await asyncio.sleep(RETRY_SECONDS)

    def _notify(self, name: str, why: str) -> None:
        log.debug("backend of APIService %s: %s; re-checking availability", name, why)
        self.changed(name)
