"""Objects every cluster has: the `kubernetes` Service and Endpoints in
`default` (kube-apiserver's own), and a `default` ServiceAccount in every
namespace (the controller-manager's serviceaccounts controller)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from kplane.apimachinery import errors
from kplane.apiserver.registry import ListOptions, WriteOptions
from kplane.apiserver.server import GenericAPIServer
from kplane.controlplane.controller import Controller

log = logging.getLogger("kplane.defaults")

_MANAGER = WriteOptions(field_manager="kplane")


async def ensure_kubernetes_service(server: GenericAPIServer, cidr: str, address: str, port: int) -> None:
    """The `kubernetes` Service takes the first address of the service range, as upstream."""
    services = server.registry("", "v1", "services")
    endpoints = server.registry("", "v1", "endpoints")
    first_ip = str(ipaddress.ip_network(cidr).network_address + 1)
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "kubernetes", "namespace": "default",
                        "labels": {"component": "apiserver", "provider": "kubernetes"}},
           "spec": {"type": "ClusterIP", "clusterIP": first_ip, "sessionAffinity": "None",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}
    await _create_if_missing(services, svc)
    ep = {"apiVersion": "v1", "kind": "Endpoints",
          "metadata": {"name": "kubernetes", "namespace": "default",
                       "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
          "subsets": [{"addresses": [{"ip": address}],
                       "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}
    try:
        current = await endpoints.get("default", "kubernetes")
        if current.get("subsets") != ep["subsets"]:
            current["subsets"] = ep["subsets"]
            await endpoints.update("default", "kubernetes", current, _MANAGER)
    except errors.StatusError as e:
        if e.code != 404:
            raise
        await _create_if_missing(endpoints, ep)


async def _create_if_missing(registry, obj: dict) -> None:  # type: ignore[no-untyped-def]
    m = obj["metadata"]
    if registry.cacher.get(registry.rdef.key(m.get("namespace"), m["name"])) is not None:
        return  # checked first: a Service create would fail on its already-claimed ClusterIP
    try:
        await registry.create(obj["metadata"].get("namespace", ""), obj, WriteOptions(field_manager="kplane"))
    except errors.StatusError as e:
        if e.code != 409:
            raise


class ServiceAccountController(Controller):
    """Creates the `default` ServiceAccount in every active namespace."""

    def __init__(self, server: GenericAPIServer):
        super().__init__()
        self.server = server

    async def _run(self) -> None:
        namespaces = self.server.registry("", "v1", "namespaces")
        accounts = self.server.registry("", "v1", "serviceaccounts")
        while True:
            try:
                async for ev in namespaces.watch("", ListOptions()):
                    obj = ev.object
                    if ev.type not in ("ADDED", "MODIFIED") or obj["metadata"].get("deletionTimestamp"):
                        continue
                    ns = obj["metadata"]["name"]
                    if accounts.cacher.get(accounts.rdef.key(ns, "default")) is None:
                        await _create_if_missing(accounts, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                            "metadata": {"name": "default", "namespace": ns}})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("serviceaccount controller failed; restarting")
            await asyncio.sleep(1)
