"""Chaining authenticators, as k8s.io/apiserver/pkg/authentication/request/union and
group.AuthenticatedGroupAdder do it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from kplane.apiserver.auth import UserInfo

ANONYMOUS_USER = "system:anonymous"
AUTHENTICATED_GROUP = "system:authenticated"
UNAUTHENTICATED_GROUP = "system:unauthenticated"

R = TypeVar("R")


def authenticate_union(authenticators: Iterable[Callable[[R], UserInfo | None]], request_like: R,
                       errors: list[Exception] | None = None) -> UserInfo | None:
    """The first authenticator that recognises the request wins. One that raises does not stop
    the others (upstream's union is not fail-on-error); its exception is appended to `errors`
    if given, for logging. None means nobody recognised it (the caller answers 401 or falls back
    to anonymous)."""
    for authenticate in authenticators:
        try:
            user = authenticate(request_like)
        except Exception as e:  # noqa: BLE001 - an authenticator's failure is a "no", not a crash
            if errors is not None:
                errors.append(e)
            continue
        if user is not None:
            return user
    return None


def with_authenticated_group(user: UserInfo) -> UserInfo:
    """Append system:authenticated, except for the anonymous user and for users that already carry
    system:authenticated or system:unauthenticated."""
    if user.name == ANONYMOUS_USER:
        return user
    if AUTHENTICATED_GROUP in user.groups or UNAUTHENTICATED_GROUP in user.groups:
        return user
    return UserInfo(name=user.name, groups=(*user.groups, AUTHENTICATED_GROUP), uid=user.uid, extra=user.extra)


def anonymous_user() -> UserInfo:
    """What the anonymous authenticator yields when no other authenticator recognises a request."""
    return UserInfo(name=ANONYMOUS_USER, groups=(UNAUTHENTICATED_GROUP,))
