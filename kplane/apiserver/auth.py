"""Who is asking and what they ask for: the types authentication and
authorization exchange (k8s.io/apiserver/pkg/authentication/user.Info and
pkg/authorization/authorizer.Attributes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __hash__(self) -> int:  # extra is a dict; identity for caching is name+groups+uid
        return hash((self.name, self.groups, self.uid))


def user_info(user: UserInfo | None) -> dict[str, Any]:
    """authentication/v1 UserInfo (audit events, TokenReview, SelfSubjectReview), empty fields left out."""
    out: dict[str, Any] = {}
    if user is None:
        return out
    if user.name:
        out["username"] = user.name
    if user.uid:
        out["uid"] = user.uid
    if user.groups:
        out["groups"] = list(user.groups)
    if user.extra:
        out["extra"] = {k: list(v) for k, v in user.extra.items()}
    return out


@dataclass(frozen=True)
class RequestAttributes:
    """What a request does, as the request-info filter derives it from the URL."""

    user: UserInfo
    verb: str  # get list watch create update patch delete deletecollection; or http verb for non-resource
    is_resource_request: bool
    path: str
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


# Authorizer decisions, as upstream.
ALLOW = "Allow"
DENY = "Deny"
NO_OPINION = "NoOpinion"
