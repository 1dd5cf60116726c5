"""Discovery merged over local resources and remote APIServices.

Legacy documents (/apis, /apis/<group>) come from the APIService objects and
never call a backend (kube-aggregator's apisHandler/apiGroupHandler):
apiregistration.k8s.io first, then the groups ordered by SortedByGroupAndVersion.
Group-versions served locally that have no APIService yet (before
auto-registration, CRDs whose APIService is pending) are ordered among them with
their built-in priorities.

Aggregated discovery (apidiscovery.k8s.io/v2) fetches each remote APIService's
document from its backend (GET /apis as APIGroupDiscoveryList, with the cached
ETag; falling back to the legacy /apis/<g>/<v> APIResourceList), on APIService
changes and every minute. A failed refresh marks that group-version
`freshness: Stale` and keeps its last good resources. Each round trip is bounded
by 5 s (feature gate EnableAggregatedDiscoveryTimeout, on by default); a
request for the document waits at most that long for first fetches still in
flight, so a hanging backend never blocks discovery of the rest.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kplane.aggregator import apiservice as apis
from kplane.aggregator.autoregister import builtin_priority
from kplane.aio import cancel_and_wait, wait_for
from kplane.apimachinery.versions import compare_kube_aware_version_strings
from kplane.apiserver import discovery as disco

log = logging.getLogger("kplane.aggregator.discovery")

Obj = dict[str, Any]

DISCOVERY_TIMEOUT = 5.0  # EnableAggregatedDiscoveryTimeout
REQUEST_TIMEOUT = 60.0  # --request-timeout, the only bound when the gate is off
REFRESH_SECONDS = 60.0
ACCEPT_V2 = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
             "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList")
REGISTRATION_GROUP = "apiregistration.k8s.io"


@dataclass
class CachedResult:
    discovery: dict[tuple[str, str], Obj] = field(default_factory=dict)
    etag: str = ""
    last_updated: float = 0.0


@dataclass
class GVState:
    """One remote APIService's entry in the aggregated document."""

    name: str
    group: str
    version: str
    group_priority: int
    version_priority: int
    service_key: tuple[str, str, int]
    last_marked_dirty: float = 0.0
    entry: Obj | None = None  # the APIVersionDiscovery we serve
    synced: asyncio.Event = field(default_factory=asyncio.Event)


def convert_resource_list(resources: list[Obj]) -> list[Obj]:
    """endpoints.ConvertGroupVersionIntoToDiscovery: APIResourceList entries -> APIResourceDiscovery."""
    parents: dict[str, Obj] = {}
    out: list[Obj] = []
    for r in resources:
        name = r.get("name", "")
        if "/" in name:
            continue
        entry: Obj = {"resource": name,
                      "responseKind": {"group": r.get("group", ""), "version": r.get("version", ""),
                                       "kind": r.get("kind", "")},
                      "scope": "Namespaced" if r.get("namespaced") else "Cluster",
                      "singularResource": r.get("singularName", ""), "verbs": list(r.get("verbs") or [])}
        if r.get("shortNames"):
            entry["shortNames"] = list(r["shortNames"])
        if r.get("categories"):
            entry["categories"] = list(r["categories"])
        parents[name] = entry
        out.append(entry)
    for r in resources:
        name = r.get("name", "")
        if "/" not in name:
            continue
        parent, sub = name.split("/", 1)
        p = parents.get(parent)
        if p is None:
            p = {"resource": parent, "responseKind": {"group": "", "version": "", "kind": ""},
                 "scope": "Namespaced" if r.get("namespaced") else "Cluster", "singularResource": "",
                 "verbs": []}
            parents[parent] = p
            out.append(p)
        p.setdefault("subresources", []).append(
            {"subresource": sub, "responseKind": {"group": r.get("group", ""),
                                                  "version": r.get("version", ""), "kind": r.get("kind", "")},
             "verbs": list(r.get("verbs") or [])})
    return out


def _version_cmp(a: tuple[str, int], b: tuple[str, int]) -> int:
    if a[1] != b[1]:
        return -1 if a[1] > b[1] else 1
    c = compare_kube_aware_version_strings(a[0], b[0])
    return -1 if c > 0 else (1 if c < 0 else 0)


