"""Fixed-length responses in one transport write, past aiohttp's response writer.

aiohttp's web.Response path (prepare → header defaults → payload writer → write_eof) costs
~40 µs of CPU per request on the benchmark machine (aiohttp hello world: 145 → 103 µs/req when
the same bytes are written directly); a proxied GET through kplane went from ~740 to ~670 µs of
kplane CPU per request (A/B, 6 runs each, docs/performance.md). For the common case — a bounded
body to a non-HEAD HTTP/1.x request, a status that carries a body, header values aiohttp would
accept — `send` writes exactly the bytes aiohttp would: the same header defaults in the same
order (Content-Length, Content-Type, Date, Server, Connection), the application's
on_response_prepare hooks (Audit-Id, audit ResponseStarted), aiohttp's own header serializer;
then hands aiohttp a response already marked as sent. Anything else returns None and the caller
uses web.Response. The aggregator's proxy uses it for backend answers, the fast lane
(fastpath.py) for every plain web.Response a handler returns.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion10, HttpVersion11
from aiohttp.http_writer import _serialize_headers
from aiohttp.web_response import must_be_empty_body
from multidict import CIMultiDict

_DRAIN_ABOVE = 64 * 1024  # wait for the client to take the bytes when more than this is queued


def plain(resp: web.StreamResponse) -> bool:
    """A web.Response `send` can write as is: bytes body, not prepared, no compression, chunking,
    cookies or forced connection close."""
    return (type(resp) is web.Response and isinstance(resp._body, bytes) and resp._payload_writer is None
            and not resp._eof_sent and not resp._compression and not resp._chunked and not resp._cookies
            and resp._keep_alive is None)


class SentResponse(web.StreamResponse):
    """A response whose head and body already went out; `body` as web.Response has it (audit reads it)."""

    def __init__(self, status: int, reason: str, headers: CIMultiDict[str], body: bytes):
        super().__init__(status=status, reason=reason, headers=headers)
        self.body = body


def _acceptable(headers: CIMultiDict[str]) -> bool:
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            return False
    return True


async def send(request: web.Request, status: int, reason: str, headers: CIMultiDict[str],
               body: bytes) -> web.StreamResponse | None:
    transport = request.transport
    version = request.version
    if (transport is None or transport.is_closing() or not reason or request.method == hdrs.METH_HEAD
            or version not in (HttpVersion11, HttpVersion10) or must_be_empty_body(request.method, status)
            or hdrs.CONTENT_LENGTH in headers or not _acceptable(headers)):
        return None
    resp = SentResponse(status, reason, headers, body)
    h = resp.headers
    # web.Response._start, then StreamResponse._prepare_headers, in their order.
    h[hdrs.CONTENT_LENGTH] = str(len(body))
    keep_alive = request.keep_alive
    if body:
        h.setdefault(hdrs.CONTENT_TYPE, "application/octet-stream")
    if hdrs.DATE not in h:
        h[hdrs.DATE] = rfc822_formatted_time()
    h.setdefault(hdrs.SERVER, SERVER_SOFTWARE)
    if hdrs.CONNECTION not in h:
        if keep_alive:
            if version == HttpVersion10:
                h[hdrs.CONNECTION] = "keep-alive"
        elif version == HttpVersion11:
            h[hdrs.CONNECTION] = "close"
    resp._keep_alive = keep_alive
    await request._prepare_hook(resp)  # on_response_prepare, as StreamResponse._start runs it
    head = _serialize_headers(f"HTTP/{version[0]}.{version[1]} {status} {resp.reason}", h)
    transport.write(head + body)
    resp._eof_sent = True
    if transport.get_write_buffer_size() > _DRAIN_ABOVE:
        await request.writer.drain()
    return resp
