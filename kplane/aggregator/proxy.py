"""The proxy for remote APIServices (kube-aggregator's handler_proxy).

For a request under /apis/<group>/<version> of an APIService with a service:
503 "service unavailable" (plain text, as upstream's http.Error) unless the
APIService is Available; resolve a ready endpoint; open (or reuse) a mutual-TLS
connection with the front-proxy client certificate, verifying the backend
against caBundle with server name <service>.<namespace>.svc unless
insecureSkipTLSVerify; replace the caller's Authorization and X-Remote-*
headers with X-Remote-User / X-Remote-Group / X-Remote-Extra-<escaped key>;
pass the response through (fixed-length bodies in one write, chunked bodies
chunk by chunk, so watch events are flushed as they arrive).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from kplane.aggregator import apiservice as apis
from kplane.aggregator.endpoints import EndpointResolver, ResolveError
from kplane.aggregator.express import DROP_RESPONSE, Exchange, ExpressPool
from kplane.aggregator.httpclient import BackendError, Pool, Response, _EarlyEOF, read_head
from kplane.aggregator.metrics import AggregatorMetrics
from kplane.apiserver import onewrite
from kplane.apiserver.handlers import client_gone
from kplane.memo import remember

log = logging.getLogger("kplane.aggregator.proxy")

# Request headers never forwarded: hop-by-hop (RFC 7230 6.1), the caller's credentials and
# identity claims (nobody may forge X-Remote-*), and the ones this proxy sets itself.
_DROP_REQUEST = frozenset((
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length", "authorization", "x-remote-user",
    "x-remote-uid", "x-remote-group", "x-forwarded-for"))
_DROP_PREFIXES = ("x-remote-extra-", "impersonate-")

# Request bodies up to this size are read first (retry-safe); larger ones are streamed to the backend,
# which alone decides how large a body it takes (below aiohttp's client_max_size, which read() enforces).
_BUFFER_BODY_LIMIT = 1024 * 1024
_BUFFER_RESPONSE_LIMIT = 4 * 1024 * 1024  # fixed-length responses up to this size are sent in one write
_WATCHDOG_INTERVAL = 5.0

@dataclass(frozen=True)
class _User:
    name: str
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)


AGGREGATOR_USER = _User("system:kube-aggregator", ("system:masters",))

_TOKEN = frozenset(b"!#$&'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz|~")


def header_key_escape(key: str) -> str:
    """client-go's headerKeyEscape: %-encode every byte that is not an HTTP token byte, and '%'."""
    out = []
    for b in key.encode("utf-8"):
        out.append(chr(b) if b in _TOKEN else f"%{b:02X}")
    return "".join(out)


def identity_headers(user: Any) -> list[tuple[str, str]]:
    """SetAuthProxyHeaders (X-Remote-Uid only with the RemoteRequestHeaderUID gate, off in 1.32)."""
    out = [("X-Remote-User", user.name)]
    out.extend(("X-Remote-Group", g) for g in user.groups)
    for key, values in (user.extra or {}).items():
        name = "X-Remote-Extra-" + header_key_escape(key)
        out.extend((name, v) for v in values)
    return out


def request_head(method: str, raw_path: str, headers: Any, host: str, port: int, user: Any, remote: str | None,
                 upgrade: bool = False) -> list[str]:
    """The request line and headers sent to the backend (no framing headers: the caller adds them)."""
    lines = [f"{method} {raw_path} HTTP/1.1", f"Host: {_host(host, port)}"]
    kept, forwarded_for = forward_headers(headers, upgrade)
    lines += [f"{name}: {value}" for name, value in kept]
    lines += _identity_lines(user)
    if remote:
        # As Go's ReverseProxy: the caller's address appended to what earlier proxies said.
        forwarded_for.append(remote)
        lines.append(f"X-Forwarded-For: {', '.join(forwarded_for)}")
    return lines


_identity_cache: dict[int, tuple[Any, list[str]]] = {}


def _identity_lines(user: Any) -> list[str]:
    """identity_headers as header lines, remembered per user object: an authenticator hands out
    the same one for every request with the same credential."""
    hit = _identity_cache.get(id(user))
    if hit is not None and hit[0] is user:
        return hit[1]
    lines = [f"{name}: {value}" for name, value in identity_headers(user)]
    remember(_identity_cache, id(user), (user, lines))
    return lines


_header_block_cache: dict[int, tuple[Any, Any, str | None, bytes]] = {}
_start_line_cache: dict[tuple[str, str, str, int], bytes] = {}  # request line and Host, encoded
_CACHED_HEAD_MAX = 16 * 1024  # longer header blocks and request lines are encoded every time


