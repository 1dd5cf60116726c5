"""x509 client-certificate authentication: CN is the user, O the groups.

The TLS layer already verified the chain against the client CA; this only
reads the verified subject."""

from __future__ import annotations

from aiohttp import web

from kplane.apiserver.auth import UserInfo
from kplane.apiserver.server import peer_identity


class X509Authenticator:
    async def authenticate(self, request: web.Request) -> UserInfo | None:
        ident = peer_identity(request)
        if ident is None:
            return None
        cn, orgs = ident
        groups = tuple(dict.fromkeys(orgs + ("system:authenticated",)))
        return UserInfo(cn, groups)
