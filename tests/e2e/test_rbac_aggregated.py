"""Issue 4 "through the aggregator": RBAC, impersonation and forged identity headers with wardle
registered behind kplane. kplane authorizes first; the request reaches wardle under kplane's
front-proxy certificate with the authenticated (or impersonated) identity, and wardle authorizes
again with a SubjectAccessReview against kplane.

What wardle saw is read from two places: wardle's own log (its admission plugin logs the user of
every write) and kplane's audit log, which records wardle's SubjectAccessReviews (request and
response bodies) and the proxied requests themselves."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from kplane.controlplane.pki import issue_client_cert, write_kubeconfig
from kplane.testing import ExtensionProcess, KplaneProcess

GROUP = "wardle.example.com"
GV = f"{GROUP}/v1alpha1"
NS = "default"

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: RequestResponse
  resources:
  - group: authorization.k8s.io
    resources: ["subjectaccessreviews"]
- level: Request
  resources:
  - group: wardle.example.com
- level: None
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rbac-aggr")
    (tmp / "policy.yaml").write_text(POLICY)
    with KplaneProcess(extra_args=["--audit-policy-file", str(tmp / "policy.yaml"),
                                   "--audit-log-path", str(tmp / "audit.log")]) as kp:
        kp.tmp = tmp
        wardle = ExtensionProcess(kp, "examples.wardle", args=["-v", "1"],
                                  apiservices=[f"v1alpha1.{GROUP}"]).start(timeout=60)
        try:
            kp.wardle = wardle
            yield kp
        finally:
            wardle.cleanup()


def kubectl(kubeconfig: str, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], capture_output=True, text=True, timeout=30,
                       input=input, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {r.stderr}")
    return r


def user(kp, name: str, groups: tuple[str, ...] = ()) -> str:
    """A kubeconfig for a client certificate signed by kplane's CA (CN name, O groups)."""
    pki = kp.data_dir / "pki"
    cert, key = issue_client_cert(pki / "ca.crt", pki / "ca.key", name, groups)
    (kp.tmp / f"{name}.crt").write_bytes(cert)
    (kp.tmp / f"{name}.key").write_bytes(key)
    path = kp.tmp / f"{name}.kubeconfig"
    write_kubeconfig(path, kp.url, (pki / "ca.crt").read_bytes(), cert, key, user=name)
    return str(path)


def grant(kp, role: str, verbs: str, resource: str, subject: str) -> None:
    kubectl(kp.kubeconfig, "create", "clusterrole", role, f"--verb={verbs}", f"--resource={resource}")
    kubectl(kp.kubeconfig, "create", "clusterrolebinding", role, f"--clusterrole={role}", f"--user={subject}")


def flunder(name: str) -> str:
    return json.dumps({"apiVersion": GV, "kind": "Flunder", "metadata": {"name": name, "namespace": NS},
                       "spec": {"reference": "x"}})


