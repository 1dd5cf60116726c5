"""The built-in resource types kplane serves, each declared as a ResourceDef.

One module per area; every module exposes `resources()`. Shared pieces:
schema.py (the schema DSL), meta.py (ObjectMeta), common.py (small core
structs), printing.py (Table columns), checks.py (field validation).
"""

from __future__ import annotations

from kplane.apiserver.resource import ResourceDef
from kplane.controlplane.types import (
    configmaps,
    endpoints,
    endpointslices,
    events,
    leases,
    namespaces,
    rbac,
    secrets,
    serviceaccounts,
    services,
)

_MODULES = (namespaces, configmaps, secrets, services, endpoints, serviceaccounts, events, endpointslices,
            leases, rbac)


def builtin_resources() -> list[ResourceDef]:
    """Fresh ResourceDefs for every built-in type (core/v1 first, then the named groups)."""
    defs = [rdef for module in _MODULES for rdef in module.resources()]
    for rdef in defs:
        rdef.go_typed = True  # decoded as Go structs upstream: wrong JSON types are a 400
    return defs


__all__ = ["builtin_resources"]
