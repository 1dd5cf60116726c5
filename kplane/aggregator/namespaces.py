"""A terminating namespace's content on remote APIServices (for the namespace controller).

Upstream's namespace controller deletes a namespace's content through discovery: every
namespaced resource that supports list and delete, aggregated ones included, and it keeps the
namespace Terminating while a group's discovery fails (an unavailable extension server blocks
namespace deletion there too). This asks each remote APIService the same, through the
aggregator's own connections as system:kube-aggregator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from kplane.aggregator import apiservice as apis
from kplane.aggregator.httpclient import BackendError

log = logging.getLogger("kplane.aggregator.namespaces")

_JSON = {"Accept": "application/json"}


@dataclass
class RemoteContent:
    remaining: dict[str, int] = field(default_factory=dict)  # "<resource>.<group>" -> objects left
    failed: list[str] = field(default_factory=list)  # group/versions that could not be asked


async def delete_remote_content(namespace: str, apiservices: list[dict[str, Any]], targets: Any,
                                proxy: Any) -> RemoteContent:
    """Ask every remote APIService to delete what it holds in `namespace`; what is left."""
    out = RemoteContent()
    for obj in apiservices:
        if apis.is_local(obj):
            continue
        spec = apis.spec(obj)
        gv = f"{spec.get('group', '')}/{spec.get('version', '')}"
        target = targets(obj["metadata"]["name"])
        if target is None or not target.available:
            out.failed.append(gv)
            continue
        try:
            for resource, count in (await _delete_in(namespace, gv, target, proxy)).items():
                key = f"{resource}.{spec.get('group', '')}"
                out.remaining[key] = max(out.remaining.get(key, 0), count)  # versions share objects
        except (BackendError, OSError, ValueError, KeyError, TypeError) as e:
            log.info("namespace %s: content of %s: %s", namespace, gv, e)
            out.failed.append(gv)
    return out


async def _delete_in(namespace: str, gv: str, target: Any, proxy: Any) -> dict[str, int]:
    status, _, body = await proxy.fetch(target, f"/apis/{gv}", _JSON)
    if status != 200:
        raise BackendError(f"discovery of {gv} answered {status}")
    left: dict[str, int] = {}
    for r in orjson.loads(body).get("resources") or []:
        verbs = set(r.get("verbs") or [])
        if "/" in r["name"] or not r.get("namespaced") or not {"list", "delete"} <= verbs:
            continue  # upstream's deletable resources: namespaced, with list and delete
        base = f"/apis/{gv}/namespaces/{namespace}/{r['name']}"
        if "deletecollection" in verbs:
            await proxy.fetch(target, base, _JSON, method="DELETE")
        else:
            for item in await _list(proxy, target, base):
                if not (item.get("metadata") or {}).get("deletionTimestamp"):
                    await proxy.fetch(target, f"{base}/{item['metadata']['name']}", _JSON, method="DELETE")
        items = await _list(proxy, target, base)  # what is left (finalizers hold it)
        if items:
            left[r["name"]] = len(items)
    return left


async def _list(proxy: Any, target: Any, path: str) -> list[dict[str, Any]]:
    status, _, body = await proxy.fetch(target, path, _JSON)
    if status != 200:
        raise BackendError(f"list {path} answered {status}")
    return orjson.loads(body).get("items") or []
