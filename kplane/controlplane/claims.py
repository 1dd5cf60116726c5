"""Claims on numbered things in storage: one key per claimed ClusterIP or node port.

Creating a key is atomic in every store, so a value is never handed out twice, even by several
kplane replicas sharing one etcd. A claim records who holds it, so claiming again for the same
holder succeeds (a retried write claims what it already has).
"""

from __future__ import annotations

from typing import Any

import orjson

from kplane.storage.interface import KeyExistsError, KeyNotFoundError, Store


def service_owner(service: dict[str, Any]) -> dict[str, Any]:
    """The parentRef a Service's claims record (upstream's IPAddress parentRef shape)."""
    m = service["metadata"]
    return {"group": "", "resource": "services", "namespace": m.get("namespace", ""), "name": m.get("name", "")}


class Claims:
    def __init__(self, store: Store, prefix: str, kind: dict[str, str]):
        self.store = store
        self.prefix = prefix  # e.g. "/registry/ipaddresses/"
        self.kind = kind  # apiVersion and kind of the claim objects (as upstream would name them)

    def _key(self, name: str) -> str:
        return self.prefix + name

    async def claim(self, name: str, owner: dict[str, Any]) -> bool:
        """True when `name` is now held by `owner` (or already was)."""
        value = orjson.dumps({**self.kind, "metadata": {"name": name}, "spec": {"parentRef": owner}})
        try:
            await self.store.create(self._key(name), value)
            return True
        except KeyExistsError:
            return await self.holder(name) == owner

    async def holder(self, name: str) -> dict[str, Any] | None:
        kv = await self.store.get(self._key(name))
        if kv is None:
            return None
        return (orjson.loads(kv.value).get("spec") or {}).get("parentRef")

    async def taken(self, name: str) -> bool:
        return await self.store.get(self._key(name)) is not None

    async def release(self, name: str) -> None:
        try:
            await self.store.delete(self._key(name))
        except KeyNotFoundError:
            pass
