"""Namespace lifecycle: the admission check that refuses content in missing
or terminating namespaces, the default namespaces, and the namespace
controller that empties a terminating namespace and then finalizes it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kplane.apimachinery import errors
from kplane.apimachinery.meta import now_rfc3339
from kplane.apiserver.registry import ListOptions, Registry, WriteOptions
from kplane.apiserver.resource import ResourceDef
from kplane.apiserver.server import GenericAPIServer
from kplane.controlplane.controller import Controller

log = logging.getLogger("kplane.namespaces")

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Namespaces upstream refuses to delete.
IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")


def install_lifecycle(server: GenericAPIServer) -> None:
    namespaces = server.registry("", "v1", "namespaces")

    async def namespace_check(namespace: str, rdef: ResourceDef, name: str) -> None:
        hit = namespaces.cacher.get(namespaces.rdef.key(None, namespace))
        if hit is None:
            # The cache may lag a namespace created a moment ago by another replica.
            try:
                obj = await namespaces.get("", namespace)
            except errors.StatusError:
                raise errors.not_found("namespaces", namespace) from None
        else:
            obj = hit[1]
        if obj.get("metadata", {}).get("deletionTimestamp"):
            raise errors.namespace_terminating(rdef.plural, rdef.group, name, namespace)

    for reg in server.registries.values():
        if reg.rdef.namespaced:
            reg.namespace_check = namespace_check
    server.on_defs_changed.append(lambda: _attach_check(server, namespace_check))

    original_delete = namespaces.delete

    async def guarded_delete(namespace, name, options, opts):  # type: ignore[no-untyped-def]
        if name in IMMORTAL_NAMESPACES:
            raise errors.forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                                   "namespaces", name)
        return await original_delete(namespace, name, options, opts)

    namespaces.delete = guarded_delete  # type: ignore[method-assign]


def _attach_check(server: GenericAPIServer, check) -> None:  # type: ignore[no-untyped-def]
    for reg in server.registries.values():
        if reg.rdef.namespaced and reg.namespace_check is None:
            reg.namespace_check = check


async def ensure_default_namespaces(server: GenericAPIServer) -> None:
    namespaces = server.registry("", "v1", "namespaces")
    for name in DEFAULT_NAMESPACES:
        try:
            await namespaces.create("", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                                    WriteOptions(field_manager="kplane"))
        except errors.StatusError as e:
            if e.code != 409:
                raise


class NamespaceController(Controller):
    """Deletes everything in a terminating namespace, then removes the
    `kubernetes` finalizer so the namespace itself goes away."""

    def __init__(self, server: GenericAPIServer):
        super().__init__()
        self.server = server
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        # (namespace) -> what remote APIServices still hold there after being asked to delete it
        # (the aggregator's delete_namespace_content); None: no aggregator.
        self.remote_content: Any = None

    async def _run(self) -> None:
        namespaces = self.server.registry("", "v1", "namespaces")
        worker = asyncio.ensure_future(self._work())
        try:
            while True:
                try:
                    async for ev in namespaces.watch("", ListOptions(), bookmarks=False):
                        if ev.type in ("ADDED", "MODIFIED") and ev.object["metadata"].get("deletionTimestamp"):
                            self._queue.put_nowait(ev.object["metadata"]["name"])
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("namespace watch failed; restarting")
                await asyncio.sleep(1)
        finally:
            worker.cancel()

    async def _work(self) -> None:
        while True:
            name = await self._queue.get()
            try:
                done = await self._finalize(name)
                if not done:
                    await asyncio.sleep(0.5)
                    self._queue.put_nowait(name)
            except asyncio.CancelledError:
                raise
            except errors.StatusError as e:
                if e.code != 404:
                    log.warning("finalizing namespace %s: %s", name, e)
                    await asyncio.sleep(1)
                    self._queue.put_nowait(name)
            except Exception:
                log.exception("finalizing namespace %s", name)
                await asyncio.sleep(1)
                self._queue.put_nowait(name)

    async def _finalize(self, name: str) -> bool:
        """Returns True when the namespace needs no more work."""
        namespaces = self.server.registry("", "v1", "namespaces")
        ns = await namespaces.get("", name)
        if not ns["metadata"].get("deletionTimestamp"):
            return True
        if "kubernetes" not in (ns.get("spec", {}).get("finalizers") or []):
            return True
        opts = WriteOptions(field_manager="kplane-namespace-controller")
        remaining = 0
        held: dict[str, int] = {}  # "<resource>.<group>" -> objects that finalizers keep
        by_finalizer: dict[str, int] = {}
        seen_prefixes: set[str] = set()
        for reg in list(self.server.registries.values()):
            if not isinstance(reg, Registry):
                continue  # review APIs, computed resources: nothing stored to delete
            prefix = reg.rdef.key_prefix(name)
            if not reg.rdef.namespaced or prefix in seen_prefixes:
                continue
            seen_prefixes.add(prefix)
            listed = await reg.list(name, ListOptions())
            for obj in listed.items:
                remaining += 1
                finalizers = obj["metadata"].get("finalizers") or []
                if finalizers:
                    resource = f"{reg.rdef.plural}.{reg.rdef.group}"
                    held[resource] = held.get(resource, 0) + 1
                    for f in finalizers:
                        by_finalizer[f] = by_finalizer.get(f, 0) + 1
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    await reg.delete(name, obj["metadata"]["name"], {"propagationPolicy": "Background"}, opts)
                except errors.StatusError as e:
                    if e.code != 404:
                        raise
        failed: list[str] = []
        if self.remote_content is not None:
            remote = await self.remote_content(name)
            for resource, count in remote.remaining.items():
                held[resource] = held.get(resource, 0) + count
                remaining += count
            failed = remote.failed
        await self._report(ns, held, by_finalizer, failed)
        if remaining or failed:
            return False  # upstream too keeps a namespace Terminating while a group cannot be asked
        ns = await namespaces.get("", name)  # as _report left it
        ns["spec"]["finalizers"] = [f for f in ns["spec"]["finalizers"] if f != "kubernetes"]
        await namespaces.update("", name, ns, WriteOptions(field_manager="kplane-namespace-controller",
                                                           subresource="finalize"))
        return True

    async def _report(self, ns: dict, held: dict[str, int], by_finalizer: dict[str, int],
                      failed: list[str]) -> None:
        """The deletion's status conditions, as upstream's namespace controller writes them, so
        that `kubectl get ns -o yaml` says what a terminating namespace waits for."""
        now = now_rfc3339()
        wanted = {t: {"type": t, "status": "False", "lastTransitionTime": now, "reason": reason, "message": msg}
                  for t, (reason, msg) in _OK_CONDITIONS.items()}
        if failed:
            listed = ", ".join(f"{gv}: the server is currently unable to handle the request" for gv in sorted(failed))
            wanted["NamespaceDeletionDiscoveryFailure"].update(
                status="True", reason="DiscoveryFailed",
                message=f"Discovery failed for some groups, {len(failed)} failing: unable to retrieve the "
                        f"complete list of server APIs: {listed}")
        if held:
            listed = ", ".join(sorted(f"{r} has {n} resource instances" for r, n in held.items()))
            wanted["NamespaceContentRemaining"].update(
                status="True", reason="SomeResourcesRemain", message=f"Some resources are remaining: {listed}")
        if by_finalizer:
            listed = ", ".join(sorted(f"{f} in {n} resource instances" for f, n in by_finalizer.items()))
            wanted["NamespaceFinalizersRemaining"].update(
                status="True", reason="SomeFinalizersRemain",
                message=f"Some content in the namespace has finalizers remaining: {listed}")
        status = ns.setdefault("status", {})
        old = {c.get("type"): c for c in status.get("conditions") or []}
        changed = False
        conditions = []
        for ctype, cond in wanted.items():
            prev = old.get(ctype)
            if prev is not None and all(prev.get(k) == cond[k] for k in ("status", "reason", "message")):
                conditions.append(prev)  # unchanged: its transition time stays
            else:
                conditions.append(cond)
                changed = True
        if not changed:
            return
        status["conditions"] = conditions
        namespaces = self.server.registry("", "v1", "namespaces")
        try:
            await namespaces.update("", ns["metadata"]["name"], ns, WriteOptions(
                field_manager="kplane-namespace-controller", subresource="status"))
        except errors.StatusError as e:
            if e.code not in (404, 409):
                raise  # a conflict: the next pass reports again


# The conditions of a namespace's deletion when nothing is wrong (deletion/status_condition_utils.go).
_OK_CONDITIONS = {
    "NamespaceDeletionDiscoveryFailure": ("ResourcesDiscovered", "All resources successfully discovered"),
    "NamespaceDeletionGroupVersionParsingFailure": ("ParsedGroupVersions",
                                                    "All legacy kube types successfully parsed"),
    "NamespaceDeletionContentFailure": ("ContentDeleted",
                                        "All content successfully deleted, may be waiting on finalization"),
    "NamespaceContentRemaining": ("ContentRemoved", "All content successfully removed"),
    "NamespaceFinalizersRemaining": ("ContentHasNoFinalizers", "All content-preserving finalizers finished"),
}
