"""Authentication, authorization, the review APIs and the RBAC controllers, assembled on the
control plane's GenericAPIServer from the `serve` options.

    auth = install_auth(server, options, pki)   # after the built-in resources are installed
    await auth.start()                          # after the server listens and kube-system exists
    await auth.stop()
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kplane.apiserver.authn_requestheader import RequestHeaderConfig, load_pem_certs
from kplane.controlplane.authentication import (
    ControlPlaneAuthenticator,
    Impersonation,
    ServiceAccountTokenAuthenticator,
    TokenAuthenticator,
)
from kplane.controlplane.authn.serviceaccount import (
    DEFAULT_ISSUER,
    ServiceAccountTokenIssuer,
    ServiceAccountTokenVerifier,
)
from kplane.controlplane.authn.tokenfile import TokenFileAuthenticator
from kplane.controlplane.authorization import (
    AggregationController,
    ControlPlaneAuthorizer,
    EscalationChecks,
    reconcile_bootstrap_policy,
)
from kplane.controlplane.reviews import Reviews

log = logging.getLogger("kplane.auth")

FRONT_PROXY_ALLOWED_NAMES = ["front-proxy-client"]


class AuthSetup:
    def __init__(self, server: Any, authorizer: ControlPlaneAuthorizer, rbac_enabled: bool) -> None:
        self.server = server
        self.authorizer = authorizer
        self.rbac_enabled = rbac_enabled
        self.token_issuer: ServiceAccountTokenIssuer | None = None
        self.aggregation = AggregationController(server)
        self.bootstrapped = asyncio.Event()
        server.health.add("poststarthook/rbac/bootstrap-roles", self._bootstrap_check,
                          endpoints=("healthz", "readyz", "livez"))

    async def _bootstrap_check(self) -> None:
        if not self.bootstrapped.is_set():
            raise RuntimeError("not finished")

    async def start(self) -> None:
        await reconcile_bootstrap_policy(self.server)
        # Idempotent (updates carry the resourceVersion read); the watching controller,
        # self.aggregation.start(), is started by the caller on the elected replica.
        await self.aggregation.sync_all()
        self.bootstrapped.set()

    async def stop(self) -> None:
        await self.aggregation.stop()


def install_auth(server: Any, options: Any, pki: Any) -> AuthSetup:
    issuers = list(options.service_account_issuer) or [DEFAULT_ISSUER]
    api_audiences = list(options.api_audiences) or issuers[:1]
    key_files = list(options.service_account_key_files) or [str(pki.sa_pub)]
    signing_key = options.service_account_signing_key_file or str(pki.sa_key)

    verifier = ServiceAccountTokenVerifier.from_pem_files(key_files, issuers, api_audiences)
    issuer = ServiceAccountTokenIssuer.from_pem_file(signing_key, issuers[0])
    sa_registry = server.registry("", "v1", "serviceaccounts")

    secret_registry = server.registry("", "v1", "secrets")

    def cached(registry: Any) -> Any:
        def get(namespace: str, name: str) -> dict | None:
            if not namespace or not name:
                return None
            hit = registry.cacher.get(registry.rdef.key(namespace, name))
            return hit[1] if hit is not None else None
        return get

    token_file = TokenFileAuthenticator.from_file(options.token_auth_file) if options.token_auth_file else None
    tokens = TokenAuthenticator(token_file, ServiceAccountTokenAuthenticator(verifier, cached(sa_registry),
                                                                             cached(secret_registry)))
    server.authenticator = ControlPlaneAuthenticator(
        client_ca=load_pem_certs(pki.ca_cert.read_bytes()),
        requestheader=RequestHeaderConfig.from_pem(pki.front_proxy_ca_cert.read_bytes(),
                                                   allowed_names=list(FRONT_PROXY_ALLOWED_NAMES)),
        tokens=tokens)

    authorizer = ControlPlaneAuthorizer(server, options.authorization_mode)
    server.authorizer = authorizer
    server.impersonation = Impersonation(authorizer.authorize_sync)
    EscalationChecks(authorizer).install(server)
    Reviews(authorizer=authorizer, tokens=tokens, api_audiences=api_audiences, issuer=issuer,
            server=server).install(server)
    log.info("msg=%r modes=%s token_file=%s", "authentication and authorization configured",
             ",".join(authorizer.modes), bool(token_file))
    setup = AuthSetup(server, authorizer, "RBAC" in authorizer.modes)
    setup.token_issuer = issuer  # the token controller signs legacy Secret tokens with it
    return setup