def request_head_bytes(method: str, raw_path: str, headers: Any, host: str, port: int, user: Any,
                       remote: str | None, content_length: int | None) -> bytes:
    """request_head, encoded, for the express lane. The fast lane hands requests on one
    keep-alive connection the same immutable headers object while the caller sends the same
    header block (fastpath._Head), so the part after the Host line — forwarded headers,
    identity, X-Forwarded-For — is remembered per (headers, user, remote), and the request line
    with the Host per (method, target, backend)."""
    hit = _header_block_cache.get(id(headers))
    if hit is not None and hit[0] is headers and hit[1] is user and hit[2] == remote:
        block = hit[3]
    else:
        lines = request_head(method, raw_path, headers, host, port, user, remote)[2:]
        block = "".join(f"{line}\r\n" for line in lines).encode("latin-1", "replace")
        if len(block) <= _CACHED_HEAD_MAX:  # heads may be up to 1 MiB: a full cache stays small
            remember(_header_block_cache, id(headers), (headers, user, remote, block))
    start = _start_line_cache.get((method, raw_path, host, port))
    if start is None:
        start = f"{method} {raw_path} HTTP/1.1\r\nHost: {_host(host, port)}\r\n".encode("latin-1", "replace")
        if len(start) <= _CACHED_HEAD_MAX:
            remember(_start_line_cache, (method, raw_path, host, port), start)
    if content_length is None:
        return start + block + b"\r\n"
    return start + block + b"Content-Length: %d\r\n\r\n" % content_length


def forward_headers(headers: Any, upgrade: bool = False) -> tuple[list[tuple[str, str]], list[str]]:
    """The caller's headers minus hop-by-hop, credentials and identity claims; and, in the same
    pass, the X-Forwarded-For values earlier proxies set."""
    out: list[tuple[str, str]] = []
    forwarded_for: list[str] = []
    for name, value in headers.items():
        lname = name.lower()
        if lname in _DROP_REQUEST or lname.startswith(_DROP_PREFIXES):
            if lname == "x-forwarded-for":
                forwarded_for.append(value)
            elif upgrade and lname in ("connection", "upgrade"):
                out.append((name, value))
            continue
        out.append((name, value))
    return out, forwarded_for


