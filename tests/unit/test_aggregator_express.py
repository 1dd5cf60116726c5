"""The proxy's express lane (kplane/aggregator/express.py) against a scripted TLS backend: answer
framings passed through, connections pooled and reused, a stale connection handed back to the
ordinary path, a backend breaking off, a slow caller."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from kplane.aggregator.express import Exchange, ExpressPool, _ChunkScanner
from kplane.aggregator.proxy import client_ssl_context
from tests.unit.aggregator_fixtures import make_pki, server_context

# What the scripted backend does for each request it reads: bytes to send (each element one
# write, with a short pause between) and whether to close the connection afterwards.
Script = Callable[[bytes], tuple[list[bytes], bool]]


class ScriptedBackend(asyncio.Protocol):
    connections = 0

    def __init__(self, script: Script, requests: list[bytes]):
        self.script = script
        self.requests = requests
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ScriptedBackend.connections += 1
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            request, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.requests.append(request)
            parts, close = self.script(request)
            asyncio.ensure_future(self._answer(parts, close))

    async def _answer(self, parts: list[bytes], close: bool) -> None:
        for part in parts:
            self.transport.write(part)
            await asyncio.sleep(0.01)
        if close:
            self.transport.close()


class FakeTransport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return self.buffered


class FakeClient:
    """The caller's connection as the exchange sees it (fastpath.FastRequestHandler)."""

    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.finished: list[bool] = []
        self.retried = 0
        self.done = asyncio.Event()

    def express_finished(self, keep_alive: bool) -> None:
        self.finished.append(keep_alive)
        self.done.set()

    def express_retry(self) -> None:
        self.retried += 1
        self.done.set()


@pytest.fixture
async def backend(tmp_path):
    pki = make_pki(tmp_path)
    requests: list[bytes] = []
    state: dict = {"script": None}
    ScriptedBackend.connections = 0
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ScriptedBackend(lambda r: state["script"](r), requests),
                                      "127.0.0.1", 0, ssl=server_context(pki))
    port = server.sockets[0].getsockname()[1]
    ctx = client_ssl_context(str(pki.client), str(pki.client_key), pki.ca.read_bytes(), False)
    pool = ExpressPool()
    key = ("127.0.0.1", port, id(ctx), "api.wardle.svc")

    async def connection():
        pool.dial(key, "127.0.0.1", port, ctx, "api.wardle.svc")
        for _ in range(200):
            conn = pool.take(key)
            if conn is not None:
                return conn
            await asyncio.sleep(0.01)
        raise AssertionError("no connection")

    yield state, requests, pool, key, connection
    pool.close()
    server.close()


async def exchange(conn, request: bytes = b"GET /apis/x/v1/things HTTP/1.1\r\nHost: b\r\n\r\n"):
    client, ends = FakeClient(), []
    conn.send(request)
    Exchange(client, conn, keep_alive=True, audit_id="audit-1", on_end=ends.append)
    await asyncio.wait_for(client.done.wait(), 5)
    return client, ends


