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
    return [rdef for module in _MODULES for rdef in module.resources()]


__all__ = ["builtin_resources"]
