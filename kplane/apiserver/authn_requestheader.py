"""Request-header authentication: the identity an authenticating proxy (the
aggregator) asserts in X-Remote-User / X-Remote-Group / X-Remote-Extra-*.

As upstream (k8s.io/apiserver/pkg/authentication/request/headerrequest and
request/x509.NewVerifier), the headers are believed only when the TLS client
certificate was issued by the request-header CA and, when allowed names are
configured, its CN is one of them. Without such a certificate the headers are
ignored (another authenticator, or anonymous, decides); a certificate from the
request-header CA with a CN outside the allowed list is an authentication error.

Python's ssl verifies a client certificate against every loaded CA during the
handshake but does not say which CA matched, so the server loads the client CA
and the request-header CA together and this module checks the signature of the
presented leaf against the request-header CA itself.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kplane.apiserver.auth import UserInfo

DEFAULT_USERNAME_HEADERS = ("X-Remote-User",)
DEFAULT_GROUP_HEADERS = ("X-Remote-Group",)
DEFAULT_EXTRA_PREFIXES = ("X-Remote-Extra-",)


class AuthenticationError(Exception):
    """Credentials were presented but are not acceptable (401, never anonymous)."""


@dataclass
class RequestHeaderConfig:
    """The requestheader-* settings (flags upstream, or the keys of the
    kube-system/extension-apiserver-authentication ConfigMap)."""

    client_ca: list[x509.Certificate]
    allowed_names: list[str] = field(default_factory=list)  # empty: any CN signed by the CA
    username_headers: list[str] = field(default_factory=lambda: list(DEFAULT_USERNAME_HEADERS))
    group_headers: list[str] = field(default_factory=lambda: list(DEFAULT_GROUP_HEADERS))
    extra_headers_prefixes: list[str] = field(default_factory=lambda: list(DEFAULT_EXTRA_PREFIXES))
    uid_headers: list[str] = field(default_factory=list)

    @classmethod
    def from_pem(cls, ca_pem: bytes | str, **kw: Any) -> RequestHeaderConfig:
        return cls(client_ca=load_pem_certs(ca_pem), **kw)


def load_pem_certs(pem: bytes | str) -> list[x509.Certificate]:
    data = pem.encode() if isinstance(pem, str) else pem
    if not data.strip():
        return []
    return list(x509.load_pem_x509_certificates(data))


def parse_json_list(value: str | None) -> list[str]:
    """ConfigMap values like requestheader-allowed-names are JSON string arrays."""
    if not value:
        return []
    try:
        parsed = json.loads(value)
    except ValueError:
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(parsed, list):
        return [str(v) for v in parsed]
    return [str(parsed)]


def config_from_configmap(data: Mapping[str, str]) -> RequestHeaderConfig | None:
    """The request-header part of extension-apiserver-authentication; None when it has no CA."""
    ca = data.get("requestheader-client-ca-file", "")
    if not ca.strip():
        return None
    return RequestHeaderConfig(
        client_ca=load_pem_certs(ca),
        allowed_names=parse_json_list(data.get("requestheader-allowed-names")),
        username_headers=parse_json_list(data.get("requestheader-username-headers")) or list(
            DEFAULT_USERNAME_HEADERS),
        group_headers=parse_json_list(data.get("requestheader-group-headers")) or list(DEFAULT_GROUP_HEADERS),
        extra_headers_prefixes=parse_json_list(data.get("requestheader-extra-headers-prefix")) or list(
            DEFAULT_EXTRA_PREFIXES),
        uid_headers=parse_json_list(data.get("requestheader-uid-headers")),
    )


# ---- certificates ---------------------------------------------------------


def peer_certificate_der(request: web.Request) -> bytes | None:
    """The DER bytes of the request's (handshake-verified) TLS client certificate, if any."""
    per_connection = getattr(request, "peer_certificate_der", None)  # the fast lane's request
    if per_connection is not None:
        return per_connection()
    return transport_certificate_der(request.transport)


