"""CustomResourceDefinitions (apiextensions.k8s.io/v1), served in the same
delegation chain as the aggregator.

    crds = install_crds(plane)   # in ControlPlane.__init__, after the aggregator
    await crds.start()           # after the server listens
    await crds.stop()

Modules: types.py (the CRD kind), controller.py (names, Established,
finalization, APIServices), serving.py (CRs as ResourceDefs), schema.py
(structural validation, defaulting, pruning), cel.py (x-kubernetes-validations),
scale.py (/scale), conversion.py (None and Webhook).
"""

from __future__ import annotations

from typing import Any

from kplane.controlplane.crd import types
from kplane.controlplane.crd.controller import CRDController
from kplane.controlplane.crd.scale import ScaleDelegate


class CRDs:
    def __init__(self, server: Any, aggregator: Any = None):
        from kplane.apiserver.handlers import _write_options

        self.server = server
        self.registry = server.install(types.resource_def())
        self.controller = CRDController(server, self.registry, aggregator)
        self.registry.before_delete.append(self.controller.before_delete)
        server.delegates.append(ScaleDelegate(server.registries, _write_options))

    async def start(self) -> None:
        await self.controller.start()

    async def stop(self) -> None:
        await self.controller.stop()


def install_crds(plane: Any) -> CRDs:
    """Serve CustomResourceDefinitions on a ControlPlane (its server and aggregator)."""
    return CRDs(plane.server, getattr(plane, "aggregator", None))


__all__ = ["CRDs", "install_crds"]
