"""The fast lane's request head parsing: what it hands on, and the per-connection reuse of a header block."""

from __future__ import annotations

from kplane.apiserver.fastpath import FastRequestHandler

PATH = "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders"


class _Lane:
    max_body = 1024

    @staticmethod
    def claims(target: str) -> bool:
        return target.startswith("/apis/")


def _handler() -> FastRequestHandler:
    handler = object.__new__(FastRequestHandler)  # only what _take touches: no aiohttp machinery
    handler._lane = _Lane()
    handler._fast_head = None
    handler._fast_repeat = None
    handler.transport = None
    return handler


def _raw(*headers: str, method: str = "GET", target: str = PATH, body: bytes = b"") -> bytes:
    return (f"{method} {target} HTTP/1.1\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n").encode() + body


def test_a_repeated_header_block_is_parsed_once_and_a_changed_one_again():
    handler = _handler()
    first, rest = handler._take(_raw("Host: x", "Authorization: Bearer a") + b"GET")
    assert rest == b"GET" and first.headers["Authorization"] == "Bearer a"
    second, _ = handler._take(_raw("Host: x", "Authorization: Bearer a", target=PATH + "?limit=1"))
    assert second.headers is first.headers and second.raw_path == PATH + "?limit=1"
    third, _ = handler._take(_raw("Host: x", "Authorization: Bearer b"))
    assert third.headers["Authorization"] == "Bearer b" and third.headers is not first.headers
    closing, _ = handler._take(_raw("Host: x", "Authorization: Bearer b", "Connection: close"))
    assert not closing.keep_alive and third.keep_alive


def test_a_repeated_request_is_taken_as_before_and_any_change_parsed_again():
    handler = _handler()
    raw = _raw("Host: x", "Authorization: Bearer a")
    first, _ = handler._take(raw)
    again, rest = handler._take(bytes(raw))  # the same bytes in a new read
    assert (again.method, again.raw_path, again.headers, rest) == ("GET", PATH, first.headers, b"")
    assert again is not first and again.keep_alive
    other, _ = handler._take(raw.replace(b"GET", b"DELETE", 1))
    assert other.method == "DELETE" and other.headers is first.headers
    # With a body, or with more after it in the read, a request is never taken as a repeat.
    post = _raw("Content-Length: 2", method="POST", body=b"{}")
    handler._take(post)
    assert handler._take(post[:-1] + b"]")[0]._body == b"{]"
    assert handler._take(raw + b"GET")[1] == b"GET" and handler._take(raw + b"GET")[1] == b"GET"


def test_the_body_length_and_impersonation_come_with_the_block():
    handler = _handler()
    request, rest = handler._take(_raw("Content-Length: 4", method="POST", body=b'{}\r\nnext'))
    assert request._body == b"{}\r\n" and rest == b"next"
    assert handler._take(_raw("Content-Length: 4", method="POST", body=b"{}")) == (None, b"")  # body incomplete
    assert handler._take(_raw("Content-Length: 4096", method="POST", body=b"{}")) is None  # over the lane's limit
    plain, _ = handler._take(_raw("Host: x"))
    impersonating, _ = handler._take(_raw("Host: x", "Impersonate-User: bob"))
    assert not plain.impersonating and impersonating.impersonating


def test_what_the_lane_leaves_to_aiohttp():
    handler = _handler()
    assert handler._take(_raw("Host: x", target=PATH + "?watch=true")) is None
    assert handler._take(_raw("Host: x", target=PATH.replace("/namespaces", "/watch/namespaces"))) is None
    assert handler._take(_raw("Transfer-Encoding: chunked", method="POST")) is None
    assert handler._take(_raw("Host : x")) is None  # whitespace before the colon: aiohttp's 400
    assert handler._take(_raw("Host: x", target="/version")) is None  # not claimed


def test_long_request_lines_are_the_lanes_up_to_its_head_size_and_aiohttps_beyond():
    from kplane.apiserver import fastpath

    handler = _handler()
    long_target = PATH + "?labelSelector=" + "a" * 20_000  # a line past aiohttp's former 8190 bytes
    request, _ = handler._take(_raw("Host: x", target=long_target))
    assert request.raw_path == long_target
    partial = _raw("Host: x", target=long_target)[:15_000]  # no line end yet: the lane waits for it
    assert handler._take(partial) == (None, b"")
    huge = _raw("Host: x", target=PATH + "?labelSelector=" + "a" * fastpath._MAX_HEAD)
    assert handler._take(huge) is None  # aiohttp's, which takes heads up to MAX_HEAD_BYTES
    assert fastpath.HEAD_LIMITS["max_line_size"] == fastpath.HEAD_LIMITS["max_field_size"] == (1 << 20) + 4096
