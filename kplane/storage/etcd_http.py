"""A minimal HTTP/1.1 client for etcd's v3 JSON gateway (used by kplane.storage.etcd).

Why not aiohttp: the storage layer does not import aiohttp (see DESIGN.md), and
etcd's watch endpoint needs a full-duplex request (progress requests are sent on
the open stream while events are read from it). etcd 3.4's Go HTTP/1 server
drains an unfinished *chunked* request body before it writes the first response
byte, so a chunked streaming body (what aiohttp sends) deadlocks. A request that
declares a huge Content-Length is not drained (the server only marks the
connection close-after-reply), so the stream stays open in both directions.
(One more quirk: Go holds the request body's lock while the gateway waits for
more body, and needs it to write the response header; see open_watch.)
The peer is always etcd's gateway, so the client only needs: POST with a JSON
body, Content-Length or chunked responses, keep-alive pooling, TLS, and
fail-over across the --etcd-servers list.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from kplane.aio import wait_for
from kplane.storage.interface import StorageError, UnavailableError

_STREAM_LENGTH = 1 << 40  # declared length of a watch request body (never reached)


class EtcdError(StorageError):
    """An error answered by etcd (gRPC status code and message)."""

    def __init__(self, code: int, message: str, http_status: int):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        if "://" not in url:
            url = "http://" + url
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"invalid etcd server URL {url!r}")
        return cls(u.hostname, u.port or 2379, u.scheme == "https")

    def __str__(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


def tls_context(cafile: str | None = None, certfile: str | None = None,
                keyfile: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


class _Conn:
    __slots__ = ("endpoint", "reader", "writer")

    def __init__(self, endpoint: Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.endpoint = endpoint
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("connection closed by etcd")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ConnectionResetError(f"malformed response from etcd: {line[:80]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            return status, headers
        if not line:
            raise ConnectionResetError("connection closed by etcd")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


async def _read_chunk(reader: asyncio.StreamReader) -> bytes:
    """One chunk of a chunked body; b"" at the end of the body."""
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("connection closed by etcd")
    size = int(line.split(b";", 1)[0].strip(), 16)
    if size == 0:
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b""
    data = await reader.readexactly(size + 2)
    return data[:-2]


def _error(status: int, body: bytes) -> EtcdError:
    try:
        doc = orjson.loads(body)
        message = str(doc.get("message") or doc.get("error") or body[:200])
        return EtcdError(int(doc.get("code", 2)), message, status)
    except (orjson.JSONDecodeError, AttributeError, ValueError):
        return EtcdError(2, f"etcd answered HTTP {status}: {body[:200]!r}", status)


class EtcdHTTP:
    """Pooled keep-alive connections to the first reachable etcd endpoint."""

    def __init__(self, servers: list[str], *, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = 10.0, connect_timeout: float = 3.0, max_connections: int = 64):
        if not servers:
            raise ValueError("no etcd servers given (--etcd-servers)")
        self.endpoints = [Endpoint.parse(s) for s in servers]
        if any(e.tls for e in self.endpoints) and ssl_context is None:
            ssl_context = tls_context()
        self._ssl = ssl_context
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._current = 0
        self._idle: deque[_Conn] = deque()
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    # -- connections ----------------------------------------------------------

    async def _connect_to(self, ep: Endpoint) -> _Conn:
        reader, writer = await wait_for(
            asyncio.open_connection(ep.host, ep.port, ssl=self._ssl if ep.tls else None,
                                    server_hostname=ep.host if ep.tls else None, limit=1 << 20),
            self._connect_timeout)
        return _Conn(ep, reader, writer)

    async def connect(self) -> _Conn:
        """A new connection, trying every endpoint from the current one on."""
        if self._closed:
            raise UnavailableError("etcd client is closed")
        errors = []
        n = len(self.endpoints)
        for i in range(n):
            idx = (self._current + i) % n
            ep = self.endpoints[idx]
            try:
                conn = await self._connect_to(ep)
            except (TimeoutError, OSError) as e:
                errors.append(f"{ep}: {e or type(e).__name__}")
                continue
            if idx != self._current:
                self._current = idx
                self._drop_idle()  # they point at an endpoint that failed
            return conn
        raise UnavailableError("etcd is unreachable: " + "; ".join(errors))

    def _drop_idle(self) -> None:
        while self._idle:
            self._idle.popleft().close()

    def _checkout(self) -> _Conn | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.writer.is_closing() and not conn.reader.at_eof():
                return conn
            conn.close()
        return None

    # -- unary calls ----------------------------------------------------------

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` to `path`; the decoded response. EtcdError for etcd's errors,
        UnavailableError when no endpoint answers."""
        payload = orjson.dumps(body)
        async with self._slots:
            for attempt in range(2):
                conn = self._checkout()
                reused = conn is not None
                if conn is None:
                    conn = await self.connect()
                try:
                    status, data, keep = await wait_for(self._roundtrip(conn, path, payload), self._timeout)
                except TimeoutError:
                    conn.close()
                    raise UnavailableError(f"etcd request {path} timed out after {self._timeout}s") from None
                except _StaleConnection:
                    conn.close()
                    if reused and attempt == 0:
                        continue  # a pooled connection etcd had closed: retry once on a new one
                    raise UnavailableError(f"etcd closed the connection during {path}") from None
                except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                    conn.close()
                    raise UnavailableError(f"etcd request {path} failed: {e!r}") from None
                except BaseException:
                    conn.close()  # e.g. cancelled mid-response: the connection state is unknown
                    raise
                if keep and not self._closed:
                    self._idle.append(conn)
                else:
                    conn.close()
                if status != 200:
                    raise _error(status, data)
                return orjson.loads(data)
        raise AssertionError("unreachable")

    async def _roundtrip(self, conn: _Conn, path: str, payload: bytes) -> tuple[int, bytes, bool]:
        ep = conn.endpoint
        conn.writer.write(f"POST {path} HTTP/1.1\r\nHost: {ep.host}:{ep.port}\r\nContent-Type: "
                          f"application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
        try:
            await conn.writer.drain()
            status, headers = await _read_head(conn.reader)
        except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError) as e:
            raise _StaleConnection() from e
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while chunk := await _read_chunk(conn.reader):
                parts.append(chunk)
            data = b"".join(parts)
        else:
            data = await conn.reader.readexactly(int(headers.get("content-length", "0")))
        keep = headers.get("connection", "").lower() != "close"
        return status, data, keep

    # -- watch streams ----------------------------------------------------------

    async def open_watch(self, first: dict[str, Any]) -> WatchStream:
        """A full-duplex /v3/watch stream that has sent `first` (see the module docstring)."""
        conn = await self.connect()
        ep = conn.endpoint
        conn.writer.write(f"POST /v3/watch HTTP/1.1\r\nHost: {ep.host}:{ep.port}\r\nContent-Type: "
                          f"application/json\r\nContent-Length: {_STREAM_LENGTH}\r\n\r\n".encode()
                          + orjson.dumps(first) + b"\n")
        try:
            head = asyncio.ensure_future(_read_head(conn.reader))
            try:
                # Go's server writes the response header only once it gets the request body's
                # lock, which the gateway's reader holds while it waits for more body: feed it
                # whitespace (JSON ignores it) until the header arrives.
                deadline = asyncio.get_running_loop().time() + self._timeout
                while not head.done():
                    if asyncio.get_running_loop().time() > deadline:
                        raise UnavailableError("etcd did not answer the watch request")
                    conn.writer.write(b" ")
                    await conn.writer.drain()
                    await asyncio.wait((head,), timeout=0.002)
                status, headers = head.result()
            finally:
                head.cancel()
            if status != 200:
                raise _error(status, await conn.reader.read(65536))
            if headers.get("transfer-encoding", "").lower() != "chunked":
                raise ConnectionResetError("etcd watch response is not chunked")
        except BaseException:
            conn.close()
            raise
        return WatchStream(conn)

    async def close(self) -> None:
        self._closed = True
        self._drop_idle()


