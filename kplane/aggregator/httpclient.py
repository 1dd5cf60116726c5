"""A lean pooled HTTP/1.1 client over asyncio streams, for the proxy's hot path.

It parses only what a proxy must (status line, header names, Content-Length,
Transfer-Encoding, Connection) and hands bodies through as bytes: a fixed-length
body in one read, a chunked body chunk by chunk (so a watch event reaches the
caller as soon as the backend flushes it). Idle keep-alive connections are kept
per (host, port, TLS identity) and reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator

from kplane.aio import wait_for

_MAX_HEAD = 64 * 1024
_MAX_IDLE_PER_KEY = 256
_STREAM_LIMIT = 2 ** 20
_NO_BODY_STATUS = frozenset((204, 304))


class BackendError(Exception):
    """The backend could not be reached or broke the exchange."""


class Connection:
    __slots__ = ("key", "reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: tuple):
        self.reader = reader
        self.writer = writer
        self.key = key
        self.reused = False

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing() and not self.reader._buffer

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken transport must not raise
            self.writer.close()


class Pool:
    def __init__(self, connect_timeout: float = 10.0):
        self.idle: dict[tuple, deque[Connection]] = {}
        self.connect_timeout = connect_timeout
        self.open_count = 0

    async def acquire(self, host: str, port: int, ctx: ssl.SSLContext | None, server_hostname: str | None,
                      fresh: bool = False) -> Connection:
        key = (host, port, id(ctx), server_hostname)
        if not fresh:
            idle = self.idle.get(key)
            while idle:
                conn = idle.pop()
                if conn.usable():
                    conn.reused = True
                    return conn
                conn.close()
        try:
            reader, writer = await wait_for(
                asyncio.open_connection(host, port, ssl=ctx, server_hostname=server_hostname if ctx else None,
                                        limit=_STREAM_LIMIT),
                self.connect_timeout)
        except TimeoutError:
            raise BackendError(f"dial tcp {_join(host, port)}: i/o timeout") from None
        except ssl.SSLCertVerificationError as e:
            reason = _x509_reason(e, server_hostname)
            raise BackendError(f"tls: failed to verify certificate: {reason}") from None
        except ssl.SSLError as e:
            reason = (e.reason or str(e)).lower().replace("_", " ")
            raise BackendError(f"remote error: tls: {reason}") from None
        except OSError as e:
            raise BackendError(f"dial tcp {_join(host, port)}: connect: {_os_reason(e)}") from None
        return Connection(reader, writer, key)

    def release(self, conn: Connection) -> None:
        if not conn.usable():
            conn.close()
            return
        idle = self.idle.setdefault(conn.key, deque())
        if len(idle) >= _MAX_IDLE_PER_KEY:
            conn.close()
            return
        idle.append(conn)

    def close(self) -> None:
        for idle in self.idle.values():
            for conn in idle:
                conn.close()
        self.idle.clear()


class Response:
    """A parsed response head plus the means to read its body."""

    __slots__ = (
        "_done",
        "chunked",
        "conn",
        "head_only",
        "headers",
        "keep_alive",
        "length",
        "pool",
        "reason",
        "status",
    )

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], conn: Connection, pool: Pool,
                 head_only: bool):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.conn = conn
        self.pool = pool
        self.head_only = head_only
        self.length: int | None = None
        self.chunked = False
        self.keep_alive = True
        self._done = False
        for name, value in headers:
            lname = name.lower()
            if lname == "content-length":
                try:
                    self.length = int(value)
                except ValueError:
                    raise BackendError("malformed Content-Length from backend") from None
            elif lname == "transfer-encoding":
                self.chunked = "chunked" in value.lower()
            elif lname == "connection" and "close" in value.lower():
                self.keep_alive = False
        if self.chunked:
            self.length = None
        if head_only or status in _NO_BODY_STATUS or 100 <= status < 200:
            self.length = 0
            self.chunked = False

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return None

    @property
    def bounded(self) -> bool:
        return self.length is not None

    async def read(self) -> bytes:
        """The whole body (for fixed-length or short responses)."""
        if self.length is not None:
            try:
                data = await self.conn.reader.readexactly(self.length) if self.length else b""
            except (asyncio.IncompleteReadError, OSError) as e:
                self.abort()
                raise BackendError(f"unexpected EOF reading body: {e}") from None
            self._finish()
            return data
        parts = [c async for c in self.iter_chunks()]
        return b"".join(parts)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        reader = self.conn.reader
        try:
            if self.length is not None:
                remaining = self.length
                while remaining:
                    chunk = await reader.read(min(remaining, 65536))
                    if not chunk:
                        raise BackendError("unexpected EOF reading body")
                    remaining -= len(chunk)
                    yield chunk
            elif self.chunked:
                while True:
                    line = await reader.readline()
                    if not line:
                        raise BackendError("unexpected EOF reading chunked body")
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while True:  # trailers
                            t = await reader.readline()
                            if t in (b"\r\n", b"\n", b""):
                                break
                        break
                    data = await reader.readexactly(size)
                    await reader.readexactly(2)
                    yield data
            else:
                self.keep_alive = False
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    yield chunk
        except (asyncio.IncompleteReadError, OSError, ValueError) as e:
            self.abort()
            raise BackendError(f"backend connection broken: {e}") from None
        except BaseException:
            self.abort()
            raise
        self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self.keep_alive:
            self.pool.release(self.conn)
        else:
            self.conn.close()

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self.conn.close()


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _x509_reason(e: ssl.SSLCertVerificationError, server_hostname: str | None) -> str:
    """Go's crypto/x509 wording for the usual verification failures."""
    code = getattr(e, "verify_code", 0)
    if code in (2, 19, 20, 21):  # unable to get issuer / self-signed in chain / local issuer / verify leaf
        return "x509: certificate signed by unknown authority"
    if code == 62:  # hostname mismatch
        return f"x509: certificate is not valid for {server_hostname}"
    if code == 10:
        return "x509: certificate has expired or is not yet valid"
    return f"x509: {getattr(e, 'verify_message', '') or e}"


def _os_reason(e: OSError) -> str:
    import errno

    if e.errno == errno.ECONNREFUSED:
        return "connection refused"
    return (e.strerror or str(e)).lower()


async def read_head(conn: Connection, pool: Pool, head_only: bool) -> Response:
    try:
        raw = await conn.reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        raise _EarlyEOF(bool(e.partial)) from None
    except asyncio.LimitOverrunError:
        raise BackendError("response head too large") from None
    except OSError as e:
        raise _EarlyEOF(False, str(e)) from None
    try:
        text = raw.decode("latin-1")
        lines = text.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        status = int(code)
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(line)
            headers.append((name.strip(), value.strip()))
    except ValueError:
        raise BackendError("malformed HTTP response from backend") from None
    resp = Response(status, reason, headers, conn, pool, head_only)
    if version == "HTTP/1.0":
        resp.keep_alive = resp.keep_alive and any(
            n.lower() == "connection" and "keep-alive" in v.lower() for n, v in headers)
    return resp


class _EarlyEOF(Exception):
    """The connection closed before a response head arrived (stale keep-alive connection)."""

    def __init__(self, partial: bool, detail: str = "EOF"):
        super().__init__(detail)
        self.partial = partial