@dataclass
class Target:
    """How to reach one remote APIService (proxyHandlingInfo)."""

    name: str
    namespace: str
    service: str
    port: int
    available: bool
    ssl_context: ssl.SSLContext | None
    server_hostname: str
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def client_ssl_context(client_cert: str | None, client_key: str | None, ca_pem: bytes,
                       insecure: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert and client_key:
        ctx.load_cert_chain(client_cert, client_key)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif ca_pem:
        ctx.load_verify_locations(cadata=ca_pem.decode("ascii", "replace"))
    else:
        ctx.load_default_certs()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def build_target(obj: dict[str, Any], client_cert: str | None, client_key: str | None) -> Target:
    svc = apis.service_ref(obj) or {}
    name = obj["metadata"]["name"]
    t = Target(name=name, namespace=svc.get("namespace", ""), service=svc.get("name", ""),
               port=int(svc.get("port") or 443), available=apis.is_available(obj), ssl_context=None,
               server_hostname=f"{svc.get('name', '')}.{svc.get('namespace', '')}.svc")
    try:
        t.ssl_context = client_ssl_context(client_cert, client_key, apis.ca_bundle_bytes(obj),
                                           bool(apis.spec(obj).get("insecureSkipTLSVerify")))
    except (ssl.SSLError, OSError, ValueError) as e:
        t.error = f"failed to build transport for {name}: {e}"
    return t


def plain_error(message: str, status: int) -> web.Response:
    """Go's http.Error: text/plain, nosniff, message plus newline."""
    return web.Response(status=status, text=message + "\n", charset="utf-8", content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"})


class Proxy:
    def __init__(self, resolver: EndpointResolver, metrics: AggregatorMetrics | None = None):
        self.resolver = resolver
        self.targets: dict[tuple[str, str], Target] = {}
        self.pool = Pool()
        self.express = ExpressPool()
        self.metrics = metrics or AggregatorMetrics()

    # ---- the delegate -------------------------------------------------------------------------------

    async def __call__(self, request: web.Request, info: Any) -> web.StreamResponse | None:
        if info.api_prefix != "apis" or not info.api_version:
            return None
        target = self.targets.get((info.api_group, info.api_version))
        if target is None:
            return None
        start = time.perf_counter()
        resp: web.StreamResponse | None = None
        request["proxied"] = True  # counted by the server behind it, not in apiserver_request_total
        self.metrics.started(target.name)
        try:
            resp = await self._serve(request, target)
            return resp
        finally:
            code = resp.status if resp is not None else 0
            self.metrics.observe(target.name, request.method, code, time.perf_counter() - start)

    async def _serve(self, request: web.Request, target: Target) -> web.StreamResponse:
        if not target.available:
            return plain_error("service unavailable", 503)
        if target.error or target.ssl_context is None:
            return plain_error(target.error or "no transport", 500)
        user = request.get("user")
        if user is None:
            return plain_error("missing user", 500)
        try:
            ep = self.resolver.resolve(target.namespace, target.service, target.port)
        except ResolveError as e:
            log.info("error resolving %s/%s: %s", target.namespace, target.service, e)
            return plain_error("service unavailable", 503)
        upgrade = "upgrade" in request.headers.get("Connection", "").lower() and "Upgrade" in request.headers
        if upgrade:
            return await self._upgrade(request, target, ep.host, ep.port, user)
        return await self._roundtrip(request, target, ep.host, ep.port, user)

    def _head(self, request: web.Request, host: str, port: int, user: Any,
              upgrade: bool = False) -> list[str]:
        return request_head(request.method, request.raw_path, request.headers, host, port, user, request.remote,
                            upgrade)

    # ---- the express lane (express.py) ------------------------------------------------------------

    def claims(self, info: Any) -> bool:
        """Whether `info` is a request for an Available remote APIService (the server's express
        lane asks before authenticating)."""
        if info.api_prefix != "apis" or not info.api_version:
            return False
        target = self.targets.get((info.api_group, info.api_version))
        return target is not None and target.available

    def serve_now(self, request: Any, info: Any, user: Any) -> Exchange | None:
        """Start relaying an authorized request (fully received, as the fast lane parsed it) on an
        idle backend connection; None, having dialled one for the next request if there was
        none, when the ordinary path must serve it. The request is on its way before anything
        else is done with it (express.Exchange)."""
        target = self.targets.get((info.api_group, info.api_version))
        if target is None or not target.available or target.error or target.ssl_context is None:
            return None
        try:
            ep = self.resolver.resolve(target.namespace, target.service, target.port)
        except ResolveError:
            return None
        key = (ep.host, ep.port, id(target.ssl_context), target.server_hostname)
        conn = self.express.take(key)
        if conn is None:
            self.express.dial(key, ep.host, ep.port, target.ssl_context, target.server_hostname)
            return None
        body = request._body
        head = request_head_bytes(request.method, request.raw_path, request.headers, ep.host, ep.port, user,
                                  request.remote,
                                  len(body) if body or request.method in ("POST", "PUT", "PATCH") else None)
        start = time.perf_counter()
        conn.send(head + body)
        name, method = target.name, request.method
        self.metrics.started(name)

        def on_end(code: int) -> None:
            if code < 0:  # handed back to the ordinary path, which counts it
                self.metrics.inflight[name] -= 1
            else:
                self.metrics.observe(name, method, code, time.perf_counter() - start)
                self.metrics.express[name] = self.metrics.express.get(name, 0) + 1

        return Exchange(request._protocol, conn, keep_alive=request.keep_alive, on_end=on_end)

    async def _roundtrip(self, request: web.Request, target: Target, host: str, port: int,
                         user: Any) -> web.StreamResponse:
        lines = self._head(request, host, port, user)
        length = request.content_length
        body: bytes | None = None
        streamed = False
        if request.body_exists:
            if length is not None and length <= _BUFFER_BODY_LIMIT:
                body = await request.read()
                lines.append(f"Content-Length: {len(body)}")
            else:
                streamed = True
                if length is not None:
                    lines.append(f"Content-Length: {length}")
                else:
                    lines.append("Transfer-Encoding: chunked")
        elif request.method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        head_only = request.method == "HEAD"

        for attempt in (0, 1):
            try:
                conn = await self.pool.acquire(host, port, target.ssl_context, target.server_hostname,
                                               fresh=attempt > 0)
            except BackendError as e:
                return plain_error(str(e), 503)
            try:
                conn.writer.write(head + body if body else head)
                if streamed:
                    chunked = length is None
                    async for chunk in request.content.iter_any():
                        conn.writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                        await conn.writer.drain()
                    if chunked:
                        conn.writer.write(b"0\r\n\r\n")
                resp = await read_head(conn, self.pool, head_only)
                break
            except _EarlyEOF as e:
                conn.close()
                if conn.reused and not streamed and not e.partial and attempt == 0:
                    continue  # a stale keep-alive connection: retry once on a fresh one
                return plain_error("EOF", 502 if streamed else 503)
            except (OSError, BackendError) as e:
                conn.close()
                if conn.reused and not streamed and attempt == 0:
                    continue
                return plain_error(str(e), 503)
            except BaseException:
                conn.close()
                raise
        return await self._respond(request, resp)

    async def _respond(self, request: web.Request, resp: Response) -> web.StreamResponse:
        headers = CIMultiDict((n, v) for n, v in resp.headers if n.lower() not in DROP_RESPONSE)
        if resp.bounded and (resp.length or 0) <= _BUFFER_RESPONSE_LIMIT:
            try:
                data = await resp.read()
            except BackendError as e:
                return plain_error(str(e), 502)
            sent = await onewrite.send(request, resp.status, resp.reason, headers, data)
            if sent is not None:
                return sent
            out = web.Response(status=resp.status, reason=resp.reason or None, body=data, headers=headers)
            if resp.length is not None and request.method == "HEAD":
                out.content_length = resp.length
            return out
        out = web.StreamResponse(status=resp.status, reason=resp.reason or None, headers=headers)
        if resp.length is not None:
            out.content_length = resp.length
        await out.prepare(request)
        watchdog = asyncio.ensure_future(_watch_client(request, resp))
        try:
            async for chunk in resp.iter_chunks():
                await out.write(chunk)
        except BackendError as e:
            # Headers are out: the only honest signal left is to break the client connection.
            log.info("backend broke mid-response: %s", e)
            _abort_client(request)
            return out
        except ConnectionResetError:  # the client went away (watch ended by the caller): nothing to report
            resp.abort()
            return out
        except asyncio.CancelledError:
            resp.abort()
            raise
        finally:
            watchdog.cancel()
        await out.write_eof()
        return out

    async def _upgrade(self, request: web.Request, target: Target, host: str, port: int,
                       user: Any) -> web.StreamResponse:
        """Connection: Upgrade (websocket/SPDY exec, attach, port-forward): pass raw bytes both ways."""
        lines = self._head(request, host, port, user, upgrade=True)
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        try:
            conn = await self.pool.acquire(host, port, target.ssl_context, target.server_hostname, fresh=True)
        except BackendError as e:
            return plain_error(str(e), 503)
        try:
            conn.writer.write(head)
            resp = await read_head(conn, self.pool, False)
        except (_EarlyEOF, OSError, BackendError) as e:
            conn.close()
            return plain_error(str(e), 503)
        if resp.status != 101:
            return await self._respond(request, resp)
        headers = CIMultiDict((n, v) for n, v in resp.headers
                              if n.lower() not in ("content-length", "transfer-encoding"))
        out = web.StreamResponse(status=101, reason=resp.reason or "Switching Protocols", headers=headers)
        await out.prepare(request)
        transport = request.transport
        if transport is None:
            conn.close()
            return out

        async def client_to_backend() -> None:
            try:
                async for chunk in request.content.iter_any():
                    conn.writer.write(chunk)
                    await conn.writer.drain()
            finally:
                try:
                    conn.writer.write_eof()
                except (OSError, RuntimeError, NotImplementedError):
                    pass

        async def backend_to_client() -> None:
            while True:
                chunk = await conn.reader.read(65536)
                if not chunk:
                    break
                transport.write(chunk)

        tasks = [asyncio.ensure_future(client_to_backend()), asyncio.ensure_future(backend_to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            conn.close()
            _abort_client(request)
        return out

    async def fetch(self, target: Target, path: str, headers: dict[str, str],
                    user: Any = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        """A request of the aggregator's own (discovery, OpenAPI; the namespace controller's
        DELETEs), without a body, as system:kube-aggregator in system:masters."""
        if target.ssl_context is None:
            raise BackendError(target.error or "no transport")
        try:
            ep = self.resolver.resolve(target.namespace, target.service, target.port)
        except ResolveError as e:
            raise BackendError(str(e)) from None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {_host(ep.host, ep.port)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += [f"{k}: {v}" for k, v in identity_headers(user or AGGREGATOR_USER)]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        for attempt in (0, 1):
            conn = await self.pool.acquire(ep.host, ep.port, target.ssl_context, target.server_hostname,
                                           fresh=attempt > 0)
            try:
                conn.writer.write(head)
                resp = await read_head(conn, self.pool, False)
            except _EarlyEOF:
                conn.close()
                if conn.reused and attempt == 0:
                    continue
                raise BackendError("EOF") from None
            except OSError as e:
                conn.close()
                if conn.reused and attempt == 0:
                    continue
                raise BackendError(str(e)) from None
            except BaseException:
                conn.close()
                raise
            body = await resp.read()
            return resp.status, {n: v for n, v in resp.headers}, body
        raise BackendError("EOF")

    def close(self) -> None:
        self.pool.close()
        self.express.close()


def _host(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _abort_client(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


async def _watch_client(request: web.Request, resp: Response) -> None:
    """A long-running response ends when its client goes away, even while the backend is silent."""
    await client_gone(request, _WATCHDOG_INTERVAL)
    resp.abort()
