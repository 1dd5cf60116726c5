"""The express lane's decision (GenericAPIServer._express_verdict): a connection repeating its
request reuses the last one only while the authorizer's revision stands and for at most
EXPRESS_VERDICT_SECONDS; anything else is decided again."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from kplane.apiserver import server as server_module
from kplane.apiserver.auth import ALLOW, NO_OPINION, UserInfo
from kplane.apiserver.server import GenericAPIServer

PATH = "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders/a"


class Authenticator:
    def __init__(self) -> None:
        self.calls = 0
        self.user = UserInfo(name="alice", groups=["system:authenticated"])

    async def authenticate(self, request: Any) -> UserInfo | None:
        return self.authenticate_now(request)

    def authenticate_now(self, request: Any) -> UserInfo | None:
        self.calls += 1
        return self.user


class Authorizer:
    def __init__(self) -> None:
        self.calls = 0
        self.decision = ALLOW
        self.current: int | None = 1

    async def authorize(self, attrs: Any) -> tuple[str, str]:
        return self.authorize_sync(attrs)

    def authorize_sync(self, attrs: Any) -> tuple[str, str]:
        self.calls += 1
        return self.decision, ""

    def revision(self) -> int | None:
        return self.current


class Delegate:
    def __init__(self) -> None:
        self.served: list[tuple[str, str]] = []

    def claims(self, info: Any) -> bool:
        return info.api_group == "wardle.example.com"

    def serve_now(self, request: Any, info: Any, user: Any) -> Any:
        self.served.append((info.verb, user.name))
        return SimpleNamespace(audit_id="")


class Request(dict):
    def __init__(self, protocol: Any, headers: Any, method: str = "GET", raw_path: str = PATH):
        super().__init__()
        self._protocol = protocol
        self.headers = headers
        self.method = method
        self.raw_path = raw_path
        self.path = raw_path
        self.impersonating = False


@pytest.fixture
def parts():
    authn, authz, delegate = Authenticator(), Authorizer(), Delegate()
    server = GenericAPIServer(None, authenticator=authn, authorizer=authz, version_info={})  # type: ignore[arg-type]
    server.express_delegate = delegate
    return server, authn, authz, delegate, SimpleNamespace(express_verdict=None)


def test_a_repeated_request_reuses_the_decision(parts) -> None:
    server, authn, authz, delegate, conn = parts
    headers = {"Accept": "application/json"}
    for _ in range(3):
        assert server._express(Request(conn, headers)) is not None
    assert (authn.calls, authz.calls) == (1, 1)
    assert delegate.served == [("get", "alice")] * 3


def test_a_different_head_method_or_path_is_decided_again(parts) -> None:
    server, authn, authz, _, conn = parts
    headers = {"Accept": "application/json"}
    server._express(Request(conn, headers))
    server._express(Request(conn, dict(headers)))  # an equal but re-parsed header block: not the same
    server._express(Request(conn, headers, method="DELETE"))
    server._express(Request(conn, headers, raw_path=PATH + "?x=1"))
    assert (authn.calls, authz.calls) == (4, 4)


def test_a_new_authorizer_revision_is_decided_again_and_can_refuse(parts) -> None:
    server, _, authz, delegate, conn = parts
    headers = {"Accept": "application/json"}
    assert server._express(Request(conn, headers)) is not None
    authz.current, authz.decision = 2, NO_OPINION  # e.g. the RoleBinding was deleted
    assert server._express(Request(conn, headers)) is None  # the filter chain answers the 403
    assert authz.calls == 2 and len(delegate.served) == 1


def test_without_a_revision_nothing_is_reused(parts) -> None:
    server, authn, authz, _, conn = parts
    authz.current = None
    headers = {"Accept": "application/json"}
    server._express(Request(conn, headers))
    server._express(Request(conn, headers))
    assert (authn.calls, authz.calls) == (2, 2) and conn.express_verdict is None


def test_a_decision_is_reused_for_a_bounded_time(parts, monkeypatch) -> None:
    server, authn, _, _, conn = parts
    clock = [100.0]
    monkeypatch.setattr(server_module.time, "monotonic", lambda: clock[0])
    headers = {"Accept": "application/json"}
    server._express(Request(conn, headers))
    clock[0] += server_module.EXPRESS_VERDICT_SECONDS / 2
    server._express(Request(conn, headers))
    assert authn.calls == 1
    clock[0] += server_module.EXPRESS_VERDICT_SECONDS
    server._express(Request(conn, headers))
    assert authn.calls == 2  # e.g. a token that expired or whose Secret is gone is checked again
