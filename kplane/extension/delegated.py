"""Delegated authentication and authorization: an extension server asks kplane.

Authentication (upstream's DelegatingAuthenticatorConfig): the union of
request-header authentication (the aggregator's front-proxy certificate and
X-Remote-* headers), x509 client certificates from kplane's client CA, and
bearer tokens checked with a TokenReview; answers cached for 10 s. Presented
but unacceptable credentials are a 401, no credentials make the request
anonymous.

Authorization (upstream's DelegatingAuthorizationOptions): /healthz, /readyz,
/livez and group system:masters are always allowed; everything else is a
SubjectAccessReview against kplane, cached 10 s when allowed and 10 s when
denied (both configurable).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web
from cryptography import x509

from kplane.apimachinery import errors
from kplane.apiserver.auth import ALLOW, DENY, NO_OPINION, RequestAttributes, UserInfo
from kplane.apiserver.authn_requestheader import (
    AuthenticationError,
    RequestHeaderAuthenticator,
    common_name,
    issued_by,
    organizations,
    peer_certificate,
    with_authenticated_group,
)
from kplane.client import ApiError, Client

log = logging.getLogger("kplane.extension.auth")

TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECTACCESSREVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
ALWAYS_ALLOW_PATHS = ("/healthz", "/readyz", "/livez")
ALWAYS_ALLOW_GROUPS = ("system:masters",)


class _TTLCache:
    def __init__(self, max_entries: int = 10_000):
        self._data: dict[Any, tuple[float, Any]] = {}
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> Any:
        entry = self._data.get(key)
        if entry is not None:
            if entry[0] > time.monotonic():
                self.hits += 1
                return entry[1]
            del self._data[key]
        self.misses += 1
        return None

    def put(self, key: Any, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(self._data) >= self.max_entries:
            now = time.monotonic()
            for k in [k for k, (exp, _) in self._data.items() if exp <= now] or list(self._data)[:1000]:
                self._data.pop(k, None)
        self._data[key] = (time.monotonic() + ttl, value)

    def clear(self) -> None:
        self._data.clear()

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


# ---- authentication -------------------------------------------------------


class TokenReviewer:
    """Bearer tokens checked with kplane's TokenReview API."""

    def __init__(self, client: Client, *, cache_ttl: float = 10.0, audiences: list[str] | None = None):
        self.client = client
        self.cache_ttl = cache_ttl
        self.audiences = audiences or []
        self.cache = _TTLCache()

    async def review(self, token: str) -> UserInfo | None:
        cached = self.cache.get(token)
        if cached is not None:
            return cached[0]
        spec: dict[str, Any] = {"token": token}
        if self.audiences:
            spec["audiences"] = self.audiences
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        try:
            result = await self.client.request("POST", TOKENREVIEWS, body)
        except (ApiError, OSError, TimeoutError) as e:
            log.warning("msg=\"TokenReview failed\" err=%r", e)
            raise AuthenticationError(f"token review failed: {e}") from None
        status = (result or {}).get("status") or {}
        user = None
        if status.get("authenticated"):
            u = status.get("user") or {}
            user = UserInfo(u.get("username", ""), tuple(u.get("groups") or ()), u.get("uid", ""),
                            {k: tuple(v) for k, v in (u.get("extra") or {}).items()})
        self.cache.put(token, (user,), self.cache_ttl)
        return user


class DelegatingAuthenticator:
    def __init__(self, requestheader: RequestHeaderAuthenticator, *,
                 client_ca: list[x509.Certificate] | None = None, tokens: TokenReviewer | None = None):
        self.requestheader = requestheader
        self.client_ca = client_ca or []
        self.tokens = tokens

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        user = await self.authenticate_parts(peer_certificate(request), request.headers)
        return user

    async def authenticate_parts(self, cert: x509.Certificate | None, headers: Any) -> UserInfo | None:
        failures: list[str] = []
        try:
            user = self.requestheader.authenticate_cert(cert, headers)
            if user is not None:
                return with_authenticated_group(user)
        except AuthenticationError as e:
            failures.append(str(e))
        if cert is not None:
            if self.client_ca and issued_by(cert, self.client_ca) and common_name(cert):
                return with_authenticated_group(UserInfo(common_name(cert), organizations(cert)))
            failures.append("x509: certificate signed by unknown authority")
        auth = headers.get("Authorization", "")
        if auth[:7].lower() == "bearer " and auth[7:].strip():
            if self.tokens is None:
                failures.append("bearer tokens are not accepted")
            else:
                try:
                    user = await self.tokens.review(auth[7:].strip())
                except AuthenticationError as e:
                    failures.append(str(e))
                    user = None
                if user is not None:
                    return with_authenticated_group(user)
                failures.append("invalid bearer token")
        if failures:
            log.debug("msg=\"authentication failed\" reasons=%r", failures)
            raise errors.unauthorized()
        return None


