"""The proxy's express lane: a proxied request relayed from the connections' own callbacks.

A request proxied the ordinary way costs kplane a task, the generic filter chain and the
asyncio streams of the backend leg, about 0.3 ms more than the least a Python relay on this
event loop does for the same request (bench/_relay.py; docs/performance.md). When the fast
lane (apiserver/fastpath.py) has a whole request for an Available remote APIService, from a
caller the server can authenticate and authorize synchronously, and an idle keep-alive
connection to the backend is at hand, the proxy writes the request to that connection at once
and the connection's protocol writes the answer to the caller as it arrives: a fixed-length
body as counted bytes, a chunked one passed through chunk framing and all. Nothing is parsed
beyond what marks the end of the answer, and nothing waits on a task.

Everything else takes the ordinary path, which also answers every error: no idle connection
yet (one is dialled for the next request), an unusual answer head, or a backend connection
that closes before answering (a stale keep-alive connection), in which case the request is
handed to the ordinary path, which retries on a new connection as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE

from kplane.aio import wait_for

log = logging.getLogger("kplane.aggregator.express")

_MAX_HEAD = 64 * 1024
_MAX_IDLE_PER_KEY = 256
_MAX_DIALS_PER_KEY = 4  # connections being opened at once for one backend
_PAUSE_ABOVE = 1024 * 1024  # stop reading the backend while this much waits for a slow client
_CONNECT_TIMEOUT = 10.0
# Response headers not passed on, by either lane: hop-by-hop (RFC 7230 6.1) and the framing the
# proxy writes itself.
DROP_RESPONSE = frozenset(("connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                           "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "content-length"))
_DROP = frozenset(name.encode() for name in DROP_RESPONSE)  # as this lane reads them, in bytes


class BackendConnection(asyncio.Protocol):
    """One keep-alive TLS connection to a backend; carries one exchange at a time."""

    def __init__(self, pool: ExpressPool, key: tuple):
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:  # nothing asked: a backend talking out of turn cannot be reused
            self.close()
            return
        self.exchange.feed(data)

    def eof_received(self) -> bool:
        return False  # close the transport: an HTTP/1.1 peer that half-closes is done

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.backend_lost()

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.close()


class ExpressPool:
    """Idle backend connections of the express lane, per (host, port, TLS identity)."""

    def __init__(self) -> None:
        self.idle: dict[tuple, list[BackendConnection]] = {}
        self.dialing: dict[tuple, int] = {}
        self._dials: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks
        self.closed = False

    def take(self, key: tuple) -> BackendConnection | None:
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
        return None

    def release(self, conn: BackendConnection) -> None:
        idle = self.idle.setdefault(conn.key, [])
        if self.closed or not conn.usable() or len(idle) >= _MAX_IDLE_PER_KEY:
            conn.close()
            return
        idle.append(conn)

    def dial(self, key: tuple, host: str, port: int, ctx: ssl.SSLContext, server_hostname: str) -> None:
        """Open a connection for later requests (in the background; failures are left to the
        ordinary path, which reports them)."""
        if self.closed or self.dialing.get(key, 0) >= _MAX_DIALS_PER_KEY:
            return
        self.dialing[key] = self.dialing.get(key, 0) + 1
        task = asyncio.ensure_future(self._dial(key, host, port, ctx, server_hostname))
        self._dials.add(task)
        task.add_done_callback(self._dials.discard)

    async def _dial(self, key: tuple, host: str, port: int, ctx: ssl.SSLContext, server_hostname: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await wait_for(
                loop.create_connection(lambda: BackendConnection(self, key), host, port, ssl=ctx,
                                       server_hostname=server_hostname), _CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ssl.SSLError) as e:
            log.debug("express lane: dialling %s:%s failed: %s", host, port, e)
            return
        finally:
            self.dialing[key] -= 1
        self.release(conn)

    def close(self) -> None:
        self.closed = True
        for task in self._dials:
            task.cancel()
        for idle in self.idle.values():
            for conn in idle:
                conn.close()
        self.idle.clear()


class _Broken(Exception):
    """An answer this lane cannot pass on."""


class Exchange:
    """One proxied request on its way back: parses the backend's answer head, writes the caller
    the same answer (hop-by-hop headers replaced by its own framing, Audit-Id added), then
    passes the body through until its end.

    `client` is the caller's connection (apiserver/fastpath.py's handler): its `transport`,
    `express_finished(keep_alive)` once the answer is out, and `express_retry()` to hand the
    request to the ordinary path. `on_end(code)` is told the status once the exchange is over
    (0: broken off; -1: handed back unanswered).

    The request is sent (conn.send) before the exchange is made: the backend is at work on it
    while the proxy does its bookkeeping, and its answer cannot be read before the event loop
    runs again. `audit_id`, the caller's Audit-Id for the answer, may be set until then too."""

    def __init__(self, client: Any, conn: BackendConnection, *, keep_alive: bool,
                 on_end: Callable[[int], None], audit_id: str = ""):
        self.client = client
        self.conn = conn
        conn.exchange = self
        self.keep_alive = keep_alive
        self.audit_id = audit_id
        self.on_end = on_end
        self.buf = b""
        self.code = 0  # the status once the head is in
        self.backend_keep_alive = True
        self.remaining = -1  # fixed length: body bytes still to come
        self.chunks: _ChunkScanner | None = None
        self.complete = False  # the whole answer is passed on
        self.excess = False  # the backend sent more than its answer: its connection is not reused
        self.ended = False  # finished, broken off or handed back: nothing more to do
        self.paused = False

    # ---- from the backend ---------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.ended:
            return
        try:
            if self.code == 0:
                self.buf += data
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > _MAX_HEAD:
                        raise _Broken
                    return
                head, data, self.buf = self._head(self.buf[:end]), self.buf[end + 4:], b""
                out = head + self._body(data)
            else:
                out = self._body(data)
        except (_Broken, ValueError):
            self._broken()
            return
        self._write(out)
        if self.complete and not self.ended:
            self._finish()

    def _head(self, raw: bytes) -> bytes:
        lines = raw.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
            raise _Broken
        code = int(rest[:3])
        if code < 200:  # interim answers: kplane sends no Expect, upgrades are not in the lane
            raise _Broken
        bodiless = code in (204, 304)  # no body, whatever the headers say (RFC 9110 6.4.1)
        out = [b"HTTP/1.1 " + rest]
        length, chunked, has_date, has_server, has_cache_control = -1, False, False, False, False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise _Broken
            lname = name.strip().lower()
            if lname in _DROP:
                value = value.strip()
                if lname == b"content-length":
                    if not value.isdigit() or length >= 0:
                        raise _Broken
                    length = int(value)
                elif lname == b"transfer-encoding":
                    if value.lower() != b"chunked":
                        raise _Broken
                    chunked = True
                elif lname == b"connection" and b"close" in value.lower():
                    self.backend_keep_alive = False
                continue
            has_date = has_date or lname == b"date"
            has_server = has_server or lname == b"server"
            has_cache_control = has_cache_control or lname == b"cache-control"
            out.append(line)
        if version == b"HTTP/1.0":
            self.backend_keep_alive = False
        if bodiless:
            self.remaining, self.complete = 0, True
        elif chunked:
            self.chunks = _ChunkScanner()
            out.append(b"Transfer-Encoding: chunked")
        elif length >= 0:
            self.remaining = length
            self.complete = length == 0
            out.append(b"Content-Length: %d" % length)
        else:  # delimited by the backend closing: so is the answer to the caller
            self.backend_keep_alive = self.keep_alive = False
        if not has_date:
            out.append(b"Date: " + rfc822_formatted_time().encode())
        if not has_server:
            out.append(b"Server: " + SERVER_SOFTWARE.encode())
        if not has_cache_control:  # as the ordinary path's WithCacheControl
            out.append(b"Cache-Control: no-cache, private")
        if not self.keep_alive:
            out.append(b"Connection: close")
        out.append(b"Audit-Id: " + self.audit_id.encode("latin-1", "replace"))
        self.code = code
        return b"\r\n".join(out) + b"\r\n\r\n"

    def _body(self, data: bytes) -> bytes:
        if self.chunks is not None:
            used = self.chunks.scan(data)
            self.complete = self.chunks.done
        elif self.remaining >= 0:
            used = min(len(data), self.remaining)
            self.remaining -= used
            self.complete = self.remaining == 0
        else:
            return data
        if used < len(data):
            self.excess = True
            return data[:used]
        return data

    def _write(self, data: bytes) -> None:
        transport = self.client.transport
        if transport is None or transport.is_closing():
            self._abandon()
            return
        if data:
            transport.write(data)
        if not self.complete and not self.paused and transport.get_write_buffer_size() > _PAUSE_ABOVE:
            self.paused = True
            if self.conn.transport is not None:
                self.conn.transport.pause_reading()

    def backend_lost(self) -> None:
        """The backend closed the connection."""
        if self.ended:
            return
        if self.code == 0 and not self.buf:
            # Not a byte of answer: most likely a keep-alive connection the backend had just
            # closed. The ordinary path retries such a request on a new connection.
            self.ended = True
            self.on_end(-1)
            self.client.express_retry()
        elif self.code and self.remaining < 0 and self.chunks is None:
            self.complete = True  # an answer delimited by the close: complete
            self._finish()
        else:
            self._broken()

    # ---- from the caller ----------------------------------------------------------------------

    def client_drained(self) -> None:
        if self.paused:
            self.paused = False
            if self.conn.transport is not None:
                self.conn.transport.resume_reading()

    def client_lost(self) -> None:
        self._abandon()

    # ---- endings ------------------------------------------------------------------------------

    def _finish(self) -> None:
        self.ended = True
        conn = self.conn
        conn.exchange = None
        if self.backend_keep_alive and not self.excess:
            conn.pool.release(conn)
        else:
            conn.close()
        self.on_end(self.code)
        self.client.express_finished(self.keep_alive)

    def _broken(self) -> None:
        """The backend broke the exchange: break the caller's connection too, as the ordinary
        path does once headers are out (there is no honest way left to say more)."""
        log.info("express lane: backend broke the exchange (status %s)", self.code or "none")
        self._abandon()
        transport = self.client.transport
        if transport is not None:
            transport.close()

    def _abandon(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.conn.exchange = None
        self.conn.close()
        self.on_end(0)


class _ChunkScanner:
    """Follows chunked transfer coding across reads to find where the body ends."""

    __slots__ = ("done", "line", "need", "state")

    def __init__(self) -> None:
        self.state = "size"  # size line, chunk data (+ CRLF), or trailer lines
        self.need = 0
        self.line = b""
        self.done = False

    def scan(self, data: bytes) -> int:
        """How many bytes of `data` belong to the body (all of them until its end)."""
        pos, n = 0, len(data)
        while pos < n and not self.done:
            if self.state == "data":
                take = min(self.need, n - pos)
                pos += take
                self.need -= take
                if self.need == 0:
                    self.state = "size"
                continue
            end = data.find(b"\n", pos)
            if end < 0:
                self.line += data[pos:]
                return n
            line, self.line = (self.line + data[pos:end]).rstrip(b"\r"), b""
            pos = end + 1
            if self.state == "size":
                if not line:
                    continue  # the CRLF after a chunk's data
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.state = "trailer"
                else:
                    self.state, self.need = "data", size
            elif not line:  # the empty line after the trailers: the end of the body
                self.done = True
        return pos
