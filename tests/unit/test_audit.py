"""Audit (kplane/apiserver/audit.py): policy matching as upstream's checker, policy validation, the
log backend's rotation, and the events the filter chain emits — on a GenericAPIServer served by
aiohttp's test server with a fake authenticator and authorizer."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kplane.apimachinery import errors
from kplane.apiserver.audit import (
    METADATA,
    NONE,
    REQUEST,
    Auditor,
    LogBackend,
    PolicyError,
    load_policy,
    new_auditor,
    parse_policy,
    without_managed_fields,
)
from kplane.apiserver.auth import ALLOW, NO_OPINION, UserInfo
from kplane.apiserver.requestinfo import resolve
from kplane.apiserver.server import GenericAPIServer


def policy(*rules: dict, **top: Any):
    return parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": list(rules), **top})


def info(method: str, path: str, query: dict | None = None):
    return resolve(method, path, query or {})


ALICE = UserInfo("alice", ("devs", "system:authenticated"))


# ---- policy ---------------------------------------------------------------------------------------


def test_first_matching_rule_wins_and_no_match_is_none() -> None:
    p = policy({"level": "None", "users": ["system:kube-proxy"]},
               {"level": "Request", "resources": [{"group": "", "resources": ["secrets"]}]},
               {"level": "Metadata", "resources": [{"group": ""}]})
    assert p.evaluate(UserInfo("system:kube-proxy"), info("GET", "/api/v1/secrets")).level == NONE
    assert p.evaluate(ALICE, info("GET", "/api/v1/namespaces/a/secrets/s")).level == REQUEST
    assert p.evaluate(ALICE, info("GET", "/api/v1/namespaces/a/configmaps")).level == METADATA
    assert p.evaluate(ALICE, info("GET", "/apis/apps/v1/deployments")).level == NONE
    assert p.evaluate(ALICE, info("GET", "/healthz")).level == NONE


def test_rule_fields_match_as_upstream_checker() -> None:
    def level(rule: dict, user: Any, method: str, path: str, query: dict | None = None) -> int:
        return policy(rule).evaluate(user, info(method, path, query)).level

    assert level({"level": "Metadata", "userGroups": ["devs"]}, ALICE, "GET", "/version") == METADATA
    assert level({"level": "Metadata", "userGroups": ["ops"]}, ALICE, "GET", "/version") == NONE
    assert level({"level": "Metadata", "users": ["alice"]}, None, "GET", "/version") == NONE
    assert level({"level": "Metadata", "verbs": ["watch"]}, ALICE, "GET", "/api/v1/pods",
                 {"watch": "true"}) == METADATA
    assert level({"level": "Metadata", "verbs": ["list"]}, ALICE, "GET", "/api/v1/pods", {"watch": "1"}) == NONE
    # Namespaces: "" is cluster scope; a namespace rule never matches non-resource URLs.
    assert level({"level": "Metadata", "namespaces": [""]}, ALICE, "GET", "/api/v1/nodes") == METADATA
    assert level({"level": "Metadata", "namespaces": ["a"]}, ALICE, "GET", "/api/v1/namespaces/b/pods") == NONE
    assert level({"level": "Metadata", "namespaces": ["a"]}, ALICE, "GET", "/healthz") == NONE
    # Subresources: "pods/status", "*/status", "pods/*"; plain "pods" does not cover pods/status.
    status = "/api/v1/namespaces/a/pods/p/status"
    for res, want in (("pods", NONE), ("pods/status", METADATA), ("*/status", METADATA), ("pods/*", METADATA),
                      ("*", METADATA), ("*/log", NONE)):
        assert level({"level": "Metadata", "resources": [{"resources": [res]}]}, ALICE, "GET", status) == want, res
    # resourceNames.
    rule = {"level": "Metadata", "resources": [{"resources": ["configmaps"], "resourceNames": ["c1"]}]}
    assert level(rule, ALICE, "GET", "/api/v1/namespaces/a/configmaps/c1") == METADATA
    assert level(rule, ALICE, "GET", "/api/v1/namespaces/a/configmaps/c2") == NONE
    assert level(rule, ALICE, "GET", "/api/v1/namespaces/a/configmaps") == NONE
    # Groups must match exactly; a group with no resources matches all of its resources.
    rule = {"level": "Metadata", "resources": [{"group": "wardle.example.com"}]}
    assert level(rule, ALICE, "GET", "/apis/wardle.example.com/v1alpha1/flunders") == METADATA
    assert level(rule, ALICE, "GET", "/api/v1/pods") == NONE
    # Non-resource URLs: exact, trailing wildcard, "*"; never resource requests.
    for spec, path, want in (("/healthz", "/healthz", METADATA), ("/healthz*", "/healthz/etcd", METADATA),
                             ("/healthz", "/healthz/etcd", NONE), ("*", "/version", METADATA),
                             ("*", "/api/v1/pods", NONE)):
        assert level({"level": "Metadata", "nonResourceURLs": [spec]}, ALICE, "GET", path) == want, (spec, path)


def test_omit_stages_union_and_managed_fields() -> None:
    p = policy({"level": "Request", "omitStages": ["ResponseStarted"], "omitManagedFields": False},
               {"level": "Metadata", "users": ["bob"]},
               omitStages=["RequestReceived"], omitManagedFields=True)
    cfg = p.evaluate(ALICE, info("GET", "/version"))
    assert cfg.omit_stages == {"RequestReceived", "ResponseStarted"} and cfg.omit_managed_fields is False
    cfg = p.evaluate(UserInfo("bob"), info("GET", "/version"))
    assert cfg.omit_stages == {"RequestReceived", "ResponseStarted"}  # the first rule matched bob too
    p = policy({"level": "Metadata", "users": ["bob"]}, omitStages=["RequestReceived"], omitManagedFields=True)
    assert p.evaluate(UserInfo("bob"), info("GET", "/x")).omit_managed_fields is True
    assert p.evaluate(ALICE, info("GET", "/x")).omit_stages == {"RequestReceived"}


def test_policy_validation(tmp_path) -> None:
    with pytest.raises(PolicyError, match='rules\\[0\\].level: Unsupported value: "Everything"'):
        policy({"level": "Everything"})
    with pytest.raises(PolicyError, match="rules cannot apply to both regular resources and non-resource URLs"):
        policy({"level": "Metadata", "resources": [{"resources": ["pods"]}], "nonResourceURLs": ["/x"]})
    with pytest.raises(PolicyError, match="using resourceNames requires at least one resource"):
        policy({"level": "Metadata", "resources": [{"resourceNames": ["x"]}]})
    with pytest.raises(PolicyError, match='omitStages\\[0\\]: Unsupported value: "Later"'):
        policy({"level": "Metadata"}, omitStages=["Later"])
    with pytest.raises(PolicyError, match="want kind Policy"):
        parse_policy({"apiVersion": "v1", "kind": "ConfigMap"})
    empty = tmp_path / "empty.yaml"
    empty.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n")
    with pytest.raises(PolicyError, match="loaded illegal policy with 0 rules"):
        load_policy(empty)
    good = tmp_path / "p.yaml"
    good.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n"
                    "rules:\n- level: Metadata\n")
    assert load_policy(good).rules[0].level == METADATA
    # A log path without a policy file records nothing (upstream); a policy without a log path neither.
    assert new_auditor("", str(tmp_path / "audit.log")) is None
    assert new_auditor(str(good), "") is None


def test_without_managed_fields_leaves_the_original() -> None:
    obj = {"metadata": {"name": "a", "managedFields": [{}]}, "kind": "ConfigMap"}
    lst = {"kind": "ConfigMapList", "items": [obj]}
    assert without_managed_fields(obj) == {"metadata": {"name": "a"}, "kind": "ConfigMap"}
    assert without_managed_fields(lst)["items"] == [{"metadata": {"name": "a"}, "kind": "ConfigMap"}]
    assert obj["metadata"]["managedFields"] == [{}]


# ---- the log backend ------------------------------------------------------------------------------


def test_log_backend_writes_lines_and_rotates(tmp_path) -> None:
    path = tmp_path / "logs" / "audit.log"
    backend = LogBackend(str(path), max_backups=2)
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    backend.max_bytes = 100
    for i in range(12):
        backend.write(orjson.dumps({"i": i, "pad": "x" * 30}) + b"\n")
        time.sleep(0.002)  # distinct rotation timestamps (millisecond resolution, as lumberjack)
    backend.close()
    backups = sorted(p.name for p in path.parent.glob("audit-*.log"))
    assert len(backups) == 2, backups
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines and lines[-1]["i"] == 11
    assert all(p.stat().st_size <= 100 for p in path.parent.iterdir())


# ---- events through the filter chain --------------------------------------------------------------


class Lines:
    def __init__(self) -> None:
        self.lines: list[dict] = []
        self.closed = False

    def write(self, line: bytes) -> None:
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        self.lines.append(json.loads(line))

    def close(self) -> None:
        self.closed = True

    def stages(self) -> list[str]:
        return [e["stage"] for e in self.lines]


class HeaderAuthn:
    """X-Test-User / X-Test-Group; "bad" is a rejected credential."""

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        name = request.headers.get("X-Test-User")
        if name is None:
            return None
        if name == "bad":
            raise errors.unauthorized()
        return UserInfo(name, tuple(request.headers.getall("X-Test-Group", [])) + ("system:authenticated",),
                        uid=f"uid-{name}", extra={"scopes": ("a", "b")} if name == "alice" else {})


class Authz:
    async def authorize(self, attrs: Any) -> tuple[str, str]:
        if attrs.user.name == "mallory":
            return NO_OPINION, ""
        return ALLOW, f'RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "{attrs.user.name}"'


async def impersonate(request: web.Request, user: UserInfo) -> UserInfo:
    name = request.headers.get("Impersonate-User")
    if not name:
        return user
    return UserInfo(name, ("system:authenticated",))


async def configmaps(request: web.Request, info: Any) -> web.StreamResponse | None:
    """A stand-in resource handler: reads the body from the stream, as the real handlers do."""
    if info.resource != "configmaps":
        return None
    if info.verb == "watch":
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b'{"type":"ADDED","object":{}}\n')
        await resp.write_eof()
        return resp
    if request.method == "POST":
        raw = await request.content.read()
        obj = json.loads(raw)
        obj["metadata"]["managedFields"] = [{"manager": "kubectl"}]
        return web.json_response(obj, status=201)
    if info.name == "boom":
        raise RuntimeError("kaboom")
    if info.name == "missing":
        raise errors.not_found("configmaps", "missing")
    return web.json_response({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": info.name}})


POLICY = policy(
    {"level": "None", "users": ["quiet"]},
    {"level": "RequestResponse", "resources": [{"group": "", "resources": ["configmaps"],
                                                "resourceNames": ["full"]}], "omitManagedFields": True},
    {"level": "Request", "verbs": ["create"], "resources": [{"group": "", "resources": ["configmaps"]}]},
    {"level": "Metadata", "omitStages": ["RequestReceived"], "nonResourceURLs": ["/version"]},
    {"level": "Metadata"},
)


@pytest.fixture
async def server():
    lines = Lines()
    gs = GenericAPIServer(None, authenticator=HeaderAuthn(), authorizer=Authz(),  # type: ignore[arg-type]
                          version_info={"gitVersion": "v1.32.0"}, anonymous_auth=False)
    gs.impersonation = impersonate
    gs.delegates.append(configmaps)
    gs.audit = Auditor(POLICY, lines)
    client = TestClient(TestServer(gs.build_app()))
    await client.start_server()
    yield SimpleNamespace(client=client, lines=lines, gs=gs)
    await client.close()


async def test_metadata_event_shape_and_audit_id_header(server) -> None:
    r = await server.client.get("/api/v1/namespaces/ns1/configmaps/c1?x=1",
                                headers={"X-Test-User": "alice", "X-Test-Group": "devs", "User-Agent": "ua/1"})
    assert r.status == 200
    received, complete = server.lines.lines
    assert [received["stage"], complete["stage"]] == ["RequestReceived", "ResponseComplete"]
    assert r.headers["Audit-Id"] == complete["auditID"] == received["auditID"]
    assert list(complete) == ["kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user",
                              "sourceIPs", "userAgent", "objectRef", "responseStatus", "requestReceivedTimestamp",
                              "stageTimestamp", "annotations"]
    assert complete["kind"] == "Event" and complete["apiVersion"] == "audit.k8s.io/v1"
    assert complete["level"] == "Metadata" and complete["verb"] == "get"
    assert complete["requestURI"] == "/api/v1/namespaces/ns1/configmaps/c1?x=1"
    assert complete["user"] == {"username": "alice", "uid": "uid-alice",
                                "groups": ["devs", "system:authenticated"], "extra": {"scopes": ["a", "b"]}}
    assert complete["sourceIPs"] == ["127.0.0.1"] and complete["userAgent"] == "ua/1"
    assert complete["objectRef"] == {"resource": "configmaps", "namespace": "ns1", "name": "c1", "apiVersion": "v1"}
    assert complete["responseStatus"] == {"metadata": {}, "code": 200}
    assert complete["annotations"] == {
        "authorization.k8s.io/decision": "allow",
        "authorization.k8s.io/reason": 'RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "alice"'}
    assert "responseStatus" not in received and "annotations" not in received
    ts = complete["stageTimestamp"]
    assert ts.endswith("Z") and len(ts.split(".")[1]) == 7  # microseconds
    assert complete["requestReceivedTimestamp"] <= ts


async def test_client_audit_id_is_kept_and_every_response_has_one(server) -> None:
    r = await server.client.get("/version", headers={"X-Test-User": "alice", "Audit-ID": "my-id-1"})
    assert r.headers["Audit-Id"] == "my-id-1"
    assert [(e["stage"], e["auditID"]) for e in server.lines.lines] == [("ResponseComplete", "my-id-1")]
    r = await server.client.get("/version", headers={"X-Test-User": "quiet"})  # level None: no event
    assert r.status == 200 and len(r.headers["Audit-Id"]) == 36
    assert len(server.lines.lines) == 1


async def test_forbidden_and_errors_carry_the_status(server) -> None:
    r = await server.client.get("/api/v1/namespaces/ns1/configmaps", headers={"X-Test-User": "mallory"})
    assert r.status == 403
    ev = server.lines.lines[-1]
    assert ev["responseStatus"] == {
        "metadata": {}, "status": "Failure",
        "message": 'configmaps is forbidden: User "mallory" cannot list resource "configmaps" in API group "" '
                   'in the namespace "ns1"',
        "reason": "Forbidden", "details": {"kind": "configmaps"}, "code": 403}
    assert ev["annotations"] == {"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""}
    r = await server.client.get("/api/v1/namespaces/ns1/configmaps/missing", headers={"X-Test-User": "alice"})
    assert r.status == 404
    assert server.lines.lines[-1]["responseStatus"]["reason"] == "NotFound"
    assert server.lines.lines[-1]["responseStatus"]["code"] == 404


async def test_request_level_keeps_the_body_for_the_handler(server) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "made", "namespace": "ns1"},
            "data": {"k": "v"}}
    r = await server.client.post("/api/v1/namespaces/ns1/configmaps", json=body, headers={"X-Test-User": "bob"})
    assert r.status == 201 and (await r.json())["data"] == {"k": "v"}
    ev = server.lines.lines[-1]
    assert ev["level"] == "Request" and ev["verb"] == "create"
    assert ev["requestObject"] == body
    assert "responseObject" not in ev
    assert ev["objectRef"] == {"resource": "configmaps", "namespace": "ns1", "name": "made", "apiVersion": "v1"}
    assert ev["responseStatus"] == {"metadata": {}, "code": 201}


async def test_request_response_level_omits_managed_fields(server) -> None:
    r = await server.client.get("/api/v1/namespaces/ns1/configmaps/full", headers={"X-Test-User": "bob"})
    assert r.status == 200
    ev = server.lines.lines[-1]
    assert ev["level"] == "RequestResponse"
    assert ev["responseObject"] == {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "full"}}
    assert "requestObject" not in ev


async def test_impersonated_user(server) -> None:
    await server.client.get("/api/v1/namespaces/ns1/configmaps/c1",
                            headers={"X-Test-User": "alice", "Impersonate-User": "someone"})
    received, complete = server.lines.lines
    assert received["user"]["username"] == complete["user"]["username"] == "alice"
    assert "impersonatedUser" not in received  # known only after the impersonation filter, as upstream
    assert complete["impersonatedUser"] == {"username": "someone", "groups": ["system:authenticated"]}


async def test_failed_authentication(server) -> None:
    r = await server.client.get("/api/v1/namespaces/ns1/configmaps", headers={"Authorization": "Bearer nope",
                                                                              "X-Test-User": "bad"})
    assert r.status == 401
    (ev,) = server.lines.lines
    assert ev["stage"] == "ResponseStarted" and ev["user"] == {}
    assert ev["responseStatus"] == {"metadata": {}, "message": "Authentication failed, attempted: bearer",
                                    "code": 401}
    r = await server.client.get("/version")  # anonymous disabled
    assert r.status == 401
    assert server.lines.lines[-1]["responseStatus"]["message"] == "Authentication failed, no credentials provided"


async def test_panic_stage(server) -> None:
    r = await server.client.get("/api/v1/namespaces/ns1/configmaps/boom", headers={"X-Test-User": "alice"})
    assert r.status == 500
    assert server.lines.stages() == ["RequestReceived", "Panic"]
    assert server.lines.lines[-1]["responseStatus"] == {
        "metadata": {}, "status": "Failure", "message": "APIServer panic'd: kaboom", "reason": "InternalError",
        "code": 500}


async def test_long_running_requests_have_response_started(server) -> None:
    r = await server.client.get("/api/v1/namespaces/ns1/configmaps?watch=true", headers={"X-Test-User": "alice"})
    assert r.status == 200 and r.headers["Audit-Id"]
    await r.read()
    for _ in range(50):
        if len(server.lines.lines) == 3:
            break
        await asyncio.sleep(0.01)
    assert server.lines.stages() == ["RequestReceived", "ResponseStarted", "ResponseComplete"]
    assert {e["verb"] for e in server.lines.lines} == {"watch"}
    assert server.lines.lines[1]["responseStatus"] == {"metadata": {}, "code": 200}
    # A long-running request refused before any header went out still gets both stages.
    await server.client.get("/api/v1/namespaces/ns1/configmaps?watch=1", headers={"X-Test-User": "mallory"})
    assert server.lines.stages()[-3:] == ["RequestReceived", "ResponseStarted", "ResponseComplete"]
    assert server.lines.lines[-2]["responseStatus"] == {"metadata": {}, "code": 403}


async def test_audit_id_without_auditing() -> None:
    gs = GenericAPIServer(None, authenticator=HeaderAuthn(), authorizer=Authz(),  # type: ignore[arg-type]
                          version_info={"gitVersion": "v1"}, anonymous_auth=False)
    async with TestClient(TestServer(gs.build_app())) as client:
        r = await client.get("/version", headers={"X-Test-User": "alice"})
        assert r.status == 200 and len(r.headers["Audit-Id"]) == 36
        r = await client.get("/version")
        assert r.status == 401 and r.headers["Audit-Id"]