# ---- authorization --------------------------------------------------------


def sar_spec(attrs: RequestAttributes) -> dict[str, Any]:
    """The SubjectAccessReview spec upstream's webhook authorizer sends."""
    user = attrs.user
    spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups)}
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    if attrs.is_resource_request:
        ra = {"namespace": attrs.namespace, "verb": attrs.verb, "group": attrs.api_group,
              "version": attrs.api_version, "resource": attrs.resource, "subresource": attrs.subresource,
              "name": attrs.name}
        spec["resourceAttributes"] = {k: v for k, v in ra.items() if v}
    else:
        spec["nonResourceAttributes"] = {"path": attrs.path, "verb": attrs.verb}
    return spec


def _cache_key(attrs: RequestAttributes) -> tuple:
    u = attrs.user
    return (u.name, u.groups, u.uid, tuple(sorted((k, tuple(v)) for k, v in u.extra.items())), attrs.verb,
            attrs.is_resource_request, attrs.path if not attrs.is_resource_request else "", attrs.api_group,
            attrs.api_version, attrs.resource, attrs.subresource, attrs.namespace, attrs.name)


class DelegatingAuthorizer:
    def __init__(self, client: Client | None, *, allow_ttl: float = 10.0, deny_ttl: float = 10.0,
                 always_allow_paths: tuple[str, ...] | list[str] = ALWAYS_ALLOW_PATHS,
                 always_allow_groups: tuple[str, ...] | list[str] = ALWAYS_ALLOW_GROUPS,
                 always_allow: bool = False):
        self.client = client
        self.always_allow = always_allow
        self.allow_ttl = allow_ttl
        self.deny_ttl = deny_ttl
        self.always_allow_paths = tuple(always_allow_paths)
        self.always_allow_groups = frozenset(always_allow_groups)
        self.cache = _TTLCache()
        self.reviews = 0  # SubjectAccessReviews actually sent

    def _always_allowed(self, attrs: RequestAttributes) -> bool:
        if self.always_allow_groups.intersection(attrs.user.groups):
            return True
        if not attrs.is_resource_request:
            path = attrs.path.rstrip("/") or "/"
            for p in self.always_allow_paths:
                if p.endswith("*") and path.startswith(p[:-1]) or path == p:
                    return True
        return False

    async def authorize(self, attrs: RequestAttributes) -> tuple[str, str]:
        if self.always_allow or self._always_allowed(attrs):
            return ALLOW, ""
        if self.client is None:
            return NO_OPINION, ""
        key = _cache_key(attrs)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": sar_spec(attrs)}
        self.reviews += 1
        try:
            result = await self.client.request("POST", SUBJECTACCESSREVIEWS, body)
        except ApiError as e:
            if e.code == 404:
                # kplane does not serve SubjectAccessReview: nobody has an opinion.
                log.warning("msg=\"SubjectAccessReview API not served; denying\" path=%s", attrs.path)
                return NO_OPINION, ""
            raise errors.internal(f"error contacting the authorizer: {e}") from None
        except (OSError, TimeoutError) as e:
            raise errors.internal(f"error contacting the authorizer: {e}") from None
        status = (result or {}).get("status") or {}
        reason = status.get("reason", "") or status.get("evaluationError", "")
        if status.get("allowed"):
            decision = (ALLOW, reason)
            self.cache.put(key, decision, self.allow_ttl)
        else:
            decision = (DENY if status.get("denied") else NO_OPINION, reason)
            self.cache.put(key, decision, self.deny_ttl)
        return decision
