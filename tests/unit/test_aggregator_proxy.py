"""The proxy: identity headers and escaping, stripping, mTLS with caBundle/server name, streaming, errors."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from kplane.aggregator import apiservice as apis
from kplane.aggregator.endpoints import EndpointResolver
from kplane.aggregator.proxy import Proxy, build_target, forward_headers, header_key_escape, identity_headers
from kplane.apiserver.auth import UserInfo
from kplane.apiserver.requestinfo import resolve
from tests.unit.aggregator_fixtures import make_pki, server_context, start_app


def test_header_key_escape_as_client_go():
    assert header_key_escape("scopes") == "scopes"
    assert header_key_escape("example.com/key") == "example.com%2Fkey"
    assert header_key_escape("a b%c") == "a%20b%25c"
    assert header_key_escape("ü") == "%C3%BC"
    assert header_key_escape("Aa-_.~!#$&'*+^`|") == "Aa-_.~!#$&'*+^`|"


def test_identity_headers_one_group_per_header():
    user = UserInfo("alice", ("dev", "system:authenticated"), extra={"scopes": ("a", "b"), "x/y": ("z",)})
    assert identity_headers(user) == [
        ("X-Remote-User", "alice"), ("X-Remote-Group", "dev"), ("X-Remote-Group", "system:authenticated"),
        ("X-Remote-Extra-scopes", "a"), ("X-Remote-Extra-scopes", "b"), ("X-Remote-Extra-x%2Fy", "z")]


def test_forward_headers_strip_credentials_and_forged_identity():
    incoming = {"Authorization": "Bearer secret", "X-Remote-User": "admin", "x-remote-group": "system:masters",
                "X-Remote-Extra-Foo": "1", "X-Remote-Uid": "0", "Impersonate-User": "bob", "Connection": "close",
                "Accept": "application/json", "User-Agent": "kubectl", "Host": "x", "Content-Length": "3"}
    assert forward_headers(incoming)[0] == [("Accept", "application/json"), ("User-Agent", "kubectl")]


class Backend:
    def __init__(self):
        self.seen: list[dict] = []
        self.watch_gate = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peercert")
        self.seen.append({"headers": list(request.headers.items()), "path": request.path_qs,
                          "peer_cn": dict(x[0] for x in peer["subject"])["commonName"] if peer else None,
                          "body": await request.read()})
        if request.query.get("watch"):
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            await resp.write(b'{"type":"ADDED"}\n')
            await self.watch_gate.wait()
            await resp.write(b'{"type":"MODIFIED"}\n')
            return resp
        if request.path.endswith("/boom"):
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            await resp.write(b'{"partial":')
            request.transport.close()
            return resp
        return web.json_response({"path": request.path_qs, "method": request.method}, status=200)


def lookup_for(port):
    objs = {("services", "wardle", "api"): {"spec": {"type": "ClusterIP", "ports": [{"name": "https", "port": 443}]}},
            ("endpoints", "wardle", "api"): {"subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                                                         "ports": [{"name": "https", "port": port}]}]}}
    return lambda g, v, plural, ns, name: objs.get((plural, ns, name))


def apiservice(pki, **spec):
    s = {"group": "wardle.example.com", "version": "v1alpha1", "groupPriorityMinimum": 1000, "versionPriority": 15,
         "service": {"namespace": "wardle", "name": "api", "port": 443}, **spec}
    return {"metadata": {"name": "v1alpha1.wardle.example.com"}, "spec": s,
            "status": {"conditions": [apis.condition("True", "Passed", "all checks passed", "t")]}}


@pytest.fixture
async def setup(tmp_path):
    pki = make_pki(tmp_path)
    backend = Backend()
    b_runner, b_port = await start_app(backend.app(), server_context(pki))
    proxy = Proxy(EndpointResolver(lookup_for(b_port)))
    user = UserInfo("alice", ("dev",), extra={"scopes": ("s1",)})

    @web.middleware
    async def front(request, handler):
        request["user"] = user
        info = resolve(request.method, request.path, request.query)
        resp = await proxy(request, info)
        return resp if resp is not None else web.Response(status=404, text="local")

    app = web.Application(middlewares=[front])
    async def unused(request):
        return web.Response(text="unused")

    app.router.add_route("*", "/{tail:.*}", unused)
    f_runner, f_port = await start_app(app, None)
    yield pki, backend, proxy, f"http://127.0.0.1:{f_port}"
    proxy.close()
    await f_runner.cleanup()
    await b_runner.cleanup()


def install(proxy, pki, **spec):
    obj = apiservice(pki, **spec)
    proxy.targets[("wardle.example.com", "v1alpha1")] = build_target(obj, str(pki.client), str(pki.client_key))


async def test_proxy_mtls_identity_and_stripping(setup):
    pki, backend, proxy, url = setup
    install(proxy, pki, caBundle=pki.ca_bundle())
    async with aiohttp.ClientSession() as s:
        r = await s.get(url + "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders?limit=5",
                        headers={"Authorization": "Bearer x", "X-Remote-User": "root",
                                 "X-Remote-Group": "system:masters", "X-Remote-Extra-Evil": "1"})
        assert r.status == 200
        assert (await r.json())["path"] == "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders?limit=5"
        r = await s.post(url + "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders", data=b'{"a":1}',
                         headers={"Content-Type": "application/json"})
        assert r.status == 200
    first = backend.seen[0]
    names = [k.lower() for k, _ in first["headers"]]
    assert "authorization" not in names
    assert [v for k, v in first["headers"] if k == "X-Remote-User"] == ["alice"]
    assert [v for k, v in first["headers"] if k == "X-Remote-Group"] == ["dev"]
    assert [(k, v) for k, v in first["headers"] if k.lower().startswith("x-remote-extra-")] == \
        [("X-Remote-Extra-scopes", "s1")]
    assert first["peer_cn"] == "front-proxy-client"
    assert backend.seen[1]["body"] == b'{"a":1}'
    assert len(proxy.pool.idle) == 1  # the connection was kept alive and reused


async def test_proxy_rejects_backend_not_matching_ca_bundle(setup, tmp_path):
    pki, _backend, proxy, url = setup
    other = make_pki(tmp_path / "other") if (tmp_path / "other").mkdir() is None else None
    install(proxy, pki, caBundle=other.ca_bundle())
    async with aiohttp.ClientSession() as s:
        r = await s.get(url + "/apis/wardle.example.com/v1alpha1/flunders")
        assert r.status == 503
        assert await r.text() == ("tls: failed to verify certificate: x509: certificate signed by unknown "
                                  "authority\n")
    install(proxy, pki, insecureSkipTLSVerify=True)
    async with aiohttp.ClientSession() as s:
        r = await s.get(url + "/apis/wardle.example.com/v1alpha1/flunders")
        assert r.status == 200


async def test_unavailable_apiservice_answers_503_as_upstream(setup):
    pki, _backend, proxy, url = setup
    install(proxy, pki, caBundle=pki.ca_bundle())
    proxy.targets[("wardle.example.com", "v1alpha1")].available = False
    async with aiohttp.ClientSession() as s:
        r = await s.get(url + "/apis/wardle.example.com/v1alpha1/flunders")
        assert r.status == 503
        assert await r.text() == "service unavailable\n"
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        r = await s.get(url + "/apis/other.example.com/v1/things")
        assert await r.text() == "local"


async def test_watch_streams_each_event_without_buffering(setup):
    pki, backend, proxy, url = setup
    install(proxy, pki, caBundle=pki.ca_bundle())
    async with aiohttp.ClientSession() as s:
        r = await s.get(url + "/apis/wardle.example.com/v1alpha1/flunders?watch=1")
        assert r.status == 200
        first = await asyncio.wait_for(r.content.readline(), 2)
        assert json.loads(first) == {"type": "ADDED"}
        backend.watch_gate.set()
        second = await asyncio.wait_for(r.content.readline(), 2)
        assert json.loads(second) == {"type": "MODIFIED"}


async def test_backend_dying_mid_response_ends_the_request(setup):
    pki, _backend, proxy, url = setup
    install(proxy, pki, caBundle=pki.ca_bundle())
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientPayloadError):
            r = await asyncio.wait_for(s.get(url + "/apis/wardle.example.com/v1alpha1/boom"), 3)
            await asyncio.wait_for(r.read(), 3)


async def test_dial_error_is_503_with_go_message(setup):
    pki, _backend, proxy, url = setup
    proxy.resolver = EndpointResolver(lookup_for(1))
    install(proxy, pki, caBundle=pki.ca_bundle())
    async with aiohttp.ClientSession() as s:
        r = await s.get(url + "/apis/wardle.example.com/v1alpha1/flunders")
        assert r.status == 503
        assert await r.text() == "dial tcp 127.0.0.1:1: connect: connection refused\n"


async def test_large_bodies_are_streamed_and_forwarded_for_is_appended(setup):
    pki, backend, proxy, url = setup
    install(proxy, pki, caBundle=pki.ca_bundle())
    body = b"x" * (3 * 1024 * 1024 + 512 * 1024)  # above the 3 MiB kplane takes for its own resources
    async with aiohttp.ClientSession() as s:
        r = await s.post(url + "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders", data=body,
                         headers={"Content-Type": "application/json", "X-Forwarded-For": "192.0.2.1"})
        assert r.status == 200
    seen = backend.seen[-1]
    assert seen["body"] == body
    assert [v for k, v in seen["headers"] if k.lower() == "x-forwarded-for"] == ["192.0.2.1, 127.0.0.1"]


def test_request_head_bytes_is_request_head_encoded_whatever_is_remembered():
    from multidict import CIMultiDict, CIMultiDictProxy

    from kplane.aggregator.proxy import request_head, request_head_bytes

    headers = CIMultiDictProxy(CIMultiDict([("Accept", "application/json"), ("X-Forwarded-For", "10.0.0.9"),
                                            ("Authorization", "Bearer t"), ("User-Agent", "kubectl")]))
    alice, bob = UserInfo("alice", ("dev",)), UserInfo("bob", ("ops",), extra={"scopes": ("a",)})
    path = "/apis/wardle.example.com/v1alpha1/flunders?limit=1"
    cases = [("GET", alice, "127.0.0.1", None), ("GET", alice, "127.0.0.1", None), ("GET", bob, "127.0.0.1", None),
             ("POST", bob, "127.0.0.2", 12), ("GET", alice, None, None)]
    for method, user, remote, length in cases:  # the same headers object each time, as on one connection
        lines = request_head(method, path, headers, "10.1.2.3", 8443, user, remote)
        if length is not None:
            lines.append(f"Content-Length: {length}")
        expected = ("\r\n".join(lines) + "\r\n\r\n").encode()
        assert request_head_bytes(method, path, headers, "10.1.2.3", 8443, user, remote, length) == expected
    head = request_head_bytes("GET", path, headers, "10.1.2.3", 8443, bob, "127.0.0.1", None).decode()
    assert "X-Remote-User: bob\r\n" in head and "alice" not in head and "Bearer" not in head
    assert "X-Forwarded-For: 10.0.0.9, 127.0.0.1\r\n" in head


def test_resolved_endpoints_are_kept_while_the_revision_stands():
    objs = {("services", "wardle", "api"): {"spec": {"ports": [{"name": "https", "port": 443}]}},
            ("endpoints", "wardle", "api"): {"subsets": [{"addresses": [{"ip": "127.0.0.1"}, {"ip": "127.0.0.2"}],
                                                         "ports": [{"name": "https", "port": 8443}]}]}}
    lookups, revision = [], [7]

    def lookup(g, v, plural, ns, name):
        lookups.append(plural)
        return objs.get((plural, ns, name))

    resolver = EndpointResolver(lookup, revision=lambda: revision[0])
    hosts = [resolver.resolve("wardle", "api", 443).host for _ in range(4)]
    assert hosts == ["127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"]  # still spread over both
    assert lookups == ["services", "endpoints"]  # looked up once
    objs[("endpoints", "wardle", "api")] = {"subsets": [{"addresses": [{"ip": "127.0.0.3"}],
                                                        "ports": [{"name": "https", "port": 8443}]}]}
    revision[0] = 8  # the watch caches moved on
    assert resolver.resolve("wardle", "api", 443).host == "127.0.0.3"
    revision[0] = -1  # a cache is missing: every call looks up
    resolver.resolve("wardle", "api", 443)
    resolver.resolve("wardle", "api", 443)
    assert len(lookups) == 8


def test_request_heads_are_remembered_only_when_small():
    from multidict import CIMultiDict, CIMultiDictProxy

    from kplane.aggregator import proxy as proxy_module

    user = UserInfo("alice", ("dev",))
    headers = CIMultiDictProxy(CIMultiDict({"Accept": "application/json"}))
    for target in ("/apis/g/v1/things", "/apis/g/v1/things?labelSelector=" + "a" * 20_000):
        proxy_module._start_line_cache.clear()
        head = proxy_module.request_head_bytes("GET", target, headers, "127.0.0.1", 8443, user, "10.0.0.1", None)
        assert head.startswith(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n".encode())
        assert b"X-Remote-User: alice\r\n" in head and head.endswith(b"X-Forwarded-For: 10.0.0.1\r\n\r\n")
        assert head == proxy_module.request_head_bytes("GET", target, headers, "127.0.0.1", 8443, user,
                                                       "10.0.0.1", None)
        assert len(proxy_module._start_line_cache) == (1 if len(target) < 100 else 0)
