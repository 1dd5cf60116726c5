"""Authorization until RBAC is wired in: members of system:masters may do
everything, health and version are public, everyone else is forbidden."""

from __future__ import annotations

from kplane.apiserver.auth import ALLOW, DENY, RequestAttributes

_PUBLIC = ("/healthz", "/livez", "/readyz", "/version")


class MastersOnlyAuthorizer:
    async def authorize(self, attrs: RequestAttributes) -> tuple[str, str]:
        if "system:masters" in attrs.user.groups:
            return ALLOW, ""
        if not attrs.is_resource_request and attrs.verb == "get" and attrs.path.startswith(_PUBLIC):
            return ALLOW, ""
        return DENY, ""