class _StaleConnection(Exception):
    pass


class WatchStream:
    """Send watch requests, receive watch responses (decoded `result` objects)."""

    def __init__(self, conn: _Conn):
        self._conn = conn
        self._buf = b""
        self._lines: deque[bytes] = deque()

    @property
    def endpoint(self) -> Endpoint:
        return self._conn.endpoint

    async def send(self, request: dict[str, Any]) -> None:
        self._conn.writer.write(orjson.dumps(request) + b"\n")
        await self._conn.writer.drain()

    async def recv(self) -> dict[str, Any]:
        """The next response. ConnectionError when the stream ends, EtcdError for an error message."""
        reader = self._conn.reader
        while not self._lines:
            chunk = await _read_chunk(reader)
            if not chunk:
                raise ConnectionResetError("etcd ended the watch stream")
            self._buf += chunk
            *complete, self._buf = self._buf.split(b"\n")
            self._lines.extend(line for line in complete if line.strip())
        msg = orjson.loads(self._lines.popleft())
        if "result" in msg:
            return msg["result"]
        err = msg.get("error") or msg
        raise EtcdError(int(err.get("grpc_code", err.get("code", 2))), str(err.get("message", err)),
                        int(err.get("http_code", 500)))

    def close(self) -> None:
        self._conn.close()
