"""Authentication wired into the running control plane (k8s.io/apiserver's BuildAuthenticator).

The request authenticator is a union, first match wins, in upstream's order:

1. request-header (front-proxy): X-Remote-* believed only with a front-proxy CA client cert;
2. x509 client certificates signed by the client CA (CN user, O groups);
3. bearer tokens: the static token file, then ServiceAccount JWTs (the ServiceAccount must
   still exist with the token's uid).

Presented but rejected credentials answer 401 even with anonymous auth on (upstream wraps the union
with anonymous in a fail-on-error union, and the bearer-token authenticator turns "not recognised"
into an "invalid bearer token" error). With nothing presented the result is None and the server
falls back to system:anonymous when --anonymous-auth is on.

`Impersonation` is upstream's WithImpersonation filter (Impersonate-User / -Group / -Uid /
-Extra-*), authorized with the `impersonate` verb.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from cryptography import x509

from kplane.apimachinery import errors
from kplane.apiserver.auth import ALLOW, RequestAttributes, UserInfo
from kplane.apiserver.authn_requestheader import (
    AuthenticationError,
    RequestHeaderAuthenticator,
    RequestHeaderConfig,
    common_name,
    issued_by,
    load_der,
    organizations,
    peer_certificate_der,
    unescape_extra_key,
    user_from_headers,
)
from kplane.controlplane.authn.serviceaccount import InvalidToken, ServiceAccountTokenVerifier, userinfo_from_claims
from kplane.controlplane.authn.tokenfile import TokenFileAuthenticator
from kplane.controlplane.authn.union import with_authenticated_group
from kplane.controlplane.rbac.authorizer import forbidden_error
from kplane.memo import remember

log = logging.getLogger("kplane.authn")

ANONYMOUS_USER = "system:anonymous"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"


class TokenError(Exception):
    """A bearer token that is not acceptable; str() is upstream's error text."""


