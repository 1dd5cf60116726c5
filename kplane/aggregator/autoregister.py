"""Local APIServices for every built-in group/version (kube-apiserver's
autoregister controller with its apiVersionPriorities) and for CRD groups
(crdregistration: groupPriorityMinimum 1000, versionPriority 100).

Built-ins are labelled `kube-aggregator.kubernetes.io/automanaged: onstart`
(synced once at start), CRD ones `true` (kept in sync while the CRD exists).
"""

from __future__ import annotations

import logging
from typing import Any

from kplane.apimachinery import errors
from kplane.apiserver.registry import ListOptions, WriteOptions

log = logging.getLogger("kplane.aggregator.autoregister")

AUTOMANAGED_LABEL = "kube-aggregator.kubernetes.io/automanaged"
ONSTART = "onstart"
SYNC = "true"

# (group, version) -> (groupPriorityMinimum, versionPriority), as kube-apiserver 1.32.
PRIORITIES: dict[tuple[str, str], tuple[int, int]] = {
    ("", "v1"): (18000, 1),
    ("apps", "v1"): (17800, 15),
    ("events.k8s.io", "v1"): (17750, 15),
    ("events.k8s.io", "v1beta1"): (17750, 5),
    ("authentication.k8s.io", "v1"): (17700, 15),
    ("authentication.k8s.io", "v1beta1"): (17700, 9),
    ("authentication.k8s.io", "v1alpha1"): (17700, 1),
    ("authorization.k8s.io", "v1"): (17600, 15),
    ("autoscaling", "v1"): (17500, 15),
    ("autoscaling", "v2"): (17500, 30),
    ("autoscaling", "v2beta1"): (17500, 9),
    ("autoscaling", "v2beta2"): (17500, 1),
    ("batch", "v1"): (17400, 15),
    ("batch", "v1beta1"): (17400, 9),
    ("batch", "v2alpha1"): (17400, 9),
    ("certificates.k8s.io", "v1"): (17300, 15),
    ("certificates.k8s.io", "v1beta1"): (17300, 9),
    ("certificates.k8s.io", "v1alpha1"): (17300, 1),
    ("networking.k8s.io", "v1"): (17200, 15),
    ("networking.k8s.io", "v1beta1"): (17200, 9),
    ("networking.k8s.io", "v1alpha1"): (17200, 1),
    ("policy", "v1"): (17100, 15),
    ("policy", "v1beta1"): (17100, 9),
    ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("storage.k8s.io", "v1"): (16800, 15),
    ("storage.k8s.io", "v1beta1"): (16800, 9),
    ("storage.k8s.io", "v1alpha1"): (16800, 1),
    ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("admissionregistration.k8s.io", "v1"): (16700, 15),
    ("admissionregistration.k8s.io", "v1beta1"): (16700, 12),
    ("admissionregistration.k8s.io", "v1alpha1"): (16700, 9),
    ("scheduling.k8s.io", "v1"): (16600, 15),
    ("coordination.k8s.io", "v1"): (16500, 15),
    ("coordination.k8s.io", "v1alpha1"): (16500, 9),
    ("node.k8s.io", "v1"): (16300, 15),
    ("node.k8s.io", "v1alpha1"): (16300, 1),
    ("node.k8s.io", "v1beta1"): (16300, 9),
    ("discovery.k8s.io", "v1"): (16200, 15),
    ("discovery.k8s.io", "v1beta1"): (16200, 12),
    ("flowcontrol.apiserver.k8s.io", "v1"): (16100, 21),
    ("flowcontrol.apiserver.k8s.io", "v1beta3"): (16100, 18),
    ("flowcontrol.apiserver.k8s.io", "v1beta2"): (16100, 15),
    ("flowcontrol.apiserver.k8s.io", "v1beta1"): (16100, 12),
    ("flowcontrol.apiserver.k8s.io", "v1alpha1"): (16100, 9),
    ("internal.apiserver.k8s.io", "v1alpha1"): (16000, 9),
    ("resource.k8s.io", "v1beta1"): (15900, 15),
    ("resource.k8s.io", "v1alpha3"): (15900, 9),
    ("storagemigration.k8s.io", "v1alpha1"): (15800, 9),
}

CRD_GROUP_PRIORITY = 1000
CRD_VERSION_PRIORITY = 100


def apiservice_name(group: str, version: str) -> str:
    return f"{version}.{group}"