def transport_certificate_der(transport: Any) -> bytes | None:
    """The DER bytes of the TLS client certificate a connection presented, if any."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    return ssl_object.getpeercert(binary_form=True) or None


def peer_certificate(request: web.Request) -> x509.Certificate | None:
    """The (handshake-verified) TLS client certificate of the request, if any."""
    der = peer_certificate_der(request)
    return None if der is None else _load_der(der)


def load_der(der: bytes) -> x509.Certificate:
    """A parsed certificate, cached per distinct DER (see below)."""
    return _load_der(der)


# Every request on a keep-alive connection presents the same certificate: parsing it and
# checking its signature once per distinct certificate (not once per request) keeps
# authentication off the hot path. Bounded caches; the validity window is checked each time.
_CERT_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=_CERT_CACHE_SIZE)
def _load_der(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def issued_by(cert: x509.Certificate, cas: Iterable[x509.Certificate]) -> bool:
    """Whether one of `cas` signed `cert` (and the cert is valid now and usable for client auth)."""
    not_before, not_after, ok = _issued_by(cert, tuple(cas))
    return ok and not_before <= dt.datetime.now(dt.UTC) <= not_after


@functools.lru_cache(maxsize=_CERT_CACHE_SIZE)
def _issued_by(cert: x509.Certificate, cas: tuple[x509.Certificate, ...]) -> tuple[dt.datetime, dt.datetime, bool]:
    window = (cert.not_valid_before_utc, cert.not_valid_after_utc)
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
            return (*window, False)
    except x509.ExtensionNotFound:
        pass  # no EKU: usable for anything, as Go's x509 treats it
    return (*window, any(cert.issuer == ca.subject and _signed(cert, ca) for ca in cas))


def _signed(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # noqa: BLE001 - InvalidSignature, unsupported key types: not issued by it
        return False
    return True


@functools.lru_cache(maxsize=_CERT_CACHE_SIZE)
def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


@functools.lru_cache(maxsize=_CERT_CACHE_SIZE)
def organizations(cert: x509.Certificate) -> tuple[str, ...]:
    return tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))


# ---- headers --------------------------------------------------------------


def _first_value(headers: Any, names: Iterable[str]) -> str:
    # upstream's Header.Get: the first value of the first header that has a non-empty one.
    for name in names:
        value = headers.get(name, "")
        if value:
            return value
    return ""


def _all_values(headers: Any, names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        out.extend(v for v in headers.getall(name, []) if v)
    return out


def unescape_extra_key(encoded: str) -> str:
    """url.PathUnescape, keeping the raw key when it is not valid %-encoding (as upstream)."""
    i = 0
    while True:
        i = encoded.find("%", i)
        if i < 0:
            break
        hexpart = encoded[i + 1:i + 3]
        if len(hexpart) < 2 or any(c not in "0123456789abcdefABCDEF" for c in hexpart):
            return encoded
        i += 3
    try:
        return unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        return encoded


def extra_from_headers(headers: Any, prefixes: Iterable[str]) -> dict[str, tuple[str, ...]]:
    extra: dict[str, list[str]] = {}
    for prefix in prefixes:
        lp = prefix.lower()
        for name, value in headers.items():
            if not name.lower().startswith(lp):
                continue
            key = unescape_extra_key(name[len(prefix):].lower())
            extra.setdefault(key, []).append(value)
    return {k: tuple(v) for k, v in extra.items()}


def identity_header_names(config: RequestHeaderConfig) -> list[str]:
    return [*config.username_headers, *config.group_headers, *config.uid_headers]


def user_from_headers(headers: Any, config: RequestHeaderConfig) -> UserInfo | None:
    name = _first_value(headers, config.username_headers)
    if not name:
        return None
    groups = tuple(_all_values(headers, config.group_headers))
    uid = _first_value(headers, config.uid_headers) if config.uid_headers else ""
    return UserInfo(name, groups, uid, extra_from_headers(headers, config.extra_headers_prefixes))


# ---- the authenticator ----------------------------------------------------


class RequestHeaderAuthenticator:
    """authenticate() returns the asserted user, None when this authenticator
    has nothing to say (no front-proxy certificate, no username header), or
    raises AuthenticationError for a front-proxy certificate that is not allowed.

    `config` may be replaced at any time (the ConfigMap is re-read)."""

    def __init__(self, config: RequestHeaderConfig | None):
        self.config = config

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        return self.authenticate_cert(peer_certificate(request), request.headers)

    def authenticate_cert(self, cert: x509.Certificate | None, headers: Any) -> UserInfo | None:
        config = self.front_proxy_config(cert)
        return None if config is None else user_from_headers(headers, config)

    def front_proxy_config(self, cert: x509.Certificate | None) -> RequestHeaderConfig | None:
        """The configuration under which `cert` is a front-proxy certificate (its requests'
        identity headers are believed); None when it is not one; AuthenticationError when the
        requestheader CA signed it but its CN is not an allowed name."""
        config = self.config
        if config is None or cert is None or not config.client_ca:
            return None
        if not issued_by(cert, config.client_ca):
            # Not a front-proxy certificate: the headers are not ours to believe.
            return None
        cn = common_name(cert)
        if config.allowed_names and cn not in config.allowed_names:
            raise AuthenticationError(f"x509: subject with cn={cn} is not in the allowed list")
        return config


def with_authenticated_group(user: UserInfo) -> UserInfo:
    """upstream's AuthenticatedGroupAdder."""
    if user.name == "system:anonymous" or "system:authenticated" in user.groups \
            or "system:unauthenticated" in user.groups:
        return user
    return UserInfo(user.name, (*user.groups, "system:authenticated"), user.uid, user.extra)
