"""OpenAPI aggregation: /openapi/v2 merges the remote APIServices' specs into
the local one; /openapi/v3 lists each remote group-version with the hash of
its document and serves that document. Remote documents are fetched on
APIService changes and every minute; a failing backend keeps its last good
documents."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from kplane.aggregator import apiservice as apis
from kplane.aio import cancel_and_wait, wait_for
from kplane.apiserver.openapi_proto import Encodings
from kplane.apiserver.openapi_routes import v2_response

log = logging.getLogger("kplane.aggregator.openapi")

Obj = dict[str, Any]
REFRESH_SECONDS = 60.0
TIMEOUT = 5.0

Fetch = Callable[[Any, str, dict[str, str]], Awaitable[tuple[int, dict[str, str], bytes]]]


def merge_v2(local: Obj, remotes: list[Obj]) -> Obj:
    merged = dict(local)
    paths = dict(local.get("paths") or {})
    definitions = dict(local.get("definitions") or {})
    for spec in remotes:
        for path, item in (spec.get("paths") or {}).items():
            paths.setdefault(path, item)
        for name, schema in (spec.get("definitions") or {}).items():
            definitions.setdefault(name, schema)
    merged["paths"] = paths
    merged["definitions"] = definitions
    return merged


def doc_hash(body: bytes) -> str:
    return hashlib.sha512(body).hexdigest().upper()[:128]


class OpenAPIAggregator:
    def __init__(self, local_v2: Callable[[], bytes], fetch: Fetch, targets: Callable[[], dict[str, Any]],
                 apiservices: Callable[[], list[Obj]]):
        self.local_v2 = local_v2
        self.fetch = fetch
        self.targets = targets  # apiservice name -> proxy Target
        self.apiservices = apiservices
        self.v2_specs: dict[str, Obj] = {}  # apiservice name -> its backend's /openapi/v2
        self.v3_docs: dict[str, bytes] = {}  # "apis/<g>/<v>" -> document
        self._merged: tuple[int, int, bytes] | None = None
        self._v2_encodings = Encodings()  # protobuf and ETag of whichever document v2() returned last
        self._version = 0
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    # ---- serving --------------------------------------------------------------------------------------

    def v2(self) -> bytes:
        local = self.local_v2()
        if not self.v2_specs:
            return local
        if self._merged is not None and self._merged[0] == id(local) and self._merged[1] == self._version:
            return self._merged[2]
        merged = orjson.dumps(merge_v2(orjson.loads(local), list(self.v2_specs.values())))
        self._merged = (id(local), self._version, merged)
        return merged

    async def handle_v2(self, request: web.Request) -> web.Response:
        return v2_response(request, self.v2(), self._v2_encodings)

    async def handle_v3(self, request: web.Request, local_index: Callable[[], Awaitable[bytes | None]]
                        ) -> web.Response | None:
        path = request.path.rstrip("/")
        if path == "/openapi/v3":
            raw = await local_index()
            index = orjson.loads(raw) if raw else {"paths": {}}
            paths = dict(index.get("paths") or {})
            for gv, body in self.v3_docs.items():
                paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={doc_hash(body)}"}
            index["paths"] = dict(sorted(paths.items()))
            return web.Response(body=orjson.dumps(index), content_type="application/json")
        gv = path[len("/openapi/v3/"):]
        body = self.v3_docs.get(gv)
        if body is None:
            return None
        headers = {"Cache-Control": "public, immutable"} if request.query.get("hash") else \
            {"Cache-Control": "no-cache, private"}
        headers["Etag"] = f'"{doc_hash(body)}"'
        return web.Response(body=body, content_type="application/json", headers=headers)

    # ---- refresh --------------------------------------------------------------------------------------

    def changed(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        self._task = None

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("openapi refresh failed")
            try:
                await wait_for(self._wake.wait(), REFRESH_SECONDS)
            except TimeoutError:
                pass

    async def refresh(self) -> None:
        targets = self.targets()
        remote = {s["metadata"]["name"]: s for s in self.apiservices() if not apis.is_local(s)}
        for name in list(self.v2_specs):
            if name not in remote:
                del self.v2_specs[name]
                self._version += 1
        wanted_gv = set()
        for name, obj in remote.items():
            target = targets.get(name)
            group, version = apis.spec(obj).get("group", ""), apis.spec(obj).get("version", "")
            gv = f"apis/{group}/{version}"
            wanted_gv.add(gv)
            if target is None or not apis.is_available(obj):
                continue
            try:
                status, _, body = await wait_for(self.fetch(target, "/openapi/v2",
                                                            {"Accept": "application/json"}), TIMEOUT)
                if status == 200:
                    spec = orjson.loads(body)
                    if self.v2_specs.get(name) != spec:
                        self.v2_specs[name] = spec
                        self._version += 1
                status, _, body = await wait_for(self.fetch(target, f"/openapi/v3/{gv}",
                                                            {"Accept": "application/json"}), TIMEOUT)
                if status == 200:
                    self.v3_docs[gv] = body
            except Exception as e:  # noqa: BLE001 - keep the last good documents
                log.info("openapi: fetching from %s failed: %s", name, e)
        for gv in list(self.v3_docs):
            if gv not in wanted_gv:
                del self.v3_docs[gv]