async def broken_exchange(conn):
    """An exchange whose backend breaks it: returns once the caller's connection is closed."""
    client, ends = FakeClient(), []
    conn.send(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
    Exchange(client, conn, keep_alive=True, audit_id="a", on_end=ends.append)
    for _ in range(200):
        if client.transport.closed:
            return client, ends
        await asyncio.sleep(0.01)
    raise AssertionError("the caller's connection was not closed")


def head_and_body(data: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


async def test_fixed_length_answer_passes_through_and_the_connection_is_reused(backend):
    state, requests, pool, key, connection = backend
    body = b'{"kind":"Thing"}'
    state["script"] = lambda r: ([b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                                  b"Keep-Alive: timeout=5\r\nX-Custom: 1\r\nContent-Length: %d\r\n\r\n" % len(body),
                                  body[:5], body[5:]], False)
    conn = await connection()
    client, ends = await exchange(conn)
    lines, got = head_and_body(client.transport.data)
    assert lines[0] == b"HTTP/1.1 200 OK" and got == body
    assert b"Content-Type: application/json" in lines and b"X-Custom: 1" in lines
    assert b"Content-Length: %d" % len(body) in lines and b"Audit-Id: audit-1" in lines
    assert not any(line.lower().startswith((b"connection", b"keep-alive")) for line in lines)
    assert client.finished == [True] and ends == [200]
    again = pool.take(key)
    assert again is conn  # back in the pool, reused
    client, ends = await exchange(again)
    assert head_and_body(client.transport.data)[1] == body and ScriptedBackend.connections == 1


async def test_chunked_answer_is_passed_through_to_its_end(backend):
    state, requests, pool, key, connection = backend
    chunks = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"5\r\nhello\r\n", b"6;ext=1\r\n",
              b" world\r\n", b"0\r\n", b"X-Trailer: t\r\n\r\n"]
    state["script"] = lambda r: (chunks, False)
    conn = await connection()
    client, ends = await exchange(conn)
    lines, body = head_and_body(client.transport.data)
    assert b"Transfer-Encoding: chunked" in lines
    assert body == b"".join(chunks[1:])
    assert client.finished == [True] and ends == [200] and pool.take(key) is conn


async def test_answers_without_a_body_end_at_their_head(backend):
    state, requests, pool, key, connection = backend
    conn = await connection()
    for head in (b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 42\r\n\r\n",
                 b"HTTP/1.1 204 No Content\r\n\r\n"):
        state["script"] = lambda r, head=head: ([head], False)
        client, ends = await exchange(conn)
        lines, body = head_and_body(client.transport.data)
        assert lines[0] == head.split(b"\r\n")[0] and body == b""
        assert not any(line.lower().startswith((b"content-length", b"transfer-encoding")) for line in lines)
        assert client.finished == [True] and ends == [int(head[9:12])]
        conn = pool.take(key)  # reused: the next answer on it is read correctly
        assert conn is not None


async def test_answer_delimited_by_close_closes_the_caller_too(backend):
    state, requests, pool, key, connection = backend
    state["script"] = lambda r: ([b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"all of ", b"it"], True)
    conn = await connection()
    client, ends = await exchange(conn)
    lines, body = head_and_body(client.transport.data)
    assert body == b"all of it" and b"Connection: close" in lines
    assert client.finished == [False] and ends == [200] and pool.take(key) is None


async def test_a_connection_closed_without_an_answer_is_handed_back(backend):
    state, requests, pool, key, connection = backend
    state["script"] = lambda r: ([], True)  # what a backend's idle timeout looks like from here
    conn = await connection()
    client, ends = await exchange(conn)
    assert client.retried == 1 and client.finished == [] and ends == [-1]
    assert bytes(client.transport.data) == b"" and not client.transport.closed


async def test_a_backend_breaking_off_mid_body_breaks_the_caller(backend):
    state, requests, pool, key, connection = backend
    state["script"] = lambda r: ([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"only part"], True)
    client, ends = await broken_exchange(await connection())
    assert client.finished == [] and ends == [0]
    assert head_and_body(client.transport.data)[1] == b"only part"


async def test_a_slow_caller_pauses_the_backend(backend):
    state, requests, pool, key, connection = backend
    big = b"x" * (3 * 1024 * 1024)
    state["script"] = lambda r: ([b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big), big], False)
    conn = await connection()
    client, ends = FakeClient(), []
    client.transport.buffered = 10 * 1024 * 1024  # the caller reads nothing
    conn.send(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
    ex = Exchange(client, conn, keep_alive=True, audit_id="a", on_end=ends.append)
    for _ in range(200):
        if ex.paused:
            break
        await asyncio.sleep(0.01)
    assert ex.paused and not client.finished
    client.transport.buffered = 0
    ex.client_drained()
    await asyncio.wait_for(client.done.wait(), 10)
    assert head_and_body(client.transport.data)[1] == big and ends == [200]


async def test_the_caller_going_away_closes_the_backend_connection(backend):
    state, requests, pool, key, connection = backend
    state["script"] = lambda r: ([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"12345"], False)
    conn = await connection()
    client, ends = FakeClient(), []
    conn.send(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
    ex = Exchange(client, conn, keep_alive=True, audit_id="a", on_end=ends.append)
    await asyncio.sleep(0.1)
    ex.client_lost()
    await asyncio.sleep(0.05)
    assert ends == [0] and conn.closed and pool.take(key) is None


async def test_unusual_answer_heads_break_the_exchange(backend):
    state, requests, pool, key, connection = backend
    for head in (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", b"garbage\r\n\r\n"):
        state["script"] = lambda r, head=head: ([head], False)
        client, ends = await broken_exchange(await connection())
        assert ends == [0] and bytes(client.transport.data) == b"", head


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_chunk_scanner_finds_the_end_however_the_bytes_arrive(step):
    body = b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nA: b\r\n\r\n"
    scanner, used = _ChunkScanner(), 0
    for i in range(0, len(body), step):
        used += scanner.scan(body[i:i + step])
        assert scanner.done == (i + step >= len(body))
    assert used == len(body)
    tail = _ChunkScanner()
    assert tail.scan(body + b"HTTP/1.1 200 OK") == len(body) and tail.done


def test_pool_drops_closed_connections():
    pool = ExpressPool()

    class Closed:
        key = ("h", 1, 0, "s")

        def usable(self) -> bool:
            return False

        def close(self) -> None:
            pass

    pool.release(Closed())  # type: ignore[arg-type]
    assert pool.take(("h", 1, 0, "s")) is None
