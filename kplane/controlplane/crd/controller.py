"""The CRD controllers of apiextensions-apiserver, in one reconcile loop:

- naming: status.acceptedNames and the NamesAccepted condition (a name
  already accepted by another CRD of the group, or served by a built-in
  resource of the group, is a conflict: PluralConflict, SingularConflict,
  ShortNamesConflict, KindConflict, ListKindConflict);
- establishing: the served versions installed as ResourceDefs (routes,
  discovery and OpenAPI follow), a Local APIService per group-version, then
  Established=True;
- finalizing: a CRD being deleted carries customresourcecleanup; its custom
  resources are deleted (Terminating condition), then the finalizer is removed
  and the CRD's serving and APIServices go with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from kplane.aggregator.endpoints import EndpointResolver, ResolveError, registry_lookup, registry_slice_lister
from kplane.aio import cancel_and_wait
from kplane.apimachinery import errors
from kplane.apimachinery.meta import now_rfc3339
from kplane.apiserver.registry import ListOptions, Registry, WriteOptions
from kplane.apiserver.resource import ResourceDef
from kplane.controlplane.crd.conversion import Converter
from kplane.controlplane.crd.serving import CustomResourceRegistry, build_defs, served_versions, storage_version
from kplane.controlplane.crd.types import CLEANUP_FINALIZER

log = logging.getLogger("kplane.crd")

Obj = dict[str, Any]
MANAGER = "kube-apiserver"
_NAME_FIELDS = (("plural", "PluralConflict"), ("singular", "SingularConflict"),
                ("shortNames", "ShortNamesConflict"), ("kind", "KindConflict"), ("listKind", "ListKindConflict"))
DELETION_WAIT = 60.0


def set_condition(conditions: list[Obj], ctype: str, status: str, reason: str, message: str) -> list[Obj]:
    out = [dict(c) for c in conditions if isinstance(c, dict)]
    for c in out:
        if c.get("type") == ctype:
            if c.get("status") != status:
                c["lastTransitionTime"] = now_rfc3339()
            c.update(status=status, reason=reason, message=message)
            return out
    out.append({"type": ctype, "status": status, "lastTransitionTime": now_rfc3339(), "reason": reason,
                "message": message})
    return out


def condition(crd: Obj, ctype: str) -> Obj | None:
    for c in (crd.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def _names_of(names: Obj) -> dict[str, set[str]]:
    return {"plural": {names.get("plural", "")}, "singular": {names.get("singular", "")},
            "shortNames": set(names.get("shortNames") or []), "kind": {names.get("kind", "")},
            "listKind": {names.get("listKind", "")}}


class CRDController:
    def __init__(self, server: Any, registry: Registry, aggregator: Any = None):
        self.server = server
        self.registry = registry
        self.aggregator = aggregator
        resolver = EndpointResolver(registry_lookup(server), registry_slice_lister(server))
        self.converter = Converter(lambda ns, name, port: _endpoint(resolver, ns, name, port))
        # CRD name -> (fingerprint, defs installed)
        self.served: dict[str, tuple[bytes, list[ResourceDef]]] = {}
        self.apiservices: dict[str, set[tuple[str, str]]] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._deleting: set[str] = set()
        # Every replica serves every CRD; only the leader writes status and finalizes (see leaderelection.py).
        self.may_write: Callable[[], bool] = lambda: True

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        listed = await self.registry.list("", ListOptions())
        for crd in listed.items:
            await self._reconcile_quietly(crd["metadata"]["name"])
        self._tasks.append(asyncio.ensure_future(self._watch(listed.resource_version)))
        self._tasks.append(asyncio.ensure_future(self._work()))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        await self.converter.close()

    async def _watch(self, rv: str) -> None:
        while True:
            try:
                async for ev in self.registry.watch("", ListOptions(resource_version=rv), send_initial_events=False):
                    if ev.type == "ERROR":
                        break
                    if ev.type == "BOOKMARK":
                        continue
                    rv = ev.object["metadata"].get("resourceVersion", rv)
                    name = ev.object["metadata"]["name"]
                    self._queue.put_nowait(name)
                    group = (ev.object.get("spec") or {}).get("group")
                    for other in self._crds_in_group(group):
                        if other != name:
                            self._queue.put_nowait(other)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("CRD watch failed; re-listing")
            await asyncio.sleep(0.5)
            listed = await self.registry.list("", ListOptions())
            rv = listed.resource_version
            for crd in listed.items:
                self._queue.put_nowait(crd["metadata"]["name"])
            for name in list(self.served):
                self._queue.put_nowait(name)

    def requeue_all(self) -> None:
        """Reconcile every CRD again (a replica that just became leader writes what it skipped)."""
        entries, _, _ = self.registry.cacher.list(self.registry.rdef.key_prefix())
        for _, crd in entries:
            self._queue.put_nowait(crd["metadata"]["name"])

    def _crds_in_group(self, group: str | None) -> list[str]:
        if not group:
            return []
        entries, _, _ = self.registry.cacher.list(self.registry.rdef.key_prefix())
        return [obj["metadata"]["name"] for _, obj in entries if (obj.get("spec") or {}).get("group") == group]

    async def _work(self) -> None:
        while True:
            name = await self._queue.get()
            await self._reconcile_quietly(name)

    async def _reconcile_quietly(self, name: str) -> None:
        try:
            await self.reconcile(name)
        except asyncio.CancelledError:
            raise
        except errors.StatusError as e:
            if e.code == 409:
                self._queue.put_nowait(name)
            else:
                log.warning("reconciling CRD %s: %s", name, e)
        except Exception:
            log.exception("reconciling CRD %s", name)

    # ---- reconcile -------------------------------------------------------------------------------

    async def reconcile(self, name: str) -> None:
        try:
            crd = await self.registry.get("", name)
        except errors.StatusError as e:
            if e.code != 404:
                raise
            await self._unserve(name)
            return
        if crd["metadata"].get("deletionTimestamp"):
            for reg in self.registries_of(name):
                reg.terminating = True
            if name not in self._deleting and self.may_write():
                self._deleting.add(name)
                asyncio.ensure_future(self._finalize(name))
            return
        status = crd.get("status") or {}
        accepted, names_cond = self._accept_names(crd)
        conditions = list(status.get("conditions") or [])
        conditions = set_condition(conditions, "NamesAccepted", *names_cond)
        established = condition(crd, "Established")
        if names_cond[0] != "True":
            if not established or established.get("status") != "True":
                conditions = set_condition(conditions, "Established", "False", "NotAccepted",
                                           "not all names are accepted")
        new_status = dict(status)
        new_status["acceptedNames"] = accepted
        new_status["conditions"] = conditions
        crd_view = dict(crd, status=new_status)
        if names_cond[0] == "True" or (established and established.get("status") == "True"):
            await self._serve(crd_view)
            conditions = set_condition(conditions, "Established", "True", "InitialNamesAccepted",
                                       "the initial names have been accepted")
            new_status["conditions"] = conditions
        if new_status != status and self.may_write():
            await self._write_status(name, new_status)

    def _accept_names(self, crd: Obj) -> tuple[Obj, tuple[str, str, str]]:
        spec = crd.get("spec") or {}
        requested = spec.get("names") or {}
        current = dict((crd.get("status") or {}).get("acceptedNames") or {})
        taken = self._taken_names(spec.get("group", ""), crd["metadata"]["name"])
        accepted = dict(current)
        cond: tuple[str, str, str] | None = None
        for key, reason in _NAME_FIELDS:
            want = requested.get(key)
            values = set(want or []) if key == "shortNames" else {want} if want else set()
            have = set(current.get(key) or []) if key == "shortNames" else {current.get(key)}
            conflicts = sorted(v for v in values - have if v in taken[key] or
                               (key == "shortNames" and v in taken["plural"] | taken["singular"]))
            if conflicts:
                if cond is None:
                    cond = ("False", reason, f'"{conflicts[0]}" is already in use')
                continue
            if want is not None:
                accepted[key] = list(want) if key == "shortNames" else want
            elif key in accepted and key != "plural" and key != "kind":
                accepted.pop(key)
        if "categories" in requested:
            accepted["categories"] = list(requested["categories"])
        else:
            accepted.pop("categories", None)
        accepted.setdefault("plural", "")
        accepted.setdefault("kind", "")
        return accepted, cond or ("True", "NoConflicts", "no conflicts found")

    def _taken_names(self, group: str, own: str) -> dict[str, set[str]]:
        taken: dict[str, set[str]] = {k: set() for k, _ in _NAME_FIELDS}
        entries, _, _ = self.registry.cacher.list(self.registry.rdef.key_prefix())
        for _, other in entries:
            if other["metadata"]["name"] == own or (other.get("spec") or {}).get("group") != group:
                continue
            for key, values in _names_of((other.get("status") or {}).get("acceptedNames") or {}).items():
                taken[key] |= {v for v in values if v}
        crd_defs = {id(d) for _, defs in self.served.values() for d in defs}
        for d in self.server.defs:
            if d.group == group and id(d) not in crd_defs and "/" not in d.plural:
                taken["plural"].add(d.plural)
                taken["singular"].add(d.singular)
                taken["kind"].add(d.kind)
                taken["listKind"].add(d.list_kind)
                taken["shortNames"] |= set(d.short_names)
        return taken

    async def _write_status(self, name: str, status: Obj) -> None:
        def mutate(old: Obj) -> Obj:
            old["status"] = status
            return old

        await self.registry.patch("", name, mutate, WriteOptions(subresource="status", field_manager=MANAGER))

    # ---- serving ---------------------------------------------------------------------------------

    async def _serve(self, crd: Obj) -> None:
        name = crd["metadata"]["name"]
        spec = crd.get("spec") or {}
        fingerprint = orjson.dumps([spec, (crd.get("status") or {}).get("acceptedNames")],
                                   option=orjson.OPT_SORT_KEYS)
        current = self.served.get(name)
        if current is not None and current[0] == fingerprint:
            return
        group = spec.get("group", "")
        wanted = {(group, v) for v in served_versions(crd)}
        for gv in sorted(wanted - self.apiservices.get(name, set())):
            await self._add_apiservice(*gv)
        if current is not None:
            for rdef in current[1]:
                await self.server.uninstall(rdef)
        installed = []
        for rdef, schema, preserve in build_defs(crd, self.converter):
            existing = self.server.registries.get((rdef.group, rdef.version, rdef.plural))
            if existing is not None and not isinstance(existing, CustomResourceRegistry):
                continue  # a built-in resource answers this path, as it does upstream (first in the chain)
            reg = self.server.install(rdef, CustomResourceRegistry)
            reg.structural_schema = schema
            reg.preserve_unknown = preserve
            installed.append(rdef)
        self.served[name] = (fingerprint, installed)
        for gv in sorted(self.apiservices.get(name, set()) - wanted):
            await self._remove_apiservice(*gv)
        self.apiservices[name] = wanted
        log.info("serving CRD %s versions=%s storage=%s", name, sorted(v for _, v in wanted),
                 storage_version(crd))

    async def _unserve(self, name: str) -> None:
        current = self.served.pop(name, None)
        if current is not None:
            for rdef in current[1]:
                await self.server.uninstall(rdef)
        for gv in sorted(self.apiservices.pop(name, set())):
            still_used = any(gv in gvs for gvs in self.apiservices.values())
            if not still_used:
                await self._remove_apiservice(*gv)

    async def _add_apiservice(self, group: str, version: str) -> None:
        if self.aggregator is not None:
            try:
                await self.aggregator.add_crd_group_version(group, version)
            except Exception:
                log.exception("registering APIService %s.%s", version, group)

    async def _remove_apiservice(self, group: str, version: str) -> None:
        if self.aggregator is not None:
            try:
                await self.aggregator.remove_crd_group_version(group, version)
            except Exception:
                log.exception("removing APIService %s.%s", version, group)

    def registries_of(self, name: str) -> list[CustomResourceRegistry]:
        current = self.served.get(name)
        if current is None:
            return []
        regs = []
        for rdef in current[1]:
            reg = self.server.registries.get((rdef.group, rdef.version, rdef.plural))
            if isinstance(reg, CustomResourceRegistry):
                regs.append(reg)
        return regs

    # ---- deletion ----------------------------------------------------------------------------------

    async def before_delete(self, crd: Obj, opts: WriteOptions) -> None:
        """First DELETE of a CRD: add the cleanup finalizer and the Terminating condition (upstream's
        CRD REST Delete does this in the same write that sets deletionTimestamp)."""
        m = crd["metadata"]
        if CLEANUP_FINALIZER not in (m.get("finalizers") or []):
            m["finalizers"] = list(m.get("finalizers") or []) + [CLEANUP_FINALIZER]
        status = crd.setdefault("status", {})
        status["conditions"] = set_condition(status.get("conditions") or [], "Terminating", "True",
                                             "InstanceDeletionPending", "CustomResourceDefinition marked for "
                                             "deletion; CustomResource deletion will begin soon")

    async def _finalize(self, name: str) -> None:
        try:
            while True:
                try:
                    done = await self._finalize_once(name)
                except asyncio.CancelledError:
                    raise
                except errors.StatusError as e:
                    if e.code == 404:
                        done = True
                    else:
                        log.warning("finalizing CRD %s: %s", name, e)
                        done = False
                except Exception:
                    log.exception("finalizing CRD %s", name)
                    done = False
                if done:
                    break
                await asyncio.sleep(1)
        finally:
            self._deleting.discard(name)
            self._queue.put_nowait(name)

    async def _finalize_once(self, name: str) -> bool:
        crd = await self.registry.get("", name)
        if CLEANUP_FINALIZER not in (crd["metadata"].get("finalizers") or []):
            return True
        regs = self.registries_of(name)
        for reg in regs:
            reg.terminating = True
        await self._set_terminating(name, "InstanceDeletionInProgress", "CustomResource deletion is in progress")
        reg = next((r for r in regs if r.rdef.version == storage_version(crd)), regs[0] if regs else None)
        if reg is not None:
            opts = WriteOptions(field_manager=MANAGER)
            deadline = asyncio.get_running_loop().time() + DELETION_WAIT
            while True:
                listed = await reg.list("", ListOptions())
                if not listed.items:
                    break
                for obj in listed.items:
                    m = obj["metadata"]
                    if m.get("deletionTimestamp"):
                        continue
                    try:
                        await reg.delete(m.get("namespace", ""), m["name"], {}, opts)
                    except errors.StatusError as e:
                        if e.code != 404:
                            raise
                if asyncio.get_running_loop().time() > deadline:
                    await self._set_terminating(name, "InstanceDeletionCheck",
                                                f"could not confirm zero CustomResources remaining: timed out "
                                                f"waiting for the condition; {len(listed.items)} remaining")
                    return False
                await asyncio.sleep(0.2)
        await self._set_terminating(name, "InstanceDeletionCompleted", "removed all instances")

        def drop_finalizer(old: Obj) -> Obj:
            old["metadata"]["finalizers"] = [f for f in old["metadata"].get("finalizers") or []
                                             if f != CLEANUP_FINALIZER]
            return old

        await self.registry.patch("", name, drop_finalizer, WriteOptions(field_manager=MANAGER))
        await self._unserve(name)
        return True

    async def _set_terminating(self, name: str, reason: str, message: str) -> None:
        def mutate(old: Obj) -> Obj:
            status = old.setdefault("status", {})
            status["conditions"] = set_condition(status.get("conditions") or [], "Terminating", "True", reason,
                                                 message)
            return old

        await self.registry.patch("", name, mutate, WriteOptions(subresource="status", field_manager=MANAGER))


def _endpoint(resolver: EndpointResolver, namespace: str, name: str, port: int) -> tuple[str, int]:
    """A ready endpoint of a conversion webhook's service (the Service's port mapped to the endpoint's)."""
    try:
        ep = resolver.resolve(namespace, name, port)
    except ResolveError as e:
        raise ValueError(str(e)) from None
    return ep.host, ep.port
