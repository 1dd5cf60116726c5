"""Service -> ready endpoint addresses on the Service's target port.

kplane has no kube-proxy, so the aggregator always routes to endpoints, as
kube-apiserver does with --enable-aggregator-routing. The lookup reads the
watch caches synchronously (no await on the hot path) and spreads requests
round-robin over the ready addresses.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kplane.memo import remember

Obj = dict[str, Any]
# (group, version, plural, namespace, name) -> object or None
Lookup = Callable[[str, str, str, str, str], Obj | None]
# (namespace, service name) -> EndpointSlices of that service
SliceLister = Callable[[str, str], list[Obj]]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class ResolveError(Exception):
    pass


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


def service_port(service: Obj, port: int) -> Obj | None:
    for p in (service.get("spec") or {}).get("ports") or []:
        if p.get("port") == port:
            return p
    return None


def ready_endpoints(endpoints: Obj | None, port_name: str) -> list[Endpoint]:
    """Addresses (not notReadyAddresses) of the subsets that expose `port_name`."""
    out: list[Endpoint] = []
    if not endpoints:
        return out
    for subset in endpoints.get("subsets") or []:
        addrs = subset.get("addresses") or []
        if not addrs:
            continue
        for p in subset.get("ports") or []:
            if (p.get("name") or "") == port_name and p.get("port"):
                out.extend(Endpoint(a["ip"], int(p["port"])) for a in addrs if a.get("ip"))
                break
    return out


def ready_slice_endpoints(slices: list[Obj], port_name: str) -> list[Endpoint]:
    out: list[Endpoint] = []
    for s in slices:
        port = None
        for p in s.get("ports") or []:
            if (p.get("name") or "") == port_name and p.get("port"):
                port = int(p["port"])
                break
        if port is None:
            continue
        for e in s.get("endpoints") or []:
            ready = (e.get("conditions") or {}).get("ready")
            if ready is None or ready:
                out.extend(Endpoint(a, port) for a in e.get("addresses") or [])
    return out


def has_ready_endpoint_in_subsets(endpoints: Obj, port_name: str) -> bool:
    """The availability controller's check (1.32): any subset with addresses and a port of that name."""
    for subset in endpoints.get("subsets") or []:
        if not subset.get("addresses"):
            continue
        for p in subset.get("ports") or []:
            if (p.get("name") or "") == port_name:
                return True
    return False


class EndpointResolver:
    """`revision`, when given, changes whenever a Service, Endpoints or EndpointSlice may have
    (registry_revision): while it stands, a Service's endpoints are not looked up again."""

    def __init__(self, lookup: Lookup, list_slices: SliceLister | None = None,
                 revision: Callable[[], int] | None = None):
        self.lookup = lookup
        self.list_slices = list_slices
        self.revision = revision
        self._rr: dict[tuple[str, str, int], itertools.count] = {}
        self._memo: dict[tuple[str, str, int], tuple[Obj, Obj, list[Endpoint]]] = {}
        self._resolved: dict[tuple[str, str, int], tuple[int, list[Endpoint]]] = {}

    def endpoints_for(self, namespace: str, name: str, port: int) -> list[Endpoint]:
        svc = self.lookup("", "v1", "services", namespace, name)
        if svc is None:
            raise ResolveError(f'service "{name}" not found')
        stype = (svc.get("spec") or {}).get("type") or "ClusterIP"
        if stype == "ExternalName":
            ext = (svc.get("spec") or {}).get("externalName") or ""
            if not ext:
                raise ResolveError(f'no external name for service "{name}"')
            return [Endpoint(ext, port)]
        eps = self.lookup("", "v1", "endpoints", namespace, name)
        # The watch cache hands out the same objects until they change: their ready addresses
        # are worked out once per version of the Service and Endpoints, not on every request.
        memo = self._memo.get((namespace, name, port))
        if memo is not None and memo[0] is svc and memo[1] is eps:
            return memo[2]
        sp = service_port(svc, port)
        if sp is None:
            raise ResolveError(f"no service port {port} found for service \"{name}\"")
        port_name = sp.get("name") or ""
        found = ready_endpoints(eps, port_name)
        if found and eps is not None:  # (addresses from EndpointSlices can change without these two)
            self._memo[(namespace, name, port)] = (svc, eps, found)
        if not found and self.list_slices is not None:
            found = ready_slice_endpoints(self.list_slices(namespace, name), port_name)
        if not found:
            raise ResolveError(f'no endpoints available for service "{name}"')
        return found

    def resolve(self, namespace: str, name: str, port: int) -> Endpoint:
        key = (namespace, name, port)
        revision = self.revision() if self.revision is not None else -1
        hit = self._resolved.get(key)
        if hit is not None and hit[0] == revision >= 0:
            found = hit[1]
        else:
            found = self.endpoints_for(namespace, name, port)
            if revision >= 0:
                remember(self._resolved, key, (revision, found))
        if len(found) == 1:
            return found[0]
        counter = self._rr.setdefault(key, itertools.count())
        return found[next(counter) % len(found)]


def registry_lookup(server: Any) -> Lookup:
    """A Lookup over a GenericAPIServer's watch caches (synchronous dict reads)."""

    def lookup(group: str, version: str, plural: str, namespace: str, name: str) -> Obj | None:
        reg = server.registries.get((group, version, plural))
        if reg is None or getattr(reg, "cacher", None) is None:
            return None
        hit = reg.cacher.get(reg.rdef.key(namespace if reg.rdef.namespaced else None, name))
        return None if hit is None else hit[1]

    return lookup


def registry_revision(server: Any) -> Callable[[], int]:
    """EndpointResolver's revision over a GenericAPIServer's watch caches of Services, Endpoints
    and EndpointSlices."""
    return server.caches_revision([("", "v1", "services"), ("", "v1", "endpoints"),
                                   ("discovery.k8s.io", "v1", "endpointslices")])


def registry_slice_lister(server: Any) -> SliceLister:
    def list_slices(namespace: str, name: str) -> list[Obj]:
        reg = server.registries.get(("discovery.k8s.io", "v1", "endpointslices"))
        if reg is None or getattr(reg, "cacher", None) is None:
            return []
        entries, _, _ = reg.cacher.list(reg.rdef.key_prefix(namespace))
        return [o for _, o in entries
                if ((o.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == name]

    return list_slices