def local_apiservice(group: str, version: str, priorities: tuple[int, int],
                     managed: str = ONSTART) -> dict[str, Any]:
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": apiservice_name(group, version), "labels": {AUTOMANAGED_LABEL: managed}},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": priorities[0],
                     "versionPriority": priorities[1]}}


def builtin_priority(group: str, version: str,
                     fallback: dict[str, int] | None = None) -> tuple[int, int] | None:
    """Upstream skips group-versions it has no priority for; kplane serves more groups than the table
    knows, so those get the server's group priority (or 1000) and version priority 15."""
    if (group, version) in PRIORITIES:
        return PRIORITIES[(group, version)]
    if fallback is not None and group in fallback:
        return fallback[group], 15
    return None


class AutoRegistrar:
    """Keeps a Local APIService for each group-version the server serves itself."""

    def __init__(self, registry: Any, server: Any = None):
        self.registry = registry
        self.server = server
        self.crd_versions: set[tuple[str, str]] = set()

    def wanted_builtin(self) -> dict[str, dict[str, Any]]:
        wanted: dict[str, dict[str, Any]] = {}
        if self.server is None:
            return wanted
        fallback = dict(self.server.group_priority)
        for d in self.server.defs:
            if (d.group, d.version) in self.crd_versions:
                continue
            if d.group == "apiregistration.k8s.io":
                continue  # served by the aggregator itself, never listed as an APIService upstream
            prio = builtin_priority(d.group, d.version, fallback)
            if prio is None:
                prio = (fallback.get(d.group, 1000), 15)
            svc = local_apiservice(d.group, d.version, prio)
            wanted[svc["metadata"]["name"]] = svc
        return wanted

    async def sync_builtin(self) -> None:
        for svc in self.wanted_builtin().values():
            await self.ensure(svc)

    async def ensure(self, desired: dict[str, Any]) -> None:
        name = desired["metadata"]["name"]
        opts = WriteOptions(field_manager="kube-apiserver-autoregistration")
        try:
            current = await self.registry.get("", name)
        except errors.StatusError as e:
            if e.code != 404:
                raise
            try:
                await self.registry.create("", _copy(desired), opts)
            except errors.StatusError as e2:
                if e2.code != 409:
                    log.warning("autoregister create %s failed: %s", name, e2)
            return
        labels = (current.get("metadata") or {}).get("labels") or {}
        if AUTOMANAGED_LABEL not in labels:
            return  # a user took it over; upstream leaves unmanaged APIServices alone
        if current.get("spec") == desired["spec"] and labels.get(AUTOMANAGED_LABEL) == \
                desired["metadata"]["labels"][AUTOMANAGED_LABEL]:
            return

        def mutate(old: dict[str, Any]) -> dict[str, Any]:
            old["spec"] = _copy(desired["spec"])
            old.setdefault("metadata", {}).setdefault("labels", {}).update(desired["metadata"]["labels"])
            return old

        await self.registry.patch("", name, mutate, opts)

    async def remove(self, name: str, only_managed: str | None = None) -> None:
        try:
            current = await self.registry.get("", name)
        except errors.StatusError:
            return
        labels = (current.get("metadata") or {}).get("labels") or {}
        if only_managed is not None and labels.get(AUTOMANAGED_LABEL) != only_managed:
            return
        try:
            await self.registry.delete("", name, {}, WriteOptions())
        except errors.StatusError:
            pass

    # ---- CRDs (called by the CRD code) ------------------------------------------------------------

    async def add_crd_group_version(self, group: str, version: str) -> None:
        self.crd_versions.add((group, version))
        await self.ensure(local_apiservice(group, version, (CRD_GROUP_PRIORITY, CRD_VERSION_PRIORITY), SYNC))

    async def remove_crd_group_version(self, group: str, version: str) -> None:
        self.crd_versions.discard((group, version))
        await self.remove(apiservice_name(group, version), only_managed=SYNC)

    async def prune_stale_onstart(self) -> None:
        """Delete `onstart` APIServices for group-versions no longer served (after a downgrade)."""
        wanted = self.wanted_builtin()
        listed = await self.registry.list("", ListOptions())
        for obj in listed.items:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            name = obj["metadata"]["name"]
            if labels.get(AUTOMANAGED_LABEL) == ONSTART and name not in wanted:
                await self.remove(name, only_managed=ONSTART)


def _copy(obj: Any) -> Any:
    import orjson

    return orjson.loads(orjson.dumps(obj))