class MergedDiscovery:
    """Drop-in for GenericAPIServer.discovery (group_list/group/resource_list/aggregated)."""

    def __init__(self, local: Any, apiservices: Callable[[], list[Obj]],
                 fetch: Callable[..., Any] | None = None, *, timeout_enabled: bool = True,
                 group_priority: dict[str, int] | None = None):
        self.local = local
        self.apiservices = apiservices
        self.fetch = fetch  # async (apiservice_obj, path, headers) -> (status, headers, body)
        self.timeout = DISCOVERY_TIMEOUT if timeout_enabled else REQUEST_TIMEOUT
        self.group_priority = group_priority if group_priority is not None else {}
        self.remote: dict[str, GVState] = {}
        self.results: dict[tuple[str, str, int], CachedResult] = {}
        self._dirty: asyncio.Queue[str] | None = None
        self._tasks: list[asyncio.Task] = []
        self._inflight: dict[str, asyncio.Task] = {}

    # ---- legacy -------------------------------------------------------------------------------------

    def _entries(self) -> list[Obj]:
        """APIServices plus synthetic entries for local group-versions without one."""
        services = [s for s in self.apiservices() if apis.spec(s).get("group") != REGISTRATION_GROUP]
        have = {(apis.spec(s).get("group", ""), apis.spec(s).get("version", "")) for s in services}
        local = self.local.local_groups()
        for group, versions in local.items():
            if not group or group == REGISTRATION_GROUP:
                continue
            for version in versions:
                if (group, version) in have:
                    continue
                prio = builtin_priority(group, version, self.group_priority) or \
                    (self.group_priority.get(group, 1000), 15)
                services.append({"metadata": {"name": f"{version}.{group}"},
                                 "spec": {"group": group, "version": version, "groupPriorityMinimum": prio[0],
                                          "versionPriority": prio[1]}})
        return services

    def _registration_group(self) -> Obj:
        versions = sorted(self.local.local_groups().get(REGISTRATION_GROUP, {}) or {"v1": []},
                          key=functools.cmp_to_key(lambda a, b: -compare_kube_aware_version_strings(a, b)))
        return disco.api_group(REGISTRATION_GROUP, versions)

    async def group_list(self) -> Obj:
        groups = [self._registration_group()]
        for members in apis.sorted_by_group_and_version(self._entries()):
            group = apis.spec(members[0]).get("group", "")
            if not group:
                continue
            groups.append(disco.api_group(group, [apis.spec(m).get("version", "") for m in members]))
        return disco.api_group_list(groups)

    async def group(self, name: str) -> Obj | None:
        if name == REGISTRATION_GROUP:
            return self._registration_group()
        members = [s for s in self._entries() if apis.spec(s).get("group") == name]
        if not members or not name:
            return await self.local.group(name)
        ordered = apis.sorted_by_group_and_version(members)[0]
        return disco.api_group(name, [apis.spec(m).get("version", "") for m in ordered])

    async def resource_list(self, group: str, version: str) -> Obj | None:
        return await self.local.resource_list(group, version)

    # ---- aggregated -----------------------------------------------------------------------------------

    async def aggregated(self, prefix: str) -> Obj:
        base = await self.local.aggregated(prefix)
        if prefix != "apis":
            return base
        await self._await_first_syncs()
        # group -> list of (version, group_priority, version_priority, entry)
        groups: dict[str, list[tuple[str, int, int, Obj]]] = {}
        have: set[tuple[str, str]] = set()
        prio = {(apis.spec(s).get("group", ""), apis.spec(s).get("version", "")):
                (int(apis.spec(s).get("groupPriorityMinimum") or 0),
                 int(apis.spec(s).get("versionPriority") or 0))
                for s in self._entries()}
        for st in self.remote.values():
            entry = st.entry
            if entry is None:
                continue
            groups.setdefault(st.group, []).append(
                (st.version, st.group_priority, st.version_priority, entry))
            have.add((st.group, st.version))
        for item in base.get("items", []):
            group = (item.get("metadata") or {}).get("name", "")
            for v in item.get("versions", []):
                if (group, v["version"]) in have:
                    continue
                if group == REGISTRATION_GROUP:
                    gp, vp = 20001, 15  # always first, as the legacy list
                else:
                    gp, vp = prio.get((group, v["version"]), (self.group_priority.get(group, 1000), 15))
                groups.setdefault(group, []).append((v["version"], gp, vp, v))
        ordered_groups = sorted(groups.items(), key=lambda kv: (-max(x[1] for x in kv[1]), kv[0]))
        items = []
        for group, versions in ordered_groups:
            versions.sort(key=functools.cmp_to_key(lambda a, b: _version_cmp((a[0], a[2]), (b[0], b[2]))))
            items.append(disco.aggregated_group(group, [v[3] for v in versions]))
        return disco.aggregated_list(items)

    async def _await_first_syncs(self) -> None:
        pending = [st.synced.wait() for st in self.remote.values() if not st.synced.is_set()]
        if not pending:
            return
        tasks = [asyncio.ensure_future(p) for p in pending]
        try:
            await asyncio.wait(tasks, timeout=self.timeout + 0.5)
        finally:
            for t in tasks:
                t.cancel()
        for st in self.remote.values():  # still not answered: present, Stale, no resources
            if st.entry is None:
                st.entry = {"version": st.version, "resources": [], "freshness": "Stale"}

    # ---- remote bookkeeping -------------------------------------------------------------------------

    def set_apiservices(self, services: list[Obj]) -> None:
        """Reconcile the tracked remote APIServices with the current objects
        (AddAPIService/RemoveAPIService)."""
        seen = set()
        for obj in services:
            ref = apis.service_ref(obj)
            if ref is None:
                continue
            name = obj["metadata"]["name"]
            seen.add(name)
            s = apis.spec(obj)
            key = (ref.get("namespace", ""), ref.get("name", ""), int(ref.get("port") or 443))
            st = self.remote.get(name)
            gp, vp = int(s.get("groupPriorityMinimum") or 0), int(s.get("versionPriority") or 0)
            if st is None:
                st = GVState(name, s.get("group", ""), s.get("version", ""), gp, vp, key)
                self.remote[name] = st
                self.mark_dirty(name)
            elif (st.group_priority, st.version_priority, st.service_key) != (gp, vp, key):
                st.group_priority, st.version_priority, st.service_key = gp, vp, key
                self.mark_dirty(name)
        for name in list(self.remote):
            if name not in seen:
                del self.remote[name]
        used = {st.service_key for st in self.remote.values()}
        for key in list(self.results):
            if key not in used:
                del self.results[key]

    def mark_dirty(self, name: str) -> None:
        st = self.remote.get(name)
        if st is None:
            return
        st.last_marked_dirty = time.monotonic()
        if self._dirty is not None:
            self._dirty.put_nowait(name)

    def start(self) -> None:
        self._dirty = asyncio.Queue()
        for name in self.remote:
            self._dirty.put_nowait(name)
        self._tasks = [asyncio.ensure_future(self._worker()) for _ in range(4)]
        self._tasks.append(asyncio.ensure_future(self._refresh_loop()))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            for name in list(self.remote):
                self.mark_dirty(name)

    async def _worker(self) -> None:
        assert self._dirty is not None
        while True:
            name = await self._dirty.get()
            st = self.remote.get(name)
            if st is None:
                continue
            try:
                ok = await self.sync(st)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("discovery sync of %s failed", name)
                ok = False
            if not ok:
                asyncio.get_running_loop().call_later(min(30.0, 1.0), self.mark_dirty, name)

    async def sync(self, st: GVState) -> bool:
        """syncAPIService: refresh the cached document of st's service and update st.entry."""
        err: str | None = None
        cached = self.results.get(st.service_key)
        if cached is None or cached.last_updated <= st.last_marked_dirty:
            try:
                cached = await wait_for(self._fetch(st, cached), self.timeout)
            except TimeoutError:
                err = "request timed out"
            except Exception as e:  # noqa: BLE001 - any failure makes the entry Stale
                err = str(e) or type(e).__name__
        if err is not None:
            log.info("DiscoveryManager: failed to download discovery for %s: %s", st.name, err)
            old = (cached.discovery.get((st.group, st.version)) if cached else None) or st.entry
            entry = dict(old) if old else {"version": st.version, "resources": []}
            entry["freshness"] = "Stale"
        else:
            assert cached is not None
            found = cached.discovery.get((st.group, st.version))
            entry = dict(found) if found else {"version": st.version, "resources": []}
            entry["freshness"] = "Current"
        entry.setdefault("resources", [])
        st.entry = entry
        st.synced.set()
        return err is None

    async def _fetch(self, st: GVState, cached: CachedResult | None) -> CachedResult:
        if self.fetch is None:
            raise RuntimeError("no backend client")
        now = time.monotonic()
        headers = {"Accept": ACCEPT_V2}
        if cached is not None and cached.etag:
            headers["If-None-Match"] = cached.etag
        status, resp_headers, body = await self.fetch(st, "/apis", headers)
        ctype = (resp_headers.get("Content-Type") or resp_headers.get("content-type") or "").replace(" ", "")
        if status == 304 and cached is not None:
            result = CachedResult(cached.discovery, cached.etag, now)
            self.results[st.service_key] = result
            return result
        if status == 200 and "g=apidiscovery.k8s.io" in ctype and "as=APIGroupDiscoveryList" in ctype:
            parsed = orjson.loads(body)
            discovery: dict[tuple[str, str], Obj] = {}
            for g in parsed.get("items") or []:
                gname = (g.get("metadata") or {}).get("name", "")
                for v in g.get("versions") or []:
                    for r in v.get("resources") or []:
                        r.setdefault("responseKind", {})
                        for sub in r.get("subresources") or []:
                            sub.setdefault("responseKind", {})
                    discovery[(gname, v.get("version", ""))] = v
            etag = resp_headers.get("ETag") or resp_headers.get("Etag") or resp_headers.get("etag") or ""
            result = CachedResult(discovery, etag, now)
            self.results[st.service_key] = result
            return result
        path = f"/apis/{st.group}/{st.version}" if st.group else f"/api/{st.version}"
        status, _, body = await self.fetch(st, path, {"Accept": "application/json"})
        if status != 200:
            raise RuntimeError(f"failed to download legacy discovery for {path}: {body[:200]!r}")
        parsed = orjson.loads(body)
        # Not saved: the legacy fallback covers one group-version only.
        return CachedResult({(st.group, st.version): {"version": st.version,
                                                      "resources": convert_resource_list(
                                                          parsed.get("resources") or [])}}, "", now)
