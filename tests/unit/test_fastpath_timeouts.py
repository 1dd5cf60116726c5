"""The connection protocol's read-header timeout (kube-apiserver's ReadHeaderTimeout), in process."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from kplane.apiserver import fastpath


async def _serve_fast(request) -> web.Response:
    return web.json_response({"lane": "fast"})


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"lane": "aiohttp"})


async def _no_hook(request, response) -> None:
    return None


@pytest.fixture
async def server(monkeypatch):
    monkeypatch.setattr(fastpath, "READ_HEADER_TIMEOUT", 0.4)
    app = web.Application()
    app.router.add_get("/healthz", _ok)
    runner = web.AppRunner(app)
    await runner.setup()
    lane = fastpath.FastLane(claims=lambda target: target.startswith("/api"), serve=_serve_fast,
                             max_body=1024, on_response_prepare=_no_hook, enabled=lambda: True)
    assert fastpath.install(runner.server, lane)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield port
    await runner.cleanup()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), seconds) == b""
    except TimeoutError:
        return False


async def test_a_head_not_complete_in_time_closes_the_connection_unanswered(server):
    silent = await asyncio.open_connection("127.0.0.1", server)  # connects, never sends
    aiohttp_head = await asyncio.open_connection("127.0.0.1", server)
    aiohttp_head[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # aiohttp's lane, no blank line
    fast_head = await asyncio.open_connection("127.0.0.1", server)
    fast_head[1].write(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n")  # the fast lane's, no blank line
    for reader, _ in (silent, aiohttp_head, fast_head):
        assert await _closed_within(reader, 3.0)


async def _status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    return int(head.split(b" ")[1])


async def test_a_head_completed_in_time_is_answered_and_idle_connections_are_not_cut(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n")
    await asyncio.sleep(0.2)
    writer.write(b"\r\n")
    assert await _status(reader) == 200
    await asyncio.sleep(0.8)  # idle between requests: that is the keep-alive timeout's business
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    await asyncio.sleep(0.2)
    writer.write(b"\r\n")
    assert await _status(reader) == 200
    writer.close()
