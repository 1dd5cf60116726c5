"""The audit log end to end: `kplane serve --audit-policy-file P --audit-log-path L`, the real kubectl,
and the JSON lines it leaves (audit.k8s.io/v1 Events). Proxied (aggregated) requests are audited in
tests/e2e/test_rbac_aggregated.py, which runs wardle behind an audited kplane."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from kplane.testing import KplaneProcess

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  users: ["quiet"]
- level: None
  nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*"]
- level: Request
  resources:
  - group: ""
    resources: ["secrets"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["configmaps"]
    resourceNames: ["full"]
- level: Metadata
  resources:
  - group: ""
    resources: ["configmaps"]
- level: Metadata
  omitStages: ["ResponseStarted"]
"""


class AuditLog:
    def __init__(self, path: Path):
        self.path = path

    def events(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 5.0) -> dict:
        """The last event matching `predicate` (the writer is a background thread: poll briefly)."""
        deadline = time.monotonic() + timeout
        while True:
            hits = [e for e in self.events() if predicate(e)]
            if hits:
                return hits[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no such audit event; last lines: {self.events()[-5:]}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def kp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit")
    (tmp / "policy.yaml").write_text(POLICY)
    with KplaneProcess(extra_args=["--audit-policy-file", str(tmp / "policy.yaml"),
                                   "--audit-log-path", str(tmp / "log" / "audit.log")]) as p:
        p.tmp = tmp
        p.audit = AuditLog(tmp / "log" / "audit.log")
        yield p


def kubectl(kubeconfig: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], capture_output=True, text=True, timeout=30,
                       check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {r.stderr}")
    return r


def user_kubeconfig(kp, name: str, groups: tuple[str, ...] = ()) -> str:
    return kp.user_kubeconfig(name, groups, kp.tmp)


def is_(verb: str, resource: str, name: str = "", user: str = "kplane-admin") -> Callable[[dict], bool]:
    def match(e: dict) -> bool:
        ref = e.get("objectRef") or {}
        return (e["verb"] == verb and ref.get("resource") == resource and ref.get("name", "") == name
                and e["user"].get("username") == user and e["stage"] == "ResponseComplete")
    return match


def test_metadata_event_for_a_configmap_create(kp) -> None:
    kubectl(kp.kubeconfig, "create", "configmap", "cm1", "-n", "default", "--from-literal=k=v")
    ev = kp.audit.wait_for(is_("create", "configmaps", "cm1"))
    assert ev["kind"] == "Event" and ev["apiVersion"] == "audit.k8s.io/v1"
    assert ev["level"] == "Metadata"
    assert ev["requestURI"].startswith("/api/v1/namespaces/default/configmaps?")
    assert "system:masters" in ev["user"]["groups"] and "system:authenticated" in ev["user"]["groups"]
    assert ev["sourceIPs"] == ["127.0.0.1"] and ev["userAgent"].startswith("kubectl/")
    # At Metadata the body is not logged, but the name it carried completes objectRef (as upstream).
    assert ev["objectRef"] == {"resource": "configmaps", "namespace": "default", "name": "cm1", "apiVersion": "v1"}
    assert "requestObject" not in ev and "responseObject" not in ev
    assert ev["responseStatus"] == {"metadata": {}, "code": 201}
    assert ev["annotations"]["authorization.k8s.io/decision"] == "allow"
    assert ev["requestReceivedTimestamp"] <= ev["stageTimestamp"]
    # omitStages: RequestReceived is left out policy-wide.
    assert not [e for e in kp.audit.events() if e["stage"] == "RequestReceived"]


def test_request_level_logs_the_secret_body(kp) -> None:
    kubectl(kp.kubeconfig, "create", "secret", "generic", "s1", "-n", "default", "--from-literal=password=hunter2")
    ev = kp.audit.wait_for(is_("create", "secrets", "s1"))
    assert ev["level"] == "Request"
    assert ev["requestObject"]["kind"] == "Secret"
    assert ev["requestObject"]["data"] == {"password": base64.b64encode(b"hunter2").decode()}
    assert "responseObject" not in ev
    kubectl(kp.kubeconfig, "delete", "secret", "s1", "-n", "default")
    ev = kp.audit.wait_for(is_("delete", "secrets", "s1"))
    assert ev["requestObject"]["kind"] == "DeleteOptions" and ev["responseStatus"]["code"] == 200


def test_a_chunked_body_is_logged_too(kp) -> None:
    """A request body without Content-Length (chunked) used to stay out of the log."""
    import http.client

    pki = kp.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", kp.port, context=ctx, timeout=10)
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chunked"}, "stringData": {"k": "v"}}
    conn.request("POST", "/api/v1/namespaces/default/secrets", body=iter([json.dumps(body).encode()]),
                 headers={"Content-Type": "application/json"}, encode_chunked=True)
    assert conn.getresponse().status == 201
    conn.close()
    ev = kp.audit.wait_for(is_("create", "secrets", "chunked"))
    assert ev["requestObject"]["metadata"]["name"] == "chunked"


def test_request_response_level_logs_the_response(kp) -> None:
    kubectl(kp.kubeconfig, "create", "configmap", "full", "-n", "default", "--from-literal=a=b")
    kubectl(kp.kubeconfig, "get", "configmap", "full", "-n", "default", "-o", "json")
    ev = kp.audit.wait_for(is_("get", "configmaps", "full"))
    assert ev["level"] == "RequestResponse"
    assert ev["responseObject"]["kind"] == "ConfigMap" and ev["responseObject"]["data"] == {"a": "b"}


def test_forbidden_request_is_audited_with_the_decision(kp) -> None:
    alice = user_kubeconfig(kp, "alice", ("devs",))
    r = kubectl(alice, "get", "configmaps", "-n", "default", check=False)
    assert r.returncode != 0 and "Forbidden" in r.stderr
    ev = kp.audit.wait_for(is_("list", "configmaps", user="alice"))
    assert ev["user"]["groups"] == ["devs", "system:authenticated"]
    assert ev["responseStatus"]["code"] == 403 and ev["responseStatus"]["reason"] == "Forbidden"
    assert ev["responseStatus"]["status"] == "Failure"
    assert 'User "alice" cannot list resource "configmaps"' in ev["responseStatus"]["message"]
    assert ev["annotations"]["authorization.k8s.io/decision"] == "forbid"
    assert "authorization.k8s.io/reason" in ev["annotations"]


def test_level_none_for_a_user_records_nothing(kp) -> None:
    quiet = user_kubeconfig(kp, "quiet")
    kubectl(quiet, "get", "configmaps", "-n", "default", check=False)
    kubectl(kp.kubeconfig, "get", "configmaps", "-n", "kube-system")  # a marker written after quiet's request
    kp.audit.wait_for(lambda e: (e.get("objectRef") or {}).get("namespace") == "kube-system"
                      and e["verb"] == "list")
    assert not [e for e in kp.audit.events() if e["user"].get("username") == "quiet"]


def test_impersonated_request_names_both_users(kp) -> None:
    r = kubectl(kp.kubeconfig, "get", "configmap", "cm1", "-n", "default", "--as=someone", "--as-group=testers",
                check=False)
    assert "Forbidden" in r.stderr  # someone holds no grant
    ev = kp.audit.wait_for(is_("get", "configmaps", "cm1"))
    assert ev["user"]["username"] == "kplane-admin"
    assert ev["impersonatedUser"] == {"username": "someone", "groups": ["testers", "system:authenticated"]}
    assert ev["responseStatus"]["code"] == 403
    assert 'User "someone" cannot get resource "configmaps"' in ev["responseStatus"]["message"]


def test_failed_authentication_is_audited(kp) -> None:
    r = subprocess.run(["kubectl", "--kubeconfig", "/dev/null", "--server", kp.url, "--token", "not-a-token",
                        "--certificate-authority", str(kp.data_dir / "pki" / "ca.crt"), "get", "configmaps",
                        "-n", "authn-check"], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode != 0 and "Unauthorized" in r.stderr
    ev = kp.audit.wait_for(lambda e: (e.get("objectRef") or {}).get("namespace") == "authn-check")
    assert ev["stage"] == "ResponseStarted" and ev["user"] == {}
    assert ev["responseStatus"] == {"metadata": {}, "message": "Authentication failed, attempted: bearer",
                                    "code": 401}


def test_every_response_carries_the_audit_id(kp) -> None:
    pki = kp.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    with urllib.request.urlopen(f"{kp.url}/api/v1/namespaces/default/configmaps/cm1", context=ctx,
                                timeout=10) as resp:
        audit_id = resp.headers["Audit-Id"]
    assert audit_id and len(audit_id) == 36
    ev = kp.audit.wait_for(lambda e: e["auditID"] == audit_id)
    assert ev["verb"] == "get" and ev["responseStatus"]["code"] == 200
    # A client's own Audit-ID is kept; unaudited paths (level None) still answer with one.
    req = urllib.request.Request(f"{kp.url}/version", headers={"Audit-ID": "client-chosen-id"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        assert resp.headers["Audit-Id"] == "client-chosen-id"
    kp.audit.wait_for(lambda e: e["auditID"] == "client-chosen-id" and e["requestURI"] == "/version")
    with urllib.request.urlopen(f"{kp.url}/healthz", context=ctx, timeout=10) as resp:
        healthz_id = resp.headers["Audit-Id"]
    assert healthz_id and not [e for e in kp.audit.events() if e["auditID"] == healthz_id]


def test_watch_has_response_started_and_complete(kp) -> None:
    """Long-running requests get ResponseStarted when the headers go out, ResponseComplete at the end."""
    r = kubectl(kp.kubeconfig, "get", "--raw", "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1")
    assert '"cm1"' in r.stdout
    ev = kp.audit.wait_for(lambda e: e["verb"] == "watch" and e["stage"] == "ResponseComplete")
    stages = [e["stage"] for e in kp.audit.events() if e["auditID"] == ev["auditID"]]
    assert stages == ["ResponseStarted", "ResponseComplete"]
    assert ev["responseStatus"] == {"metadata": {}, "code": 200}
    assert ev["objectRef"] == {"resource": "configmaps", "namespace": "default", "apiVersion": "v1"}
