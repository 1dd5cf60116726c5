"""Secrets of type kubernetes.io/service-account-token (the controller-manager's token controller).

A Secret of that type names its ServiceAccount in the kubernetes.io/service-account.name
annotation (validation requires it). The controller fills it in — a legacy token signed with the
ServiceAccount signing key (authn/serviceaccount.py: issue_legacy), `ca.crt`, `namespace`, and the
ServiceAccount's uid in kubernetes.io/service-account.uid — so that "manually create a long-lived
API token for a ServiceAccount" works as documented upstream. As upstream, a Secret whose
ServiceAccount does not exist (or is another one now: a different uid) is deleted, and so are a
ServiceAccount's token Secrets when it is deleted; the token is valid while its Secret holds it
(authentication.py).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

from kplane.apimachinery import errors
from kplane.apiserver.registry import ListOptions, WriteOptions
from kplane.apiserver.server import GenericAPIServer
from kplane.controlplane.authn.serviceaccount import ServiceAccountTokenIssuer
from kplane.controlplane.controller import Controller

log = logging.getLogger("kplane.tokens")

TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME = "kubernetes.io/service-account.name"
SA_UID = "kubernetes.io/service-account.uid"


def _write() -> WriteOptions:
    return WriteOptions(field_manager="kplane-token-controller")


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


class TokensController(Controller):
    def __init__(self, server: GenericAPIServer, issuer: ServiceAccountTokenIssuer, ca_pem: bytes):
        super().__init__()
        self.server = server
        self.issuer = issuer
        self.ca_pem = ca_pem
        self.secrets = server.registry("", "v1", "secrets")
        self.accounts = server.registry("", "v1", "serviceaccounts")

    async def _run(self) -> None:
        await asyncio.gather(self._follow(self.secrets, self._sync_secret),
                             self._follow(self.accounts, self._account_event))

    async def _follow(self, registry: Any, handle: Any) -> None:
        while True:
            try:
                async for ev in registry.watch("", ListOptions()):
                    try:
                        await handle(ev.type, ev.object)
                    except errors.StatusError as e:
                        if e.code not in (404, 409):  # gone, or changed meanwhile: its next event says
                            log.warning("token controller: %s", e)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("token controller watch failed; restarting")
            await asyncio.sleep(1)

    async def _account(self, namespace: str, name: str) -> dict[str, Any] | None:
        hit = self.accounts.cacher.get(self.accounts.rdef.key(namespace, name))
        if hit is not None:
            return hit[1]
        try:  # the cache may lag a ServiceAccount created a moment ago (another replica)
            return await self.accounts.get(namespace, name)
        except errors.StatusError as e:
            if e.code == 404:
                return None
            raise

    async def _sync_secret(self, event: str, secret: dict[str, Any]) -> None:
        m = secret["metadata"]
        if event not in ("ADDED", "MODIFIED") or secret.get("type") != TOKEN_TYPE or m.get("deletionTimestamp"):
            return
        annotations = m.get("annotations") or {}
        namespace, name, sa_name = m.get("namespace", ""), m["name"], annotations.get(SA_NAME, "")
        if not sa_name:
            return
        sa = await self._account(namespace, sa_name)
        sa_uid = (sa or {}).get("metadata", {}).get("uid", "")
        if sa is None or (annotations.get(SA_UID) and annotations[SA_UID] != sa_uid):
            log.info("deleting token secret %s/%s: its service account %s does not exist", namespace, name, sa_name)
            await self.secrets.delete(namespace, name, {"preconditions": {"uid": m.get("uid")}}, _write())
            return
        data = dict(secret.get("data") or {})
        wanted = {"ca.crt": _b64(self.ca_pem), "namespace": _b64(namespace)}
        if not data.get("token"):
            wanted["token"] = _b64(self.issuer.issue_legacy(namespace, sa_name, sa_uid, name))
        if all(data.get(k) == v for k, v in wanted.items()) and annotations.get(SA_UID) == sa_uid:
            return
        updated = {**secret, "data": {**data, **wanted},
                   "metadata": {**m, "annotations": {**annotations, SA_UID: sa_uid}}}
        await self.secrets.update(namespace, name, updated, _write())

    async def _account_event(self, event: str, account: dict[str, Any]) -> None:
        if event != "DELETED":
            return
        m = account["metadata"]
        namespace = m.get("namespace", "")
        listed = await self.secrets.list(namespace, ListOptions())
        for secret in listed.items:
            annotations = secret["metadata"].get("annotations") or {}
            if secret.get("type") == TOKEN_TYPE and annotations.get(SA_NAME) == m["name"] \
                    and annotations.get(SA_UID) in (None, m.get("uid")):
                await self.secrets.delete(namespace, secret["metadata"]["name"], {}, _write())
