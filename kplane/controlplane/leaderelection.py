"""Leader election over a coordination.k8s.io/v1 Lease, as client-go's
tools/leaderelection does it, so that controllers that must run once run on
one kplane replica at a time.

    elector = LeaderElector(server.registry("coordination.k8s.io", "v1", "leases"), "kplane-controllers",
                            identity=default_identity(port))
    elector.add("namespace", controller.start, controller.stop)
    await elector.start()   # one attempt at once: a lone replica leads before start() returns
    await elector.stop()    # stops the controllers, then releases the Lease

The algorithm is client-go's: a candidate reads the Lease; it takes it when
nobody holds it or when the record it observed has not changed for
leaseDurationSeconds of its *own* clock (no clock comparison across
machines); every write is an update with the resourceVersion it read, so two
candidates never both win. The leader renews every retryPeriod and gives up
(stopping its controllers) when it could not renew for renewDeadline, or at
once when it sees another holder. A graceful stop releases the Lease (empty
holder, leaseDurationSeconds 1) so that another replica takes over at its
next try instead of after the lease duration.

`AlwaysLeader` is the same interface without a Lease: one process on its own
storage (SQLite) or `--leader-elect=false`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from kplane.aio import cancel_and_wait, wait_for
from kplane.apimachinery import errors
from kplane.apimachinery.meta import now_micro
from kplane.apiserver.registry import WriteOptions

log = logging.getLogger("kplane.leaderelection")

Obj = dict[str, Any]
Hook = Callable[[], Awaitable[Any] | Any] | None

LEASE_NAME = "kplane-controllers"
LEASE_NAMESPACE = "kube-system"
LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0
JITTER_FACTOR = 1.2  # client-go's acquire loop: wait.JitterUntil(retryPeriod, 1.2)
_MANAGER = "kplane-leader-election"


def default_identity(port: int | str = "") -> str:
    """client-go's `hostname_uuid`, with the serving port to tell replicas on one host apart."""
    host = socket.gethostname()
    return f"{host}:{port}_{uuid.uuid4()}" if port else f"{host}_{uuid.uuid4()}"


async def _call(hook: Hook) -> None:
    if hook is None:
        return
    result = hook()
    if inspect.isawaitable(result):
        await result


class _Controllers:
    """The start/stop hooks behind a gate, run in order (stopped in reverse)."""

    def __init__(self) -> None:
        self.hooks: list[tuple[str, Hook, Hook]] = []
        self.running = False

    def add(self, name: str, start: Hook, stop: Hook) -> bool:
        self.hooks.append((name, start, stop))
        return self.running

    async def start_one(self, name: str, start: Hook) -> None:
        try:
            await _call(start)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("msg=%r controller=%s", "starting controller failed", name)

    async def start_all(self) -> None:
        self.running = True
        for name, start, _ in list(self.hooks):
            await self.start_one(name, start)

    async def stop_all(self) -> None:
        if not self.running:
            return
        self.running = False
        for name, _, stop in reversed(list(self.hooks)):
            try:
                await _call(stop)
            except Exception:
                log.exception("msg=%r controller=%s", "stopping controller failed", name)


class AlwaysLeader:
    """No election: the controllers run from start() to stop()."""

    identity = ""

    def __init__(self) -> None:
        self._controllers = _Controllers()

    def is_leader(self) -> bool:
        return True

    def add(self, name: str, start: Hook, stop: Hook = None) -> None:
        if self._controllers.add(name, start, stop):
            asyncio.ensure_future(self._controllers.start_one(name, start))

    async def start(self) -> None:
        await self._controllers.start_all()

    async def stop(self) -> None:
        await self._controllers.stop_all()


