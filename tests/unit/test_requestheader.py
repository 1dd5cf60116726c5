"""Request-header authentication: identity headers believed only from the front proxy."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiohttp import ClientSession, TCPConnector, web
from cryptography import x509
from multidict import CIMultiDict

from kplane.apiserver.authn_requestheader import (
    AuthenticationError,
    RequestHeaderAuthenticator,
    RequestHeaderConfig,
    config_from_configmap,
    issued_by,
    parse_json_list,
    unescape_extra_key,
    user_from_headers,
    with_authenticated_group,
)
from kplane.controlplane.pki import issue_client_cert, issue_serving_cert, self_signed_ca
from kplane.testing import free_port


def _ca(tmp: Path, name: str) -> tuple[Path, Path]:
    cert, key = self_signed_ca(name)
    (tmp / f"{name}.crt").write_bytes(cert)
    (tmp / f"{name}.key").write_bytes(key)
    return tmp / f"{name}.crt", tmp / f"{name}.key"


def _client(tmp: Path, ca: tuple[Path, Path], cn: str, groups: tuple[str, ...] = ()) -> tuple[Path, Path]:
    cert, key = issue_client_cert(ca[0], ca[1], cn, groups)
    (tmp / f"{cn}.crt").write_bytes(cert)
    (tmp / f"{cn}.key").write_bytes(key)
    return tmp / f"{cn}.crt", tmp / f"{cn}.key"


@pytest.fixture
def pki(tmp_path: Path) -> dict:
    front = _ca(tmp_path, "front-proxy-ca")
    cluster = _ca(tmp_path, "cluster-ca")
    return {
        "dir": tmp_path,
        "front_ca": front,
        "cluster_ca": cluster,
        "proxy": _client(tmp_path, front, "front-proxy-client"),
        "intruder": _client(tmp_path, front, "someone-else"),
        "admin": _client(tmp_path, cluster, "admin", ("system:masters",)),
    }


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _headers(**kv: str) -> CIMultiDict:
    h: CIMultiDict = CIMultiDict()
    for k, v in kv.items():
        h.add(k.replace("_", "-"), v)
    return h


def _auth(pki: dict, allowed: list[str] | None = None) -> RequestHeaderAuthenticator:
    cfg = RequestHeaderConfig.from_pem(pki["front_ca"][0].read_bytes(),
                                       allowed_names=["front-proxy-client"] if allowed is None else allowed)
    return RequestHeaderAuthenticator(cfg)


def test_front_proxy_cert_with_headers_authenticates(pki: dict) -> None:
    h = _headers(X_Remote_User="alice")
    h.add("X-Remote-Group", "devs")
    h.add("X-Remote-Group", "ops")
    h.add("X-Remote-Extra-Scopes", "read")
    h.add("X-Remote-Extra-Scopes", "write")
    h.add("X-Remote-Extra-Acme.com%2Fproject", "p1")
    user = _auth(pki).authenticate_cert(_cert(pki["proxy"][0]), h)
    assert user is not None
    assert user.name == "alice"
    assert user.groups == ("devs", "ops")
    assert user.extra == {"scopes": ("read", "write"), "acme.com/project": ("p1",)}
    assert with_authenticated_group(user).groups == ("devs", "ops", "system:authenticated")


def test_headers_ignored_without_a_cert(pki: dict) -> None:
    assert _auth(pki).authenticate_cert(None, _headers(X_Remote_User="system:admin")) is None


def test_headers_ignored_with_a_cert_from_another_ca(pki: dict) -> None:
    h = _headers(X_Remote_User="system:admin", X_Remote_Group="system:masters")
    assert _auth(pki).authenticate_cert(_cert(pki["admin"][0]), h) is None


def test_cn_not_in_allowed_names_is_an_error(pki: dict) -> None:
    with pytest.raises(AuthenticationError, match="cn=someone-else is not in the allowed list"):
        _auth(pki).authenticate_cert(_cert(pki["intruder"][0]), _headers(X_Remote_User="alice"))


def test_empty_allowed_names_accepts_any_cn_from_the_ca(pki: dict) -> None:
    user = _auth(pki, allowed=[]).authenticate_cert(_cert(pki["intruder"][0]), _headers(X_Remote_User="bob"))
    assert user is not None and user.name == "bob"


def test_no_username_header_is_no_opinion(pki: dict) -> None:
    assert _auth(pki).authenticate_cert(_cert(pki["proxy"][0]), _headers(X_Remote_Group="g")) is None


def test_custom_header_names_and_first_non_empty_username() -> None:
    cfg = RequestHeaderConfig(client_ca=[], username_headers=["X-User", "X-Remote-User"],
                              group_headers=["X-Groups"], extra_headers_prefixes=["X-Extra-", "X-Remote-Extra-"])
    h = _headers(X_User="", X_Remote_User="carol", X_Groups="a", X_Extra_Foo="1", X_Remote_Extra_Foo="2")
    user = user_from_headers(h, cfg)
    assert user is not None
    assert user.name == "carol" and user.groups == ("a",)
    assert user.extra == {"foo": ("1", "2")}  # prefixes in configured order


def test_unescape_extra_key_as_url_path_unescape() -> None:
    assert unescape_extra_key("acme.com%2fproject") == "acme.com/project"
    assert unescape_extra_key("100%25") == "100%"
    assert unescape_extra_key("bad%zzkey") == "bad%zzkey"  # malformed: kept as is
    assert unescape_extra_key("plain") == "plain"


def test_configmap_parsing(pki: dict) -> None:
    data = {
        "client-ca-file": pki["cluster_ca"][0].read_text(),
        "requestheader-client-ca-file": pki["front_ca"][0].read_text(),
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    }
    cfg = config_from_configmap(data)
    assert cfg is not None
    assert cfg.allowed_names == ["front-proxy-client"]
    assert cfg.username_headers == ["X-Remote-User"]
    assert issued_by(_cert(pki["proxy"][0]), cfg.client_ca)
    assert not issued_by(_cert(pki["admin"][0]), cfg.client_ca)
    assert config_from_configmap({"client-ca-file": "x"}) is None
    assert parse_json_list('[]') == [] and parse_json_list("") == []


async def test_over_real_tls_only_the_front_proxy_cert_is_believed(pki: dict) -> None:
    """Both CAs loaded in the server context (as an extension server must); the check of
    which CA signed the peer happens in the authenticator."""
    d = pki["dir"]
    serving, key = issue_serving_cert(pki["cluster_ca"][0], pki["cluster_ca"][1], ["127.0.0.1"])
    (d / "srv.crt").write_bytes(serving)
    (d / "srv.key").write_bytes(key)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(d / "srv.crt", d / "srv.key")
    sctx.verify_mode = ssl.CERT_OPTIONAL
    sctx.load_verify_locations(cafile=str(pki["cluster_ca"][0]))
    sctx.load_verify_locations(cafile=str(pki["front_ca"][0]))
    auth = _auth(pki)

    async def whoami(request: web.Request) -> web.Response:
        try:
            user = await auth.authenticate(request)
        except AuthenticationError:
            return web.Response(status=401)
        return web.Response(text=user.name if user else "<none>")

    app = web.Application()
    app.router.add_get("/", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=sctx).start()
    try:
        async def get(cert: tuple[Path, Path] | None) -> tuple[int, str]:
            cctx = ssl.create_default_context(cafile=str(pki["cluster_ca"][0]))
            if cert:
                cctx.load_cert_chain(cert[0], cert[1])
            async with ClientSession(connector=TCPConnector(ssl=cctx)) as s, \
                    s.get(f"https://127.0.0.1:{port}/", headers={"X-Remote-User": "mallory"}) as r:
                return r.status, await r.text()

        assert await get(pki["proxy"]) == (200, "mallory")
        assert await get(None) == (200, "<none>")
        assert await get(pki["admin"]) == (200, "<none>")
        assert (await get(pki["intruder"]))[0] == 401
    finally:
        await runner.cleanup()
