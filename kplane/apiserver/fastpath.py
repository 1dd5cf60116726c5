"""A fast lane past aiohttp's per-request machinery for API requests.

aiohttp spends over 100 µs of CPU per request on this machine before a handler runs and after
it returns (its message queue, a task per request, the Request object, routing and middleware,
the response writer): a third of a GET's cost and a quarter of what a request proxied to an
extension API server costs kplane (docs/performance.md). For the request targets a predicate
claims (`GenericAPIServer.fast_path`: by default every `/api/…` and `/apis/…` path) this
protocol parses the request head itself and runs the very same filter chain and dispatch on a
small request object offering what they use (`FastRequest`); everything else — and anything
unusual about a claimed request — is handed to aiohttp untouched, byte for byte, so both lanes
answer alike.

A request takes the fast lane only when aiohttp holds no state for the connection (no request
queued or in progress, no body still arriving, no partial head in its parser), the request is
HTTP/1.1 GET/POST/PUT/PATCH/DELETE with no body or a Content-Length body within aiohttp's own
size limit, it is not an upgrade, a watch or an `Expect: 100-continue`, and audit logging is off
(the auditor reads the full aiohttp request). While a fast request runs, bytes that arrive after
it (a pipelining client) are held and replayed once it has answered, so responses keep their
order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.http_writer import StreamWriter
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy
from yarl import URL

from kplane.aio import wait_for
from kplane.apiserver import onewrite
from kplane.apiserver.authn_requestheader import transport_certificate_der

log = logging.getLogger("kplane.apiserver.fastpath")
_UNSET = object()  # a per-connection fact not looked up yet (None is a valid answer)

_METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE"))
# The largest request head either lane accepts: kube-apiserver's http.Server has MaxHeaderBytes 1 MiB
# (secure_serving.go), and Go's server reads a head up to that plus 4096 bytes of bufio slop
# (initialReadLimitSize); beyond it Go answers TOO_LARGE and closes. aiohttp's own limits (8190
# bytes a line, 128 headers) refused long URLs and large tokens that upstream takes; HEAD_LIMITS
# raise them, and the protocol below counts the head as a whole.
MAX_HEAD_BYTES = (1 << 20) + 4096
HEAD_LIMITS = {"max_line_size": MAX_HEAD_BYTES, "max_field_size": MAX_HEAD_BYTES,
               "max_headers": MAX_HEAD_BYTES // 4}  # "a:\r\n": a head within the limit has no more headers
# Go's answer to a head past the limit (net/http server.go, conn.serve), written raw, without Content-Length.
TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
             b"Connection: close\r\n\r\n431 Request Header Fields Too Large")
# After it Go's closeWriteAndWait waits this long before closing, so that the client can read the
# answer before the rest of what it sent makes the close a reset (rstAvoidanceDelay).
_RST_AVOIDANCE_DELAY = 0.5
_MAX_HEAD = 64 * 1024  # heads the fast lane parses itself; longer ones (up to MAX_HEAD_BYTES) go to aiohttp
_HOLD_LIMIT = 1024 * 1024  # bytes held behind a running fast request before reading pauses
_KEEPALIVE_HOLD = 3600.0  # aiohttp's idle timer must not close a connection mid fast request
# kube-apiserver's ReadHeaderTimeout (secure_serving.go): a request head, the first one counted from
# the connection's start, must be complete within this or the connection is closed without an
# answer, as Go's server does; aiohttp has no such limit, so a client trickling a head held its
# connection open forever.
READ_HEADER_TIMEOUT = 32.0

# Filters + dispatch, as the GenericAPIServer runs them for aiohttp's requests.
Serve = Callable[["FastRequest"], Awaitable[web.StreamResponse]]


class FastLane:
    """What the fast lane needs from the server: which paths to claim and how to serve them."""

    def __init__(self, claims: Callable[[str], bool], serve: Serve, max_body: int,
                 on_response_prepare: Callable[[Any, web.StreamResponse], Awaitable[None]],
                 enabled: Callable[[], bool]):
        self.claims = claims
        self.serve = serve
        self.max_body = max_body
        self.on_response_prepare = on_response_prepare
        self.enabled = enabled
        self.served = 0  # requests answered in the lane (kplane_apiserver_fast_lane_requests_total)
        # A delegate that can answer a request from callbacks, without a task (the aggregator's
        # express lane): returns the in-flight exchange, or None to leave the request to `serve`.
        self.express: Callable[[FastRequest], Any] | None = None

    def metrics_text(self) -> str:
        name = "kplane_apiserver_fast_lane_requests_total"
        return (f"# HELP {name} API requests answered past aiohttp's request machinery.\n"
                f"# TYPE {name} counter\n{name} {self.served}\n")


class FastRequest:
    """The parts of aiohttp's web.Request that the filter chain, the delegates and the response
    classes use; `request[...]` is per-request state as on web.Request."""

    __slots__ = ("_body", "_content", "_lane", "_protocol", "_state", "_url", "_writer", "headers",
                 "impersonating", "keep_alive", "method", "raw_path", "transport", "version")

    def __init__(self, lane: FastLane, protocol: RequestHandler, method: str, raw_path: str,
                 headers: CIMultiDictProxy[str], body: bytes, keep_alive: bool, impersonating: bool = False):
        self._lane = lane
        self.impersonating = impersonating  # an Impersonate-* header is present
        self.method = method
        self.raw_path = raw_path
        self.headers = headers
        self._body = body
        self._content: _Body | None = None
        self.keep_alive = keep_alive
        self.version = HttpVersion11
        self.transport = protocol.transport
        self._protocol = protocol
        self._url: URL | None = None  # built when asked for (a proxied request never is)
        self._state: dict[str, Any] = {}
        self._writer: StreamWriter | None = None

    # per-request state, as web.Request's MutableMapping
    def __getitem__(self, key: str) -> Any:
        return self._state[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._state[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._state

    def get(self, key: str, default: Any = None) -> Any:
        return self._state.get(key, default)

    @property
    def remote(self) -> str | None:
        """The peer's address, as web.Request.remote (looked up once per connection)."""
        return self._protocol.peer_host()

    def peer_certificate_der(self) -> bytes | None:
        """The TLS client certificate's DER bytes, looked up once per connection."""
        return self._protocol.peer_certificate_der()

    @property
    def rel_url(self) -> URL:  # web.Request.rel_url: the target as sent, without scheme and host
        if self._url is None:
            path, _, query = self.raw_path.partition("?")
            self._url = URL.build(path=path, query_string=query, encoded=True)
        return self._url

    @property
    def path(self) -> str:
        return self.rel_url.path

    @property
    def query(self) -> MultiDictProxy[str]:
        return self.rel_url.query  # what web.Request.query is: yarl's parse of the same target

    @property
    def query_string(self) -> str:
        return self.rel_url.query_string

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None else None

    @property
    def body_exists(self) -> bool:
        return bool(self._body)

    can_read_body = body_exists

    async def read(self) -> bytes:
        return self._body

    @property
    def content(self) -> _Body:
        if self._content is None:
            self._content = _Body(self._body)
        return self._content

    @property
    def writer(self) -> StreamWriter:
        if self._writer is None:
            self._writer = StreamWriter(self._protocol, self._protocol._loop)
        return self._writer

    @property
    def _payload_writer(self) -> StreamWriter:  # what aiohttp's responses write through
        return self.writer

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        await self._lane.on_response_prepare(self, response)


