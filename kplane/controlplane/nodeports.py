"""NodePort allocation for Services (upstream's service node port allocator).

A NodePort or LoadBalancer Service (unless allocateLoadBalancerNodePorts is false) gets a port
from --service-node-port-range (default 30000-32767) for every port that names none, and a
LoadBalancer with externalTrafficPolicy Local a healthCheckNodePort; a port a client names must
lie in the range and be free. Each allocated port is a claim (claims.py) held by its Service, so
two Services never share one, whichever replica serves them; updates claim what they add and
give back what they drop once stored, deletion gives back all.
"""

from __future__ import annotations

import random
from typing import Any

from kplane.apimachinery import errors
from kplane.apiserver.registry import Registry, WriteOptions
from kplane.controlplane.claims import Claims, service_owner
from kplane.storage.interface import Store

DEFAULT_RANGE = "30000-32767"


def parse_range(text: str) -> tuple[int, int]:
    """--service-node-port-range: "30000-32767" (or a single port)."""
    first, sep, last = text.partition("-")
    try:
        lo, hi = int(first), int(last) if sep else int(first)
    except ValueError:
        raise ValueError(f"invalid port range {text!r}: want FIRST-LAST") from None
    if not 0 < lo <= hi <= 65535:
        raise ValueError(f"invalid port range {text!r}")
    return lo, hi


def _wanted(spec: dict[str, Any]) -> bool:
    t = spec.get("type")
    return t == "NodePort" or (t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True))


def _health_check_wanted(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def node_ports(obj: dict[str, Any]) -> set[int]:
    """The node ports a stored Service holds."""
    spec = obj.get("spec") or {}
    held = {p["nodePort"] for p in spec.get("ports") or [] if isinstance(p.get("nodePort"), int) and p["nodePort"]}
    if isinstance(spec.get("healthCheckNodePort"), int) and spec["healthCheckNodePort"]:
        held.add(spec["healthCheckNodePort"])
    return held


class NodePortAllocator:
    def __init__(self, store: Store, port_range: str = DEFAULT_RANGE):
        self.first, self.last = parse_range(port_range)
        self.claims = Claims(store, "/registry/servicenodeports/", {"apiVersion": "v1", "kind": "ServiceNodePort"})

    @property
    def range_text(self) -> str:
        return f"{self.first}-{self.last}"

    async def _claim_requested(self, port: int, owner: dict[str, Any], path: str, opts: WriteOptions) -> None:
        if not self.first <= port <= self.last:
            raise _invalid(owner, path, port, "provided port is not in the valid range. The range of valid ports "
                                              f"is {self.range_text}")
        if opts.dry_run:
            holder = await self.claims.holder(str(port))
            if holder is not None and holder != owner:
                raise _invalid(owner, path, port, "provided port is already allocated")
            return
        if not await self.claims.claim(str(port), owner):
            raise _invalid(owner, path, port, "provided port is already allocated")
        opts.rollbacks.append(lambda: self.claims.release(str(port)))

    async def _allocate(self, owner: dict[str, Any], opts: WriteOptions) -> int:
        size = self.last - self.first + 1
        start = random.randrange(size)
        for i in range(size):
            port = self.first + (start + i) % size
            if opts.dry_run:
                if not await self.claims.taken(str(port)):
                    return port
            elif await self.claims.claim(str(port), owner):
                opts.rollbacks.append(lambda name=str(port): self.claims.release(name))
                return port
        raise errors.internal("failed to allocate a nodePort: range is full")

    async def _fill(self, obj: dict[str, Any], held: set[int], opts: WriteOptions) -> None:
        """Claim the node ports `obj` names that are not in `held` (its owner's already), and
        allocate the ones it needs and does not name."""
        spec = obj.get("spec") or {}
        owner = service_owner(obj)
        wanted = _wanted(spec)
        claimed: set[int] = set()  # within one Service a port number serves several protocols
        for i, port in enumerate(spec.get("ports") or []):
            number = port.get("nodePort")
            if number:
                if isinstance(number, int) and number not in held and number not in claimed:
                    await self._claim_requested(number, owner, f"spec.ports[{i}].nodePort", opts)
                    claimed.add(number)
            elif wanted:
                port["nodePort"] = await self._allocate(owner, opts)
                claimed.add(port["nodePort"])
        if _health_check_wanted(spec):
            number = spec.get("healthCheckNodePort")
            if number:
                if isinstance(number, int) and number not in held and number not in claimed:
                    await self._claim_requested(number, owner, "spec.healthCheckNodePort", opts)
            else:
                spec["healthCheckNodePort"] = await self._allocate(owner, opts)

    def install(self, services: Registry) -> None:
        async def before_create(obj: dict[str, Any], opts: WriteOptions) -> None:
            await self._fill(obj, set(), opts)

        async def before_update(new: dict[str, Any], old: dict[str, Any], opts: WriteOptions) -> None:
            await self._fill(new, node_ports(old), opts)

        async def after_update(new: dict[str, Any], old: dict[str, Any]) -> None:
            for port in node_ports(old) - node_ports(new):
                await self.claims.release(str(port))

        async def after_delete(obj: dict[str, Any]) -> None:
            for port in node_ports(obj):
                await self.claims.release(str(port))

        services.before_create.append(before_create)
        services.before_update.append(before_update)
        services.after_update.append(after_update)
        services.after_delete.append(after_delete)


def _invalid(owner: dict[str, Any], path: str, port: int, detail: str) -> errors.StatusError:
    return errors.invalid("Service", owner["name"], [errors.field_invalid(path, port, detail)])