def bearer_token(request: Any) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none."""
    header = request.headers.get("Authorization", "")
    parts = header.strip().split(" ")
    if len(parts) < 2 or parts[0].lower() != "bearer":
        return None
    token = parts[-1] if parts[-1] else ""
    return token or None


class ServiceAccountTokenAuthenticator:
    """JWT verification plus upstream's validator: the ServiceAccount must exist with the uid in
    the claims. `get_sa(namespace, name)` reads the ServiceAccount (watch cache) or returns None."""

    def __init__(self, verifier: ServiceAccountTokenVerifier, get_sa: Any, get_secret: Any = None) -> None:
        self.verifier = verifier
        self.get_sa = get_sa
        self.get_secret = get_secret  # (namespace, name) -> Secret or None: legacy tokens' own copy

    def authenticate(self, token: str, audiences: Sequence[str] | None = None) -> UserInfo | None:
        try:
            claims = self.verifier.validate(token, audiences)
        except InvalidToken as e:
            raise TokenError(str(e)) from None
        if claims is None:
            return None
        private = claims.get("kubernetes.io") or {}
        namespace = private.get("namespace", "")
        ref = private.get("serviceaccount") or {}
        if claims.get("legacy"):
            self._check_legacy_secret(token, namespace, (private.get("secret") or {}).get("name", ""))
        sa = self.get_sa(namespace, ref.get("name", ""))
        if sa is None:
            # The lister's NotFound names the singular resource.
            raise TokenError(f'serviceaccount "{ref.get("name", "")}" not found')
        sa_meta = sa.get("metadata") or {}
        if claims.get("legacy") and sa_meta.get("deletionTimestamp"):
            raise TokenError(f"ServiceAccount {namespace}/{ref.get('name', '')} has been deleted")
        if not claims.get("legacy") and _deleted_before_leeway(sa_meta):
            raise TokenError(f"service account {namespace}/{ref.get('name', '')} has been deleted")
        uid = sa_meta.get("uid", "")
        if uid != ref.get("uid"):
            raise TokenError(f"service account UID ({uid}) does not match claim ({ref.get('uid')})")
        if not claims.get("legacy"):
            self._check_bound_object(namespace, private)
        return userinfo_from_claims(claims)

    def _check_bound_object(self, namespace: str, private: dict) -> None:
        """The bound-token validator (pkg/serviceaccount/claims.go): a token bound to a Secret, Pod
        or Node is valid only while that object exists with the UID in the claim. kplane serves
        Secrets only, so a Pod or Node claim can never be satisfied."""
        for claim in ("pod", "node"):
            if private.get(claim) is not None:
                raise TokenError("service account token has been invalidated")
        ref = private.get("secret")
        if ref is None:
            return
        secret = self.get_secret(namespace, ref.get("name", "")) if self.get_secret is not None else None
        if secret is None or _deleted_before_leeway(secret.get("metadata") or {}):
            raise TokenError("service account token has been invalidated")
        uid = (secret.get("metadata") or {}).get("uid", "")
        if uid != ref.get("uid"):
            raise TokenError(f"secret UID ({uid}) does not match service account secret ref claim ({ref.get('uid')})")

    def _check_legacy_secret(self, token: str, namespace: str, secret_name: str) -> None:
        """The legacy validator: a token from a Secret is valid while that Secret holds it."""
        secret = self.get_secret(namespace, secret_name) if self.get_secret is not None else None
        if secret is None or (secret.get("metadata") or {}).get("deletionTimestamp"):
            raise TokenError("token has been invalidated")
        stored = (secret.get("data") or {}).get("token", "")
        try:
            matches = base64.b64decode(stored).decode() == token
        except (ValueError, UnicodeDecodeError):
            matches = False
        if not matches:
            raise TokenError("token does not match server's copy")


def _deleted_before_leeway(meta: dict, leeway: float = 60.0) -> bool:
    """Upstream treats an object whose deletionTimestamp is more than jwt.DefaultLeeway (1 minute)
    in the past as gone (graceful deletion keeps it readable a little longer)."""
    stamp = meta.get("deletionTimestamp")
    if not stamp:
        return False
    try:
        deleted = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return True
    return deleted < time.time() - leeway


class TokenAuthenticator:
    """The union of bearer-token authenticators (tokenfile, ServiceAccount JWTs)."""

    def __init__(self, token_file: TokenFileAuthenticator | None,
                 service_accounts: ServiceAccountTokenAuthenticator | None) -> None:
        self.token_file = token_file
        self.service_accounts = service_accounts

    def authenticate(self, token: str, audiences: Sequence[str] | None = None) -> UserInfo:
        """The user, or TokenError with the aggregated upstream error text."""
        errs: list[str] = []
        if self.token_file is not None:
            user = self.token_file.authenticate(token)
            if user is not None:
                return with_authenticated_group(user)
        if self.service_accounts is not None:
            try:
                user = self.service_accounts.authenticate(token, audiences)
            except TokenError as e:
                errs.append(str(e))
                user = None
            if user is not None:
                return with_authenticated_group(user)
        if not errs:
            raise TokenError("invalid bearer token")
        unique = list(dict.fromkeys(errs))
        raise TokenError(unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]")


@dataclass(frozen=True)
class _CertVerdict:
    """What a client certificate says, worked out once per distinct certificate: every request
    of a keep-alive connection presents the same one, and checking chains and reading names on
    each request was a tenth of a proxied request's CPU. Valid for `config` (the requestheader
    configuration it was computed with, replaced when the ConfigMap changes) and, like the
    checks it caches, only within the certificate's validity window."""

    config: RequestHeaderConfig | None
    not_before: float
    not_after: float
    front_proxy: bool  # signed by the requestheader CA: identity headers are believed
    front_proxy_denied: str  # ... but its CN is not an allowed name: the 401's reason
    user: UserInfo | None  # a user certificate of the client CA


_VERDICT_CACHE_SIZE = 4096


class ControlPlaneAuthenticator:
    def __init__(self, *, client_ca: list[x509.Certificate], requestheader: RequestHeaderConfig | None,
                 tokens: TokenAuthenticator) -> None:
        self.client_ca = client_ca
        self.requestheader = RequestHeaderAuthenticator(requestheader)
        self.tokens = tokens
        self._verdicts: dict[bytes, _CertVerdict] = {}

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        return self.authenticate_now(request)

    def authenticate_now(self, request: web.Request) -> UserInfo | None:
        """authenticate, which never waits: certificate verdicts are cached and tokens checked
        in memory (the server's express lane calls it from a protocol callback)."""
        der = peer_certificate_der(request)
        rejected_cert = False
        if der is not None:
            verdict = self._verdict(der)
            if verdict.front_proxy_denied:
                log.info("msg=%r err=%r", "front-proxy authentication failed", verdict.front_proxy_denied)
                raise errors.unauthorized()
            if verdict.front_proxy and verdict.config is not None:
                user = user_from_headers(request.headers, verdict.config)
                if user is not None:
                    return with_authenticated_group(user)
            if verdict.user is not None:
                return verdict.user
            # The handshake accepts any chain (tls_verify): a certificate that authenticated
            # nobody (unknown CA, expired) is a failed credential, 401 unless a token succeeds.
            rejected_cert = True
        token = bearer_token(request)
        if token is None:
            if rejected_cert:
                raise errors.unauthorized()
            return None
        try:
            return self.tokens.authenticate(token)
        except TokenError as e:
            log.info("msg=%r err=%r", "bearer token rejected", str(e))
            raise errors.unauthorized() from None

    def _verdict(self, der: bytes) -> _CertVerdict:
        config = self.requestheader.config
        now = time.time()
        verdict = self._verdicts.get(der)
        if verdict is not None and verdict.config is config and verdict.not_before <= now <= verdict.not_after:
            return verdict
        cert = load_der(der)
        front_proxy, denied = False, ""
        try:
            front_proxy = self.requestheader.front_proxy_config(cert) is not None
        except AuthenticationError as e:
            denied = str(e)
        verdict = _CertVerdict(config, cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp(),
                               front_proxy, denied, self.x509(cert))
        if verdict.not_before <= now <= verdict.not_after:  # outside its window nothing is cached
            remember(self._verdicts, der, verdict, _VERDICT_CACHE_SIZE)
        return verdict

    def x509(self, cert: x509.Certificate) -> UserInfo | None:
        # The handshake verified the chain against every loaded CA (client and front-proxy);
        # only certificates of the client CA are user certificates.
        if not issued_by(cert, self.client_ca):
            return None
        cn = common_name(cert)
        if not cn:
            return None
        return with_authenticated_group(UserInfo(cn, organizations(cert)))