class _Body:
    """The request body (already received in full) as the StreamReader calls handlers make."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes):
        self._data = data
        self._pos = 0

    async def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        chunk, self._pos = self._data[self._pos:end], min(end, len(self._data))
        return chunk

    async def readany(self) -> bytes:
        return await self.read()

    async def iter_any(self) -> AsyncIterator[bytes]:
        chunk = await self.read()
        if chunk:
            yield chunk

    def at_eof(self) -> bool:
        return self._pos >= len(self._data)

    is_eof = at_eof


class FastRequestHandler(RequestHandler):
    """aiohttp's connection protocol with the fast lane in front of its parser."""

    __slots__ = ("_aio_head", "_aio_partial", "_aio_payload", "_express", "_express_over", "_express_request",
                 "_fast_head", "_fast_held", "_fast_held_paused", "_fast_repeat", "_fast_task", "_fast_wait",
                 "_header_timer", "_lane", "_peer_der", "_peer_host", "_refused", "express_verdict")

    def __init__(self, *args: Any, lane: FastLane, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._lane = lane
        self._fast_task: asyncio.Task[None] | None = None
        self._fast_wait = b""  # the start of a claimed request whose head or body is incomplete
        self._fast_held = b""  # bytes that arrived while a fast request ran
        self._fast_held_paused = False
        self._aio_partial = False  # aiohttp's parser holds part of a request head
        self._aio_payload: Any = None  # the body stream of the last request aiohttp parsed
        self._aio_head = 0  # bytes of a request head aiohttp's parser holds (MAX_HEAD_BYTES at most)
        self._refused = False  # TOO_LARGE was written: what else arrives is dropped until the close
        self._express: Any = None  # an exchange of the lane's express delegate in flight
        self._express_request: FastRequest | None = None
        self._express_over: asyncio.Event | None = None  # set when it ends (graceful shutdown waits)
        # Per-connection facts, the same for every request on it: looked up on first use.
        self._peer_host: Any = _UNSET
        self._peer_der: Any = _UNSET
        self._fast_head: _Head | None = None  # the last header block parsed on this connection
        # The last bodiless request that came in one read of its own, as taken: a read with the
        # same bytes is the same request, and is taken without parsing it again.
        self._fast_repeat: tuple[bytes, str, str, _Head] | None = None
        self._header_timer: asyncio.TimerHandle | None = None  # armed while a request head is awaited
        self.express_verdict: Any = None  # the server's last express decision on this connection (server.py)

    def peer_host(self) -> str | None:
        if self._peer_host is _UNSET:
            peer = self.transport.get_extra_info("peername") if self.transport is not None else None
            self._peer_host = peer[0] if isinstance(peer, (tuple, list)) and peer else None
        return self._peer_host

    def peer_certificate_der(self) -> bytes | None:
        if self._peer_der is _UNSET:
            self._peer_der = transport_certificate_der(self.transport)
        return self._peer_der

    # ---- protocol ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()  # the first request head is counted from the connection's start

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._receive(data)
        if self._refused:
            return
        if self._aio_partial or (self._fast_wait and b"\r\n\r\n" not in self._fast_wait):
            if self._header_timer is None:  # a request head has begun: it has READ_HEADER_TIMEOUT
                self._arm_header_timer()
        elif self._header_timer is not None:
            self._disarm_header_timer()

    def _arm_header_timer(self) -> None:
        self._header_timer = self._loop.call_later(READ_HEADER_TIMEOUT, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport is not None:
            log.debug("closing a connection whose request head did not arrive within %ss", READ_HEADER_TIMEOUT)
            self.transport.close()

    def _receive(self, data: bytes) -> None:
        if self._fast_task is not None or self._express is not None:
            self._hold(data)
            return
        if self._fast_wait:
            data, self._fast_wait = self._fast_wait + data, b""
        elif not (self._aiohttp_idle() and self._lane.enabled()):
            self._to_aiohttp(data)
            return
        taken = self._take(data)
        if taken is None:  # not ours: aiohttp gets all of it (it has seen none of these bytes)
            self._to_aiohttp(data)
            return
        request, rest = taken
        if request is None:  # ours so far, but incomplete
            self._fast_wait = data
            return
        express = self._lane.express
        exchange = express(request) if express is not None else None
        if exchange is not None:
            self._lane.served += 1
            self._express, self._express_request = exchange, request
        else:
            self._fast_task = asyncio.ensure_future(self._serve(request))
        self._next_keepalive_close_time = self._loop.time() + _KEEPALIVE_HOLD
        if rest:
            self._hold(rest)  # replayed once this request is answered

    async def shutdown(self, timeout: float | None = 15.0) -> None:
        """aiohttp's graceful shutdown, which also lets a fast request in flight finish (up to
        `timeout`) instead of cutting it when the connection is closed."""
        self._force_close = True  # no new request in either lane
        if self._express is not None:  # an express exchange has no task to wait for
            self._express_over = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await wait_for(self._express_over.wait(), timeout)
        task = self._fast_task
        if task is not None and not task.done():
            try:
                await wait_for(asyncio.shield(task), timeout)
            except (TimeoutError, asyncio.CancelledError):
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        await super().shutdown(timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_timer()
        task, self._fast_task = self._fast_task, None
        if task is not None and not task.done():
            task.cancel()
        exchange, self._express = self._express, None
        if exchange is not None:
            exchange.client_lost()
            self._express_ended()
        super().connection_lost(exc)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._express is not None:
            self._express.client_drained()

    # ---- the express delegate's callbacks ------------------------------------------------------

    def express_finished(self, keep_alive: bool) -> None:
        """The exchange has written its whole answer."""
        self._express = self._express_request = None
        self._express_ended()
        self._after_response(keep_alive)

    def express_retry(self) -> None:
        """The exchange could not answer (nothing was written): serve the request the ordinary way."""
        request, self._express, self._express_request = self._express_request, None, None
        self._express_ended()
        if request is not None and self.transport is not None and not self.transport.is_closing():
            self._fast_task = asyncio.ensure_future(self._serve(request, count=False))

    # ---- lanes ------------------------------------------------------------------------------------

    def _aiohttp_idle(self) -> bool:
        payload = self._aio_payload
        return (not self._messages and not self._request_in_progress and not self._aio_partial
                and (payload is None or payload.is_eof()) and self._payload_parser is None
                and not self._upgraded and not self._force_close and not self._close)

    def _to_aiohttp(self, data: bytes) -> None:
        payload = self._aio_payload
        # aiohttp's parser is reading a request head (not a body, nor an upgraded stream): count it.
        in_head = (payload is None or payload.is_eof()) and self._payload_parser is None and not self._upgraded
        if in_head and self._aio_head + len(data) > MAX_HEAD_BYTES:
            end = data.find(b"\r\n\r\n")
            if self._aio_head + (len(data) if end < 0 else end + 4) > MAX_HEAD_BYTES:
                self._refuse_head()
                return
        before = self._request_count
        idle = self._aiohttp_idle()
        super().data_received(data)
        parsed = self._request_count - before
        if parsed:
            self._aio_payload = self._messages[-1][1] if self._messages else None
            self._aio_partial = False
            self._aio_head = 0
        else:
            if idle:
                self._aio_partial = True  # a head split across reads: aiohttp's parser holds its start
            if in_head:
                self._aio_head += len(data)

    def _refuse_head(self) -> None:
        """A request head past MAX_HEAD_BYTES: answer as Go's server does and close."""
        transport = self.transport
        self._refused = self._force_close = True
        self._disarm_header_timer()
        if transport is None:
            return
        log.debug("refusing a request head of more than %d bytes", MAX_HEAD_BYTES)
        transport.write(TOO_LARGE)
        self._loop.call_later(_RST_AVOIDANCE_DELAY, transport.close)

    def _take(self, data: bytes) -> tuple[FastRequest | None, bytes] | None:
        """(request, bytes after it); (None, b"") when a claimed request is still arriving; None
        when the request is not for the fast lane."""
        repeat = self._fast_repeat
        if repeat is not None and repeat[0] == data:
            _, method, target, parsed = repeat
            return FastRequest(self._lane, self, method, target, parsed.headers, b"", parsed.keep_alive,
                               parsed.impersonating), b""
        line_end = data.find(b"\r\n", 0, _MAX_HEAD)
        if line_end < 0:
            return (None, b"") if len(data) < _MAX_HEAD and self._could_be_claimed(data) else None
        try:
            method, target, version = data[:line_end].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            return None
        if method not in _METHODS or version != "HTTP/1.1" or not _TARGET.fullmatch(target) \
                or not self._lane.claims(target) or _watch_target(target):
            return None
        head_end = data.find(b"\r\n\r\n", line_end)
        if head_end < 0:
            return (None, b"") if len(data) < _MAX_HEAD else None
        head = data[line_end + 2:head_end]
        cached = self._fast_head
        if cached is not None and cached.raw == head:
            parsed = cached  # the same header block as the last request on this connection
        else:
            parsed = _parse_head(head, self._lane.max_body)
            if parsed is None:
                return None
            self._fast_head = parsed
        length = parsed.length
        body_start = head_end + 4
        if len(data) - body_start < length:
            return None, b""
        body = data[body_start:body_start + length]
        request = FastRequest(self._lane, self, method, target, parsed.headers, body, parsed.keep_alive,
                              parsed.impersonating)
        if length == 0 and body_start == len(data):
            self._fast_repeat = (data, method, target, parsed)
        return request, data[body_start + length:]

    def _could_be_claimed(self, data: bytes) -> bool:
        method, _, rest = data.partition(b" ")
        return method.decode("latin-1") in _METHODS and rest[:1] in (b"", b"/")

    def _hold(self, data: bytes) -> None:
        self._fast_held += data
        if len(self._fast_held) > _HOLD_LIMIT and not self._fast_held_paused and self.transport is not None:
            self._fast_held_paused = True
            self.transport.pause_reading()

    def _express_ended(self) -> None:
        if self._express_over is not None:
            self._express_over.set()

    async def _serve(self, request: FastRequest, count: bool = True) -> None:
        if count:
            self._lane.served += 1
        keep_alive = request.keep_alive
        try:
            try:
                resp = await self._lane.serve(request)
            except web.HTTPException as e:  # aiohttp turns these into responses; so does the fast lane
                resp = e
            sent = None
            if onewrite.plain(resp):
                sent = await onewrite.send(request, resp.status, resp.reason, resp.headers,  # type: ignore[arg-type]
                                           resp.body)  # type: ignore[arg-type]
            if sent is not None:
                resp = sent
            else:
                await resp.prepare(request)  # type: ignore[arg-type]
                await resp.write_eof()
            keep_alive = keep_alive and bool(resp.keep_alive)
        except (asyncio.CancelledError, ConnectionError):
            return
        except Exception:  # noqa: BLE001 - the connection is in an unknown state: close it, as aiohttp does
            log.exception("fast lane: error answering %s %s", request.method, request.raw_path)
            keep_alive = False
        finally:
            self._fast_task = None
        self._after_response(keep_alive)

    def _after_response(self, keep_alive: bool) -> None:
        """A request of the lane is answered: close, or go on with what arrived meanwhile."""
        transport = self.transport
        if transport is None:
            return
        if not keep_alive:
            transport.close()
            return
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        held, self._fast_held = self._fast_held, b""
        if self._fast_held_paused:
            self._fast_held_paused = False
            with contextlib.suppress(Exception):
                transport.resume_reading()
        if held:
            self.data_received(held)


# What aiohttp's parser would refuse (or has to judge) is left to it, so that a malformed request
# gets aiohttp's 400 in either lane: control characters other than tab anywhere in the head,
# header names that are not HTTP tokens, a request target with anything but visible ASCII or with
# a fragment ("#": aiohttp's parser splits it off).
_TARGET = re.compile(r"/[\x21\x22\x24-\x7e]*")
# Header lines "token:value" (no control character in the value but tab), the whole head in one match.
_HEAD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*"
                   r"(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*)*")


class _Head:
    """A request's header block as the fast lane parsed it. Clients send the same block on every
    request of a keep-alive connection (client-go, kubectl, the Python client: Host, User-Agent,
    Accept, Authorization), so a connection keeps the last one and a byte-identical block is
    not parsed again; the headers are immutable, so requests may share them."""

    __slots__ = ("headers", "impersonating", "keep_alive", "length", "raw")

    def __init__(self, raw: bytes, headers: CIMultiDictProxy[str], length: int, keep_alive: bool):
        self.raw = raw
        self.headers = headers
        self.length = length
        self.keep_alive = keep_alive
        self.impersonating = any(name[:12].lower() == "impersonate-" for name in headers)


def _parse_head(raw: bytes, max_body: int) -> _Head | None:
    """The header block of a request for the fast lane; None when aiohttp should have it."""
    headers = _parse_headers(raw)
    if headers is None or not _plain(headers):
        return None
    length_value = headers.get("Content-Length")
    length = 0
    if length_value is not None:
        if not length_value.isdigit():
            return None
        length = int(length_value)
        if length > max_body:
            return None
    keep_alive = "close" not in headers.get("Connection", "").lower()
    return _Head(raw, CIMultiDictProxy(headers), length, keep_alive)


def _parse_headers(head: bytes) -> CIMultiDict[str] | None:
    text = head.decode("latin-1")
    if not _HEAD.fullmatch(text):
        return None  # obsolete line folding, whitespace before the colon, odd bytes: aiohttp decides
    headers: CIMultiDict[str] = CIMultiDict()
    for line in text.split("\r\n"):
        name, _, value = line.partition(":")
        headers.add(name, value.strip(" \t"))
    return headers


def _plain(headers: CIMultiDict[str]) -> bool:
    """No body framing, upgrade or expectation the fast lane leaves to aiohttp."""
    if "Transfer-Encoding" in headers or "Upgrade" in headers or "Expect" in headers:
        return False
    if len(headers.getall("Content-Length", ())) > 1:
        return False
    return "upgrade" not in headers.get("Connection", "").lower()


def _watch_target(target: str) -> bool:
    """A watch (by path or by query), which aiohttp's lane streams."""
    path, _, query = target.partition("?")
    if "/watch/" in path:
        return True
    return "watch" in unquote(query) and any(k == "watch" and v.lower() in ("1", "true")
                                             for k, v in parse_qsl(query, keep_blank_values=True))


class _FastServer(web.Server):
    """aiohttp's protocol factory, building FastRequestHandlers."""

    _fast_lane: FastLane

    def __call__(self) -> RequestHandler:
        return FastRequestHandler(self, loop=self._loop, lane=self._fast_lane, **self._kwargs)


# The aiohttp internals the lane reads (RequestHandler slots; checked on install, so that an
# aiohttp without them runs every request through aiohttp instead of failing per request).
_HANDLER_INTERNALS = ("_messages", "_request_in_progress", "_request_count", "_payload_parser", "_upgraded",
                      "_force_close", "_close", "_next_keepalive_close_time", "_keepalive_timeout", "_loop")


def install(server: web.Server, lane: FastLane) -> bool:
    """Make an aiohttp Server (the protocol factory of a runner's sites) build fast-lane protocols.
    The runner created the Server itself (Application._make_handler), so it is re-classed here
    rather than constructed; _FastServer adds no state aiohttp would not set up. False (and no
    lane) when this aiohttp lacks an internal the lane relies on."""
    missing = [name for name in _HANDLER_INTERNALS if not hasattr(RequestHandler, name)]
    if missing or not hasattr(server, "_kwargs"):
        log.warning("fast lane off: this aiohttp lacks %s", ", ".join(missing) or "Server._kwargs")
        return False
    server._fast_lane = lane  # type: ignore[attr-defined]
    server.__class__ = _FastServer
    return True