def retry(fn: Callable[[], subprocess.CompletedProcess], ok: Callable[[subprocess.CompletedProcess], bool],
          timeout: float = 5.0) -> subprocess.CompletedProcess:
    """Bindings reach kplane's authorizer through its watch cache: retry briefly."""
    deadline = time.monotonic() + timeout
    while True:
        r = fn()
        if ok(r) or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def audit_events(kp) -> list[dict]:
    path = Path(kp.tmp / "audit.log")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_audit(kp, predicate: Callable[[dict], bool], timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        hits = [e for e in audit_events(kp) if predicate(e)]
        if hits or time.monotonic() > deadline:
            return hits
        time.sleep(0.05)


def wardle_sar(name: str, verb: str) -> Callable[[dict], bool]:
    """wardle's SubjectAccessReview (sent to kplane) asking whether `name` may `verb` flunders."""
    def match(e: dict) -> bool:
        if (e.get("objectRef") or {}).get("resource") != "subjectaccessreviews" or e["stage"] != "ResponseComplete":
            return False
        spec = (e.get("requestObject") or {}).get("spec") or {}
        attrs = spec.get("resourceAttributes") or {}
        return (spec.get("user") == name and attrs.get("resource") == "flunders" and attrs.get("verb") == verb
                and attrs.get("group") == GROUP)
    return match


def proxied(name: str, verb: str) -> Callable[[dict], bool]:
    def match(e: dict) -> bool:
        ref = e.get("objectRef") or {}
        return (ref.get("apiGroup") == GROUP and ref.get("resource") == "flunders" and e["verb"] == verb
                and e["user"].get("username") == name and e["stage"] == "ResponseComplete")
    return match


def test_user_without_grants_is_refused_by_kplane(env) -> None:
    nobody = user(env, "nobody", ("nogroup",))
    r = kubectl(nobody, "get", "flunders", "-n", NS, check=False)
    assert r.returncode != 0
    assert ('flunders.wardle.example.com is forbidden: User "nobody" cannot list resource "flunders" in API group '
            '"wardle.example.com" in the namespace "default"') in r.stderr
    r = kubectl(nobody, "create", "-f", "-", input=flunder("nobody-flunder"), check=False)
    assert 'User "nobody" cannot create resource "flunders"' in r.stderr
    # kplane answered (its own Status, with the message) and never asked wardle.
    (ev,) = wait_audit(env, proxied("nobody", "list"))
    assert ev["responseStatus"]["code"] == 403 and ev["responseStatus"]["reason"] == "Forbidden"
    assert ev["annotations"]["authorization.k8s.io/decision"] == "forbid"
    assert not [e for e in audit_events(env) if wardle_sar("nobody", "list")(e)]
    assert "name=nobody-flunder" not in env.wardle.log()


def test_granted_user_passes_kplane_and_wardles_review(env) -> None:
    reader = user(env, "reader")
    kubectl(env.kubeconfig, "create", "-f", "-", input=flunder("for-reader"))
    grant(env, "flunder-reader", "get,list", f"flunders.{GROUP}", "reader")
    r = retry(lambda: kubectl(reader, "get", "flunders", "-n", NS, "-o", "name", check=False),
              lambda r: r.returncode == 0)
    assert r.returncode == 0, r.stderr
    assert "flunder.wardle.example.com/for-reader" in r.stdout.split()
    r = kubectl(reader, "get", "flunder", "for-reader", "-n", NS, "-o", "jsonpath={.metadata.name}")
    assert r.stdout == "for-reader"

    # wardle asked kplane about reader (not about kplane's front-proxy identity) and was allowed.
    (sar,) = wait_audit(env, wardle_sar("reader", "list"))[-1:]
    assert sar["user"]["username"] != "reader"  # wardle's own credentials send the review
    assert sar["responseObject"]["status"]["allowed"] is True
    assert sar["requestObject"]["spec"]["resourceAttributes"]["namespace"] == NS
    assert wait_audit(env, wardle_sar("reader", "get"))

    # The proxied request is in kplane's audit log too, with wardle's code and no body (as upstream).
    ev = wait_audit(env, proxied("reader", "list"))[-1]
    assert ev["responseStatus"] == {"metadata": {}, "code": 200}
    assert ev["objectRef"] == {"resource": "flunders", "namespace": NS, "apiGroup": GROUP, "apiVersion": "v1alpha1"}
    assert ev["annotations"]["authorization.k8s.io/decision"] == "allow"
    assert "responseObject" not in ev and "requestObject" not in ev

    # get/list only: writing is refused by kplane.
    r = kubectl(reader, "delete", "flunder", "for-reader", "-n", NS, check=False)
    assert 'User "reader" cannot delete resource "flunders"' in r.stderr


def test_impersonation_reaches_wardle_as_the_impersonated_user(env) -> None:
    boss = user(env, "boss")
    grant(env, "flunder-writer", "get,list,create", f"flunders.{GROUP}", "someone")
    r = kubectl(boss, "create", "--validate=false", "-f", "-", "--as=someone", input=flunder("as-someone"), check=False)
    assert 'users "someone" is forbidden: User "boss" cannot impersonate resource "users"' in r.stderr
    grant(env, "impersonate-someone", "impersonate", "users", "boss")
    create = ("create", "--validate=false", "-f", "-", "--as=someone")
    r = retry(lambda: kubectl(boss, *create, input=flunder("as-someone"), check=False), lambda r: r.returncode == 0)
    assert r.returncode == 0, r.stderr
    assert "flunder.wardle.example.com/as-someone created" in r.stdout

    # wardle's admission saw someone (and the groups kplane computed), not boss.
    lines = [ln for ln in env.wardle.log().splitlines() if "name=as-someone" in ln]
    assert lines and "user=someone groups=system:authenticated" in lines[-1], env.wardle.log()[-2000:]
    assert "boss" not in lines[-1]
    # wardle's SubjectAccessReview asked about someone.
    (sar,) = wait_audit(env, wardle_sar("someone", "create"))[-1:]
    assert sar["requestObject"]["spec"]["groups"] == ["system:authenticated"]
    assert sar["responseObject"]["status"]["allowed"] is True
    # kplane's audit names both: the requester and who it acted as.
    # (The retried attempts the grant's propagation refused are events too: wait for the one that passed.)
    ev = wait_audit(env, lambda e: proxied("boss", "create")(e)
                    and (e.get("responseStatus") or {}).get("code") == 201)[-1]
    assert ev["impersonatedUser"] == {"username": "someone", "groups": ["system:authenticated"]}
    assert ev["responseStatus"]["code"] == 201

    # boss itself holds no flunder grant: without --as it is refused.
    r = kubectl(boss, "get", "flunders", "-n", NS, check=False)
    assert 'User "boss" cannot list resource "flunders"' in r.stderr


def test_forged_remote_user_headers_are_ignored(env) -> None:
    user(env, "forger")
    grant(env, "flunder-lister", "list", f"flunders.{GROUP}", "forger")
    pki = env.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(env.tmp / "forger.crt", env.tmp / "forger.key")
    forged = {"X-Remote-User": "kplane-admin", "X-Remote-Group": "system:masters",
              "X-Remote-Extra-Scopes": "everything"}

    def call(method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(f"{env.url}{path}", data=body, method=method,
                                     headers={**forged, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    path = f"/apis/{GV}/namespaces/{NS}/flunders"
    deadline = time.monotonic() + 5
    while (result := call("GET", path))[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert result[0] == 200 and result[1]["kind"] == "FlunderList"
    # wardle reviewed forger's request as forger: a system:masters caller would not have been reviewed.
    (sar,) = wait_audit(env, wardle_sar("forger", "list"))[-1:]
    assert "system:masters" not in sar["requestObject"]["spec"].get("groups", [])
    assert "extra" not in sar["requestObject"]["spec"]
    # And kplane authorized forger, not the forged admin: a create is refused.
    code, status = call("POST", path, flunder("forged").encode())
    assert code == 403 and 'User "forger" cannot create resource "flunders"' in status["message"]
    assert "name=forged" not in env.wardle.log()