# ---------------------------------------------------------------------------------------------
# Impersonation (k8s.io/apiserver/pkg/endpoints/filters/impersonation.go)
# ---------------------------------------------------------------------------------------------

IMPERSONATE_USER = "Impersonate-User"
IMPERSONATE_GROUP = "Impersonate-Group"
IMPERSONATE_UID = "Impersonate-Uid"
IMPERSONATE_EXTRA_PREFIX = "Impersonate-Extra-"
SA_PREFIX = "system:serviceaccount:"


def _split_sa_username(name: str) -> tuple[str, str] | None:
    if not name.startswith(SA_PREFIX):
        return None
    parts = name[len(SA_PREFIX):].split(":")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


class Impersonation:
    def __init__(self, authorize: Any) -> None:
        self.authorize = authorize  # sync (RequestAttributes) -> (decision, reason)

    async def __call__(self, request: web.Request, requestor: UserInfo) -> UserInfo:
        headers = request.headers
        if not any(name[:12].lower() == "impersonate-" for name in headers):
            return requestor  # the common case, in one pass over the header names
        requested_user = headers.get(IMPERSONATE_USER, "")
        groups_requested = [g for g in headers.getall(IMPERSONATE_GROUP, [])]
        extras: list[tuple[str, str]] = []
        for name, value in headers.items():
            if name.lower().startswith(IMPERSONATE_EXTRA_PREFIX.lower()):
                extras.append((unescape_extra_key(name[len(IMPERSONATE_EXTRA_PREFIX):].lower()), value))
        requested_uid = headers.get(IMPERSONATE_UID, "")
        if not requested_user and not groups_requested and not extras and not requested_uid:
            return requestor
        if not requested_user:
            # Upstream answers a bare 500 here; it is the client's mistake, so kplane says 400.
            raise errors.bad_request("requested impersonation without impersonating a user")

        # (kind, group, namespace, name, subresource) per request, in upstream's order.
        checks: list[tuple[str, str, str, str, str]] = []
        sa = _split_sa_username(requested_user)
        if sa is not None:
            checks.append(("serviceaccounts", "", sa[0], sa[1], ""))
        else:
            checks.append(("users", "", "", requested_user, ""))
        checks += [("groups", "", "", g, "") for g in groups_requested]
        checks += [("userextras", "authentication.k8s.io", "", value, key) for key, value in extras]
        if requested_uid:
            checks.append(("uids", "authentication.k8s.io", "", requested_uid, ""))

        username = ""
        groups: list[str] = []
        extra: dict[str, list[str]] = {}
        uid = ""
        for resource, group, namespace, name, sub in checks:
            attrs = RequestAttributes(user=requestor, verb="impersonate", is_resource_request=True, path="",
                                      api_group=group, api_version="v1" if group else "", resource=resource,
                                      subresource=sub, namespace=namespace, name=name)
            if resource == "serviceaccounts":
                username = f"{SA_PREFIX}{namespace}:{name}"
                if not groups_requested:
                    groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
            elif resource == "users":
                username = name
            elif resource == "groups":
                groups.append(name)
            elif resource == "userextras":
                extra.setdefault(sub, []).append(name)
            else:
                uid = name
            decision, reason = self.authorize(attrs)
            if decision != ALLOW:
                raise forbidden_error(attrs, reason)

        if username != ANONYMOUS_USER:
            if not any(g in (AUTHENTICATED, UNAUTHENTICATED) for g in groups):
                groups.append(AUTHENTICATED)
        elif UNAUTHENTICATED not in groups:
            groups.append(UNAUTHENTICATED)
        user = UserInfo(username, tuple(groups), uid, {k: tuple(v) for k, v in extra.items()})
        log.debug("msg=%r requestor=%s user=%s", "impersonating", requestor.name, username)
        return user
