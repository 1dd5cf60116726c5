"""The /scale subresource of custom resources: an autoscaling/v1 Scale read
from and written to the paths the CRD names (specReplicasPath,
statusReplicasPath, labelSelectorPath).

Served as a delegate in front of the generic resource handler, so GET, PUT
and PATCH (merge, JSON; strategic is treated as merge since Scale is a
built-in type) answer with a Scale, as kube-apiserver's CR scale storage does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from kplane.apimachinery import errors
from kplane.apimachinery import patch as patches
from kplane.apiserver import negotiation
from kplane.apiserver.handlers import json_response
from kplane.apiserver.registry import WriteOptions
from kplane.apiserver.requestinfo import RequestInfo

Obj = dict[str, Any]


def _steps(path: str) -> list[str]:
    return [p for p in path.strip(".").split(".") if p]


def _get(obj: Obj, path: str) -> Any:
    cur: Any = obj
    for step in _steps(path):
        if not isinstance(cur, dict) or step not in cur:
            return None
        cur = cur[step]
    return cur


def _set(obj: Obj, path: str, value: Any) -> None:
    steps = _steps(path)
    cur = obj
    for step in steps[:-1]:
        nxt = cur.get(step)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[step] = nxt
        cur = nxt
    cur[steps[-1]] = value


def to_scale(obj: Obj, scale: Obj) -> Obj:
    m = obj.get("metadata") or {}
    meta = {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in m}
    spec_replicas = _get(obj, scale.get("specReplicasPath", ""))
    status_replicas = _get(obj, scale.get("statusReplicasPath", ""))
    status: Obj = {"replicas": int(status_replicas) if isinstance(status_replicas, (int, float)) else 0}
    if scale.get("labelSelectorPath"):
        selector = _get(obj, scale["labelSelectorPath"])
        if isinstance(selector, str) and selector:
            status["selector"] = selector
    spec: Obj = {}
    if isinstance(spec_replicas, (int, float)):
        spec["replicas"] = int(spec_replicas)
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta, "spec": spec, "status": status}


class ScaleDelegate:
    """Claims `<plural>/scale` requests of custom resources that declare a scale subresource."""

    def __init__(self, registries: dict[tuple[str, str, str], Any], write_options: Callable[..., WriteOptions]):
        self.registries = registries
        self.write_options = write_options

    async def __call__(self, request: web.Request, info: RequestInfo) -> web.StreamResponse | None:
        if not info.is_resource_request or info.subresource != "scale":
            return None
        reg = self.registries.get((info.api_group, info.api_version, info.resource))
        scale = getattr(getattr(reg, "rdef", None), "crd_scale", None) if reg is not None else None
        if reg is None or scale is None:
            return None
        namespace = info.namespace if reg.rdef.namespaced else ""
        if reg.rdef.namespaced and not namespace:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", {})
        choice = negotiation.negotiate(request)
        if info.verb == "get":
            obj = await reg.get(namespace, info.name, request.query.get("resourceVersion", ""))
            return json_response(to_scale(obj, scale), 200, choice)
        if info.verb not in ("update", "patch"):
            raise errors.method_not_allowed()
        raw = await request.read()
        if len(raw) > negotiation.MAX_BODY_BYTES:
            raise errors.too_large()
        ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if info.verb == "update":
            body = negotiation.decode_body(raw, ctype)

            def desired(current: Obj) -> Obj:
                return body
        else:
            kind = negotiation.PATCH_TYPES.get(ctype)
            if kind not in ("json", "merge", "strategic"):
                raise errors.StatusError(415, "UnsupportedMediaType",
                                         "the body of the request was in an unknown format - accepted media "
                                         "types include: application/json-patch+json, "
                                         "application/merge-patch+json, application/apply-patch+yaml")
            body = negotiation.decode_body(raw, ctype)

            def desired(current: Obj) -> Obj:
                if kind == "json":
                    return patches.apply_json_patch(current, body)
                return patches.apply_merge_patch(current, body)

        opts: WriteOptions = self.write_options(request, info)
        opts.subresource = ""  # the write lands on the main resource (spec), bumping generation

        def mutate(obj: Obj) -> Obj:
            wanted = desired(to_scale(obj, scale))
            if not isinstance(wanted, dict):
                raise errors.bad_request("the body of the request must be a Scale object")
            rv = (wanted.get("metadata") or {}).get("resourceVersion")
            if rv and rv != obj["metadata"]["resourceVersion"]:
                raise errors.conflict(reg.rdef.plural, info.name, reg.rdef.group)
            replicas = (wanted.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise errors.invalid("Scale", info.name, [errors.field_invalid(
                    "spec.replicas", replicas, "must be greater than or equal to 0")], "autoscaling")
            _set(obj, scale["specReplicasPath"], replicas)
            obj["metadata"].pop("resourceVersion", None)
            return obj

        updated = await reg.patch(namespace, info.name, mutate, opts)
        return json_response(to_scale(updated, scale), 200, choice)
