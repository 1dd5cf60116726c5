"""Serving /openapi/v2 and /openapi/v3 from the installed ResourceDefs.

Documents are regenerated only when the set of definitions changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from kplane.apimachinery import errors
from kplane.apiserver import openapi, openapi_proto
from kplane.apiserver.server import GenericAPIServer


def v2_response(request: web.Request, doc_json: bytes, encodings: openapi_proto.Encodings) -> web.Response:
    """/openapi/v2 as JSON or, when the client asks for it, gnostic protobuf; ETag/304 as upstream."""
    headers = {"ETag": encodings.etag(doc_json), "Vary": "Accept"}
    if request.headers.get("If-None-Match") == headers["ETag"]:
        return web.Response(status=304, headers=headers)
    if openapi_proto.wants_protobuf(request.headers.get("Accept", "")):
        headers["Content-Type"] = openapi_proto.CONTENT_TYPE
        return web.Response(body=encodings.proto(doc_json), headers=headers)
    return web.Response(body=doc_json, content_type="application/json", headers=headers)


def v3_document_response(request: web.Request, gv: str, doc: bytes, doc_hash: str) -> web.Response:
    """One /openapi/v3 document as kube-openapi's handler3 serves it: ETag (the hash), 304 for a
    matching If-None-Match, a 301 to the current hash for a stale ?hash=, cacheable for a year
    when the hash matches, 406 for a media type other than JSON (protobuf is not served)."""
    accept = request.headers.get("Accept", "")
    if accept and not any(t.split(";")[0].strip() in ("application/json", "*/*", "application/*", "")
                          for t in accept.split(",")):
        raise errors.not_acceptable("only the following media types are accepted: application/json")
    headers = {"Etag": f'"{doc_hash}"', "Vary": "Accept"}
    asked = request.query.get("hash")
    if asked is not None and asked != doc_hash:
        headers["Location"] = f"/openapi/v3/{gv}?hash={doc_hash}"
        return web.Response(status=301, headers=headers)
    if asked is not None:
        headers["Cache-Control"] = "public, immutable"
        headers["Expires"] = (datetime.now(UTC) + timedelta(days=365)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    if request.headers.get("If-None-Match", "").strip('"') == doc_hash:
        return web.Response(status=304, headers=headers)
    return web.Response(body=doc, content_type="application/json", headers=headers)


class OpenAPIService:
    def __init__(self, server: GenericAPIServer):
        self.server = server
        self._v2: bytes | None = None
        self._v3_docs: dict[str, tuple[bytes, str]] | None = None  # path -> (JSON, hash)
        self._v3_index: bytes | None = None
        self._v2_encodings = openapi_proto.Encodings()
        server.on_defs_changed.append(self.invalidate)

    def invalidate(self) -> None:
        self._v2 = None
        self._v3_docs = None
        self._v3_index = None

    def v2(self) -> bytes:
        if self._v2 is None:
            self._v2 = orjson.dumps(openapi.openapi_v2(self.server.defs, self.server.version_info["gitVersion"]))
        return self._v2

    def v3_documents(self) -> dict[str, tuple[bytes, str]]:
        if self._v3_docs is None:
            by_gv: dict[str, list[Any]] = {}
            for d in self.server.defs:
                path = f"apis/{d.group}/{d.version}" if d.group else f"api/{d.version}"
                by_gv.setdefault(path, []).append(d)
            docs = {p: openapi.openapi_v3_document(defs) for p, defs in by_gv.items()}
            self._v3_docs = {p: (orjson.dumps(doc), openapi.document_hash(doc)) for p, doc in docs.items()}
        return self._v3_docs

    def v3_index(self) -> bytes:
        if self._v3_index is None:
            self._v3_index = orjson.dumps(openapi.openapi_v3_index(self.server.defs))
        return self._v3_index

    async def handle_v2(self, request: web.Request) -> web.Response:
        return v2_response(request, self.v2(), self._v2_encodings)

    async def handle_v3(self, request: web.Request) -> web.Response:
        path = request.path.rstrip("/")
        if path == "/openapi/v3":
            return web.Response(body=self.v3_index(), content_type="application/json")
        gv = path[len("/openapi/v3/"):]
        found = self.v3_documents().get(gv)
        if found is None:
            raise errors.StatusError(404, "NotFound", "the server could not find the requested resource", {})
        return v3_document_response(request, gv, *found)


def install_openapi(server: GenericAPIServer) -> OpenAPIService:
    service = OpenAPIService(server)
    server.non_resource["/openapi/v2"] = service.handle_v2

    async def v3_delegate(request: web.Request, info: Any) -> web.StreamResponse | None:
        if request.path.startswith("/openapi/v3"):
            return await service.handle_v3(request)
        return None

    server.delegates.append(v3_delegate)
    return service
