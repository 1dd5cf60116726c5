"""ClusterIP allocation for Services.

Each allocated address is claimed by creating the key
/registry/ipaddresses/<ip> (like upstream's networking.k8s.io IPAddress
objects; claims.py), so one address can never be handed out twice, even by
several kplane replicas sharing one etcd.
"""

from __future__ import annotations

import ipaddress
import random

from kplane.apimachinery import errors
from kplane.apiserver.registry import Registry, WriteOptions
from kplane.controlplane.claims import Claims, service_owner
from kplane.storage.interface import Store


class ClusterIPAllocator:
    def __init__(self, store: Store, cidr: str = "10.96.0.0/12"):
        self.claims = Claims(store, "/registry/ipaddresses/", {"apiVersion": "networking.k8s.io/v1",
                                                               "kind": "IPAddress"})
        self.network = ipaddress.ip_network(cidr)
        # Upstream reserves the network address, the broadcast address, and
        # gives the first usable address to the `kubernetes` service.
        self.first = int(self.network.network_address) + 1
        self.last = int(self.network.broadcast_address) - 1

    async def claim(self, ip: str, owner: dict) -> bool:
        return await self.claims.claim(ip, owner)

    async def allocate(self, owner: dict) -> str:
        for _ in range(256):
            ip = str(ipaddress.ip_address(random.randint(self.first, self.last)))
            if await self.claim(ip, owner):
                return ip
        raise errors.internal("failed to allocate a serviceIP: range is full")

    async def release(self, ip: str) -> None:
        await self.claims.release(ip)

    def install(self, services: Registry) -> None:
        async def before_create(obj: dict, opts: WriteOptions) -> None:
            spec = obj.setdefault("spec", {})
            if spec.get("type") == "ExternalName":
                return
            owner = service_owner(obj)
            requested = spec.get("clusterIP")
            if requested == "None":  # headless
                spec["clusterIPs"] = ["None"]
                return
            if requested:
                try:
                    addr = ipaddress.ip_address(requested)
                except ValueError:
                    raise errors.invalid("Service", owner["name"], [errors.field_invalid(
                        "spec.clusterIPs[0]", requested, "must be a valid IP address, (e.g. 10.9.8.7 or "
                        "2001:db8::ffff)")]) from None
                if addr not in self.network:
                    raise errors.invalid("Service", owner["name"], [errors.field_invalid(
                        "spec.clusterIPs[0]", requested, f"failed to allocate IP {requested}: the provided "
                        f"IP ({requested}) is not in the valid range. The range of valid IPs is "
                        f"{self.network}")])
                if opts.dry_run:
                    return
                if not await self.claim(requested, owner):
                    raise errors.invalid("Service", owner["name"], [errors.field_invalid(
                        "spec.clusterIPs[0]", requested, f"failed to allocate IP {requested}: provided IP "
                        f"is already allocated")])
                opts.rollbacks.append(lambda: self.release(requested))
                spec["clusterIPs"] = [requested]
                return
            if opts.dry_run:
                return
            ip = await self.allocate(owner)
            opts.rollbacks.append(lambda: self.release(ip))
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]

        async def after_delete(obj: dict) -> None:
            for ip in obj.get("spec", {}).get("clusterIPs") or []:
                if ip and ip != "None":
                    await self.release(ip)

        services.before_create.append(before_create)
        services.after_delete.append(after_delete)
