"""The least a Python proxy can do on the aggregator's path: bench/proxy.py's "relay" target.

    python bench/_relay.py PORT BACKEND_PORT SERVING_CERT SERVING_KEY CLIENT_CERT CLIENT_KEY BACKEND_CA

A floor, not a proxy: TLS in, mutual TLS out (the front-proxy client certificate, the
backend's certificate verified), asyncio protocols on uvloop, one backend connection per
client connection opened with it, the identity headers spliced in after each request line,
and every other byte passed through as it arrives. It parses no headers, routes nothing,
authenticates and authorizes nobody, and assumes a request's line and head arrive in one
segment (as the benchmark's client sends them). Any real proxy in Python on this event loop
does at least this much per request, so its added latency next to nginx's bounds what
kplane's proxy can reach.
"""

from __future__ import annotations

import asyncio
import ssl
import sys

IDENTITY = b"X-Remote-User: kplane-admin\r\nX-Remote-Group: system:masters\r\n"


class Backend(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport):
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class Client(asyncio.Protocol):
    def __init__(self, backend_port: int, backend_ctx: ssl.SSLContext):
        self.backend_port = backend_port
        self.backend_ctx = backend_ctx
        self.backend: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            backend, _ = await loop.create_connection(lambda: Backend(self.transport), "127.0.0.1",
                                                      self.backend_port, ssl=self.backend_ctx,
                                                      server_hostname="api.wardle.svc")
        except OSError:
            self.transport.close()
            return
        self.backend = backend
        for data in self.pending:
            backend.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        end = data.find(b"\r\n")
        if end > 0 and data[end - 9:end] == b" HTTP/1.1":  # a request line: the identity follows it
            data = data[:end + 2] + IDENTITY + data[end + 2:]
        if self.backend is None:
            self.pending.append(data)
        else:
            self.backend.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.backend is not None:
            self.backend.close()


async def main(argv: list[str]) -> None:
    port, backend_port = int(argv[0]), int(argv[1])
    serving_cert, serving_key, client_cert, client_key, backend_ca = argv[2:7]
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(serving_cert, serving_key)
    backend_ctx = ssl.create_default_context(cafile=backend_ca)
    backend_ctx.load_cert_chain(client_cert, client_key)
    server = await asyncio.get_running_loop().create_server(lambda: Client(backend_port, backend_ctx),
                                                            "127.0.0.1", port, ssl=server_ctx)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1:]))