class LeaderElector:
    """Runs the added controllers while this process holds the Lease `namespace/name`."""

    def __init__(self, leases: Any, name: str = LEASE_NAME, *, namespace: str = LEASE_NAMESPACE,
                 identity: str = "", lease_duration: float = LEASE_DURATION,
                 renew_deadline: float = RENEW_DEADLINE, retry_period: float = RETRY_PERIOD,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], str] = now_micro):
        # client-go's NewLeaderElector checks.
        if lease_duration <= renew_deadline:
            raise ValueError("leaseDuration must be greater than renewDeadline")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            raise ValueError("renewDeadline must be greater than retryPeriod*JitterFactor")
        if retry_period < 0.001:
            raise ValueError("retryPeriod must be positive")
        self.leases = leases
        self.name = name
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.now = now
        self._controllers = _Controllers()
        self._observed: Obj | None = None  # the Lease (spec and resourceVersion) last read or written
        self._observed_spec: Obj | None = None
        self._observed_time = 0.0
        self._leading = False
        self._task: asyncio.Task | None = None

    # ---- public ---------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._leading

    def add(self, name: str, start: Hook, stop: Hook = None) -> None:
        """Run `start` on becoming leader and `stop` on losing it (either may be None or a coroutine)."""
        if self._controllers.add(name, start, stop):
            asyncio.ensure_future(self._controllers.start_one(name, start))

    async def start(self) -> None:
        if await self._try_quietly():
            await self._became_leader()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        was_leading = self._leading
        await self._lost()
        if was_leading:
            await self._release()

    # ---- the loops ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            while not self._leading:
                await asyncio.sleep(self.retry_period * (1 + random.random() * JITTER_FACTOR))
                if await self._try_quietly():
                    await self._became_leader()
            await self._renew_until_lost()

    async def _renew_until_lost(self) -> None:
        while self._leading:
            await asyncio.sleep(self.retry_period)
            deadline = self.clock() + self.renew_deadline
            renewed = False
            while not renewed and self._leading:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    break
                try:
                    renewed = await wait_for(self._try_acquire_or_renew(), remaining)
                except asyncio.CancelledError:
                    raise
                except TimeoutError:
                    break
                except Exception as e:  # noqa: BLE001 - storage down, etc.: retry until the deadline
                    log.warning("msg=%r lease=%s/%s err=%r", "error renewing the lease", self.namespace,
                                self.name, str(e))
                if not renewed and self._held_by_other():
                    break  # another replica holds it now: stop at once rather than at the deadline
                if not renewed:
                    await asyncio.sleep(min(self.retry_period, max(0.0, deadline - self.clock())))
            if not renewed:
                log.warning("msg=%r lease=%s/%s identity=%s", "failed to renew the lease; stopping the "
                            "controllers", self.namespace, self.name, self.identity)
                await self._lost()

    async def _became_leader(self) -> None:
        self._leading = True
        log.info("msg=%r lease=%s/%s identity=%s", "became leader", self.namespace, self.name, self.identity)
        await self._controllers.start_all()

    async def _lost(self) -> None:
        if self._leading:
            log.info("msg=%r lease=%s/%s identity=%s", "stopped leading", self.namespace, self.name,
                     self.identity)
        self._leading = False
        await self._controllers.stop_all()

    def _held_by_other(self) -> bool:
        holder = (self._observed_spec or {}).get("holderIdentity") or ""
        return bool(holder) and holder != self.identity

    async def _try_quietly(self) -> bool:
        try:
            return await wait_for(self._try_acquire_or_renew(), self.renew_deadline)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the next period tries again
            log.warning("msg=%r lease=%s/%s err=%r", "error acquiring the lease", self.namespace, self.name,
                        str(e))
            return False

    # ---- one attempt (client-go's tryAcquireOrRenew) --------------------------------------------

    def _record(self, acquire_time: str, transitions: int) -> Obj:
        now = self.now()
        return {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, round(self.lease_duration)),
                "acquireTime": acquire_time or now, "renewTime": now, "leaseTransitions": transitions}

    def _observe(self, lease: Obj) -> None:
        spec = dict(lease.get("spec") or {})
        self._observed = lease
        if spec != self._observed_spec:
            self._observed_spec = spec
            self._observed_time = self.clock()

    async def _try_acquire_or_renew(self) -> bool:
        opts = WriteOptions(field_manager=_MANAGER)
        # Fast path for the leader: update what it wrote last, without reading first.
        if self._leading and self._observed is not None and \
                (self._observed_spec or {}).get("holderIdentity") == self.identity:
            spec = self._observed_spec or {}
            lease = _with_spec(self._observed, self._record(spec.get("acquireTime") or "",
                                                             spec.get("leaseTransitions") or 0))
            try:
                written, _ = await self.leases.update(self.namespace, self.name, lease, opts)
                self._observe(written)
                return True
            except errors.StatusError as e:
                if e.code not in (404, 409):
                    raise
        try:
            current = await self.leases.get(self.namespace, self.name)
        except errors.StatusError as e:
            if e.code != 404:
                raise
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": self.name, "namespace": self.namespace},
                     "spec": self._record("", 0)}
            try:
                created = await self.leases.create(self.namespace, lease, opts)
            except errors.StatusError as e2:
                if e2.code == 409:
                    return False
                raise
            self._observe(created)
            return True
        self._observe(current)
        spec = self._observed_spec or {}
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self._observed_time + duration > self.clock():
            return False  # held, and renewed within the lease duration as this process observed it
        if holder == self.identity:
            record = self._record(spec.get("acquireTime") or "", spec.get("leaseTransitions") or 0)
        else:
            record = self._record("", (spec.get("leaseTransitions") or 0) + 1)
        try:
            written, _ = await self.leases.update(self.namespace, self.name, _with_spec(current, record), opts)
        except errors.StatusError as e:
            if e.code in (404, 409):
                return False  # someone else wrote first
            raise
        if holder != self.identity:
            log.info("msg=%r lease=%s/%s identity=%s previous=%s", "acquired the lease", self.namespace,
                     self.name, self.identity, holder or "<none>")
        self._observe(written)
        return True

    async def _release(self) -> None:
        """client-go's release(): an empty holder and a 1 s duration, so the next candidate takes over."""
        if self._observed is None or (self._observed_spec or {}).get("holderIdentity") != self.identity:
            return
        spec = self._observed_spec or {}
        now = self.now()
        record = {"holderIdentity": "", "leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now,
                  "leaseTransitions": spec.get("leaseTransitions") or 0}
        try:
            written, _ = await wait_for(self.leases.update(
                self.namespace, self.name, _with_spec(self._observed, record), WriteOptions(field_manager=_MANAGER)),
                self.retry_period)
            self._observe(written)
            log.info("msg=%r lease=%s/%s identity=%s", "released the lease", self.namespace, self.name,
                     self.identity)
        except Exception as e:  # noqa: BLE001 - others take over after the lease duration instead
            log.warning("msg=%r lease=%s/%s err=%r", "failed to release the lease", self.namespace, self.name,
                        str(e))


def _with_spec(lease: Obj, spec: Obj) -> Obj:
    """`lease` (its metadata, with the resourceVersion that makes the update conditional) with a new spec."""
    out = orjson.loads(orjson.dumps(lease))
    out["spec"] = spec
    return out
