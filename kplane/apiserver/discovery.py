"""Discovery documents derived from ResourceDefs: the legacy documents
(APIVersions, APIGroupList, APIGroup, APIResourceList) and aggregated
discovery v2 (APIGroupDiscoveryList)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

from kplane.apiserver.resource import ResourceDef

Obj = dict[str, Any]

# Verbs a subresource answers, as upstream's discovery reports them.
_SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "scale": ["get", "patch", "update"],
                      "finalize": ["update"]}


def storage_version_hash(rdef: ResourceDef) -> str:
    # Upstream: base64 of the first 8 bytes of sha256("<group>/<version>/<kind>") of the storage version.
    import base64

    digest = hashlib.sha256(f"{rdef.group}/{rdef.version}/{rdef.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def api_resource_list(group_version: str, defs: Iterable[ResourceDef]) -> Obj:
    resources: list[Obj] = []
    for rdef in sorted(defs, key=lambda d: d.plural):
        entry: Obj = {"name": rdef.plural, "singularName": rdef.singular, "namespaced": rdef.namespaced,
                      "kind": rdef.kind, "verbs": list(rdef.verbs)}
        if rdef.short_names:
            entry["shortNames"] = list(rdef.short_names)
        if rdef.categories:
            entry["categories"] = list(rdef.categories)
        if "/" in rdef.plural:
            entry["singularName"] = ""
            entry["group"], entry["version"] = rdef.group, rdef.version
        elif "create" in rdef.verbs or "get" in rdef.verbs:
            entry["storageVersionHash"] = storage_version_hash(rdef)
        resources.append(entry)
        for sub in rdef.subresources:
            resources.append({"name": f"{rdef.plural}/{sub}", "singularName": "", "namespaced": rdef.namespaced,
                              "kind": "Scale" if sub == "scale" else rdef.kind,
                              "verbs": _SUBRESOURCE_VERBS.get(sub, ["get", "create"])} |
                             ({"group": "autoscaling", "version": "v1"} if sub == "scale" else {}))
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def group_version_entry(group: str, version: str) -> Obj:
    return {"groupVersion": f"{group}/{version}" if group else version, "version": version}


def api_group(group: str, versions: list[str]) -> Obj:
    """APIGroup document; `versions` already in preference order."""
    entries = [group_version_entry(group, v) for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
            "preferredVersion": entries[0]}


def api_group_list(groups: list[Obj]) -> Obj:
    """`groups` are APIGroup documents in discovery order (without kind/apiVersion in the list)."""
    items = [{k: v for k, v in g.items() if k not in ("kind", "apiVersion")} for g in groups]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}


def api_versions(server_address: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def aggregated_version(version: str, defs: Iterable[ResourceDef], freshness: str = "Current") -> Obj:
    resources: list[Obj] = []
    defs = list(defs)
    # Subresources with a registry of their own ("serviceaccounts/token") nest under their parent.
    extra_subs: dict[str, list[ResourceDef]] = {}
    for d in defs:
        if "/" in d.plural:
            extra_subs.setdefault(d.plural.split("/")[0], []).append(d)
    for rdef in sorted((d for d in defs if "/" not in d.plural), key=lambda d: d.plural):
        entry: Obj = {
            "resource": rdef.plural,
            "responseKind": {"group": "", "version": "", "kind": rdef.kind},
            "scope": "Namespaced" if rdef.namespaced else "Cluster",
            "singularResource": rdef.singular,
            "verbs": list(rdef.verbs),
        }
        if rdef.short_names:
            entry["shortNames"] = list(rdef.short_names)
        if rdef.categories:
            entry["categories"] = list(rdef.categories)
        subs = []
        for sub in rdef.subresources:
            kind = {"group": "autoscaling", "version": "v1", "kind": "Scale"} if sub == "scale" else \
                {"group": "", "version": "", "kind": rdef.kind}
            subs.append({"subresource": sub, "responseKind": kind,
                         "verbs": _SUBRESOURCE_VERBS.get(sub, ["get", "create"])})
        for sd in extra_subs.get(rdef.plural, []):
            subs.append({"subresource": sd.plural.split("/", 1)[1],
                         "responseKind": {"group": sd.group, "version": sd.version, "kind": sd.kind},
                         "verbs": list(sd.verbs)})
        if subs:
            entry["subresources"] = subs
        resources.append(entry)
    return {"version": version, "resources": resources, "freshness": freshness}


def aggregated_group(group: str, versions: list[Obj]) -> Obj:
    """One APIGroupDiscovery; `versions` are aggregated_version documents in preference order."""
    meta: Obj = {"name": group} if group else {}
    return {"metadata": meta, "versions": versions}


def aggregated_list(groups: list[Obj]) -> Obj:
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": groups}


def etag(doc: Obj) -> str:
    return '"' + hashlib.sha512(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest() + '"'
