"""A tiny extension API server for the aggregator e2e tests (until examples/wardle lands).

python tests/e2e/aggregator_backend.py PORT CERT KEY FRONT_PROXY_CA [--hang]
Serves wardle.example.com/v1alpha1 flunders (legacy discovery only), trusts identity headers
only from a client certificate signed by FRONT_PROXY_CA, echoes the caller in each flunder list.
With --hang it accepts connections and never answers.
"""

from __future__ import annotations

import asyncio
import ssl
import sys

from aiohttp import web

RESOURCES = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "wardle.example.com/v1alpha1",
             "resources": [{"name": "flunders", "singularName": "flunder", "namespaced": True, "kind": "Flunder",
                            "verbs": ["get", "list"], "shortNames": ["fl"]}]}


async def handle(request: web.Request) -> web.StreamResponse:
    peer = request.transport.get_extra_info("peercert") if request.transport else None
    if not peer or "X-Remote-User" not in request.headers:
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "message": "Unauthorized", "reason": "Unauthorized", "code": 401}, status=401)
    path = request.path.rstrip("/")
    if path.endswith("/flunders/slow"):  # answers after a second (graceful-shutdown tests)
        await asyncio.sleep(1.0)
        return web.json_response({"kind": "Flunder", "apiVersion": "wardle.example.com/v1alpha1",
                                  "metadata": {"name": "slow", "namespace": "default"}})
    if path == "/apis/wardle.example.com/v1alpha1":
        return web.json_response(RESOURCES)
    if path.endswith("/flunders"):
        user = {"user": request.headers["X-Remote-User"], "groups": request.headers.getall("X-Remote-Group", [])}
        return web.json_response({"kind": "FlunderList", "apiVersion": "wardle.example.com/v1alpha1",
                                  "metadata": {"resourceVersion": "1"},
                                  "items": [{"kind": "Flunder", "apiVersion": "wardle.example.com/v1alpha1",
                                             "metadata": {"name": "echo", "namespace": "default",
                                                          "annotations": {"caller": str(user)}}}]})
    return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "not found",
                              "reason": "NotFound", "code": 404}, status=404)


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


async def main() -> None:
    port, cert, key, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cafile=ca)
    if "--hang" in sys.argv:
        server = await asyncio.start_server(hang, "127.0.0.1", port)
        async with server:
            await server.serve_forever()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
