"""The garbage collector: ownerReferences cascade, as kube-controller-manager's does it.

- **Background** (the default `propagationPolicy`): once none of an object's owners exists any
  more, the object is deleted (itself in the background). An owner counts as absent only after a
  live read finds no object of that kind and name with that uid; an owner of a kind kplane does
  not serve, or a namespaced owner of a cluster-scoped object, is never taken for absent.
- **Foreground**: the owner carries the `foregroundDeletion` finalizer (added by the delete); its
  dependents are deleted, and the finalizer is removed once no dependent that has
  `blockOwnerDeletion: true` for it is left.
- **Orphan**: the owner carries the `orphan` finalizer; its reference is removed from every
  dependent, then the finalizer.

Upstream keeps a graph updated by informers on every resource. kplane's watch caches already hold
every object, so a sweep reads them directly: it runs shortly after any deletion or any new object
with ownerReferences (a cache listener wakes it), and every RESYNC_SECONDS regardless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kplane.aio import wait_for
from kplane.apimachinery import errors
from kplane.apiserver.registry import Registry, WriteOptions
from kplane.apiserver.server import GenericAPIServer
from kplane.controlplane.controller import Controller
from kplane.storage.cacher import CacheEvent

log = logging.getLogger("kplane.garbagecollector")

Obj = dict[str, Any]

RESYNC_SECONDS = 30.0
_SETTLE_SECONDS = 0.2  # a burst of deletions (a namespace, a cascade) is handled by one sweep
_MANAGER = "kplane-garbage-collector"


class GarbageCollector(Controller):
    def __init__(self, server: GenericAPIServer):
        super().__init__()
        self.server = server
        self._wake = asyncio.Event()
        self._listening: set[int] = set()
        self._listen()
        server.on_defs_changed.append(self._listen)  # caches of CRDs installed later

    def _listen(self) -> None:
        for cacher in list(self.server.cachers.values()):
            if id(cacher) not in self._listening:
                self._listening.add(id(cacher))
                cacher.listeners.append(self._on_event)

    def _on_event(self, event: CacheEvent) -> None:
        meta = event.obj.get("metadata", {})
        if event.type == "DELETED" or meta.get("deletionTimestamp") or (
                event.type == "ADDED" and meta.get("ownerReferences")):  # (its owner may be gone already)
            self._wake.set()

    async def _run(self) -> None:
        self._wake.set()  # one sweep at start: what happened while no replica collected
        while True:
            try:
                await wait_for(self._wake.wait(), RESYNC_SECONDS)
            except TimeoutError:
                pass
            await asyncio.sleep(_SETTLE_SECONDS)
            self._wake.clear()
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a controller keeps going; the next sweep retries
                log.exception("garbage collection sweep failed")

    # ---- one pass ----------------------------------------------------------------------------------

    async def sweep(self) -> None:
        objects: list[tuple[Registry, Obj]] = []
        for prefix, cacher in list(self.server.cachers.items()):
            reg = self._registry_for_prefix(prefix)
            if reg is not None:
                objects.extend((reg, obj) for _, obj in cacher.snapshot())
        uids = {obj["metadata"].get("uid") for _, obj in objects}
        dependents: dict[str, list[tuple[Registry, Obj]]] = {}
        for reg, obj in objects:
            for ref in obj["metadata"].get("ownerReferences") or []:
                dependents.setdefault(ref.get("uid", ""), []).append((reg, obj))

        for reg, obj in objects:
            m = obj["metadata"]
            if m.get("deletionTimestamp"):
                finalizers = m.get("finalizers") or []
                if "orphan" in finalizers:
                    await self._orphan(reg, obj, dependents.get(m.get("uid", ""), []))
                elif "foregroundDeletion" in finalizers:
                    await self._foreground(reg, obj, dependents.get(m.get("uid", ""), []))
                continue
            refs = m.get("ownerReferences") or []
            if refs and not any(ref.get("uid") in uids for ref in refs) and await self._owners_absent(m, refs):
                await self._delete(reg, obj)

    async def _orphan(self, reg: Registry, owner: Obj, dependents: list[tuple[Registry, Obj]]) -> None:
        uid = owner["metadata"]["uid"]
        for dep_reg, dep in dependents:
            def drop_ref(obj: Obj, uid: str = uid) -> Obj:
                refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                if refs:
                    obj["metadata"]["ownerReferences"] = refs
                else:
                    obj["metadata"].pop("ownerReferences", None)
                return obj

            await self._patch(dep_reg, dep, drop_ref)
        await self._remove_finalizer(reg, owner, "orphan")

    async def _foreground(self, reg: Registry, owner: Obj, dependents: list[tuple[Registry, Obj]]) -> None:
        uid = owner["metadata"]["uid"]
        blocking = 0
        for dep_reg, dep in dependents:
            if any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in dep["metadata"]["ownerReferences"]):
                blocking += 1
            if not dep["metadata"].get("deletionTimestamp"):
                await self._delete(dep_reg, dep)
        if not blocking:
            await self._remove_finalizer(reg, owner, "foregroundDeletion")
        # else: the dependents' deletions wake the next sweep, which finds them gone

    async def _owners_absent(self, meta: Obj, refs: list[Obj]) -> bool:
        """Whether a live read confirms that none of the owners exists (the caches may lag)."""
        for ref in refs:
            reg = self._registry_for_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
            if reg is None:
                return False  # a kind this server does not serve: cannot tell, keep the dependent
            if reg.rdef.namespaced and not meta.get("namespace"):
                return False  # a namespaced owner of a cluster-scoped object cannot be resolved (upstream)
            namespace = meta.get("namespace", "") if reg.rdef.namespaced else ""
            try:
                owner = await reg.get(namespace, ref.get("name", ""))
            except errors.StatusError as e:
                if e.code == 404:
                    continue
                raise
            if owner["metadata"].get("uid") == ref.get("uid"):
                return False
        return True

    # ---- writes --------------------------------------------------------------------------------------

    async def _delete(self, reg: Registry, obj: Obj) -> None:
        m = obj["metadata"]
        options = {"propagationPolicy": "Background", "preconditions": {"uid": m.get("uid")}}
        try:
            await reg.delete(m.get("namespace", ""), m["name"], options, WriteOptions(field_manager=_MANAGER))
        except errors.StatusError as e:
            if e.code not in (404, 409):  # gone already, or replaced by a new object of that name
                raise

    async def _remove_finalizer(self, reg: Registry, obj: Obj, finalizer: str) -> None:
        def without(o: Obj) -> Obj:
            o["metadata"]["finalizers"] = [f for f in o["metadata"].get("finalizers") or [] if f != finalizer]
            return o

        await self._patch(reg, obj, without)

    async def _patch(self, reg: Registry, obj: Obj, change: Callable[[Obj], Obj]) -> None:
        m = obj["metadata"]
        uid = m.get("uid")

        def apply(current: Obj) -> Obj:
            if current["metadata"].get("uid") != uid:
                raise errors.conflict(reg.rdef.plural, m["name"], reg.rdef.group, "the object was replaced")
            return change(current)

        try:
            await reg.patch(m.get("namespace", ""), m["name"], apply, WriteOptions(field_manager=_MANAGER))
        except errors.StatusError as e:
            if e.code not in (404, 409):
                raise

    # ---- lookups -------------------------------------------------------------------------------------

    def _registry_for_prefix(self, prefix: str) -> Registry | None:
        for reg in self.server.registries.values():
            if isinstance(reg, Registry) and reg.rdef.key_prefix() == prefix:
                return reg
        return None

    def _registry_for_kind(self, api_version: str, kind: str) -> Registry | None:
        group, _, version = api_version.rpartition("/")
        for reg in self.server.registries.values():
            rdef = reg.rdef
            if isinstance(reg, Registry) and rdef.kind == kind and rdef.group == group and rdef.version == version:
                return reg
        return None
