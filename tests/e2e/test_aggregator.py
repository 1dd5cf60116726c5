"""The aggregation layer end to end: a real kplane, the real kubectl, a TLS extension backend."""

from __future__ import annotations

import json
import time
from pathlib import Path

from kplane.testing import KplaneProcess, Kubectl
from tests.e2e.tls_backend import TLSBackend, condition, condition_with, register, wait_until


def test_validation_is_422(kubectl: Kubectl) -> None:
    bad = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
           "metadata": {"name": "v1.wrong.io"},
           "spec": {"group": "other.io", "version": "v1", "groupPriorityMinimum": 0, "versionPriority": 15,
                    "service": {"namespace": "x", "name": "y"}}}
    r = kubectl.run("create", "-f", "-", input=json.dumps(bad), check=False)
    assert r.returncode != 0
    assert 'The APIService "v1.wrong.io" is invalid' in r.stderr
    assert "spec.groupPriorityMinimum: Invalid value: 0: must be positive and less than 20000" in r.stderr
    # Values of the wrong JSON type are a decoding error, as for upstream's Go struct.
    for field, value, go_type in (("insecureSkipTLSVerify", "false", "bool"), ("caBundle", 12345, "[]uint8"),
                                  ("groupPriorityMinimum", "100", "int32")):
        typed = {**bad, "metadata": {"name": "v1.other.io"}, "spec": {**bad["spec"], "groupPriorityMinimum": 100,
                                                                      field: value}}
        r = kubectl.run("create", "--validate=false", "-f", "-", input=json.dumps(typed), check=False)
        assert "BadRequest" in r.stderr and f"into Go struct field APIService.spec.{field} of type {go_type}" \
            in r.stderr, r.stderr


def test_a_created_apiservice_starts_with_its_controllers_status(kubectl: Kubectl) -> None:
    forged = {"conditions": [{"type": "Available", "status": "False", "reason": "Forged", "message": "x",
                              "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    local = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1.local.example"},
             "spec": {"group": "local.example", "version": "v1", "groupPriorityMinimum": 100, "versionPriority": 10},
             "status": forged}
    created = json.loads(kubectl.run("create", "-o", "json", "-f", "-", input=json.dumps(local)).stdout)
    [available] = created["status"]["conditions"]
    assert (available["type"], available["status"], available["reason"], available["message"]) == \
        ("Available", "True", "Local", "Local APIServices are always available")
    assert available["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    remote = {**local, "metadata": {"name": "v1.remote.example"},
              "spec": {**local["spec"], "group": "remote.example", "service": {"namespace": "x", "name": "y"}}}
    created = json.loads(kubectl.run("create", "-o", "json", "-f", "-", input=json.dumps(remote)).stdout)
    assert "Forged" not in json.dumps(created.get("status", {}))
    kubectl.run("delete", "apiservice", "v1.local.example", "v1.remote.example")


def test_builtin_apiservices_are_local_and_available(kubectl: Kubectl) -> None:
    out = kubectl.run("get", "apiservices").stdout.splitlines()
    assert out[0].split() == ["NAME", "SERVICE", "AVAILABLE", "AGE"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows["v1."][1:3] == ["Local", "True"]


def test_register_proxy_unavailable_and_back(kp: KplaneProcess, kubectl: Kubectl, tmp_path: Path) -> None:
    backend = TLSBackend(kp, tmp_path)
    backend.start()
    try:
        register(kubectl, backend)
        kubectl.run("wait", "--for=condition=Available", "apiservice/v1alpha1.wardle.example.com",
                    "--timeout=30s")
        assert condition(kubectl)["reason"] == "Passed"
        row = kubectl.run("get", "apiservice", "v1alpha1.wardle.example.com").stdout.splitlines()[1].split()
        assert row[1:3] == ["wardle/api", "True"]
        r = kubectl.run("get", "flunders", "-n", "default", "-o", "json")
        caller = json.loads(r.stdout)["items"][0]["metadata"]["annotations"]["caller"]
        assert "kplane-admin" in caller and "system:masters" in caller
        res = kubectl.run("api-resources", "--api-group=wardle.example.com").stdout
        assert "flunders" in res
        groups = [g["name"] for g in json.loads(kubectl.run("get", "--raw", "/apis").stdout)["groups"]]
        assert groups[0] == "apiregistration.k8s.io" and "wardle.example.com" in groups

        backend.stop()
        c = wait_until(lambda: condition_with(kubectl, "False"), 40)
        assert c["reason"] == "FailedDiscoveryCheck", c
        assert "connection refused" in c["message"]
        r = kubectl.run("get", "flunders", "-n", "default", check=False)
        assert r.returncode != 0 and "ServiceUnavailable" in r.stderr
        assert kubectl.run("get", "configmaps", "-n", "kube-system").returncode == 0
        metrics = kubectl.run("get", "--raw", "/metrics").stdout
        assert 'aggregator_unavailable_apiservice{name="v1alpha1.wardle.example.com"} 1' in metrics

        backend.start()
        c = wait_until(lambda: condition_with(kubectl, "True"), 40)
        assert c["reason"] == "Passed"
        assert kubectl.run("get", "flunders", "-n", "default").returncode == 0
        # A version the backend does not serve: its discovery check gets a 404.
        register(kubectl, backend, "v1beta1")

        def beta_failed() -> dict | None:
            got = condition(kubectl, "v1beta1.wardle.example.com")
            return got if got and got["status"] == "False" and "bad status" in got["message"] else None
        c = wait_until(beta_failed, 40)
        url = f"https://127.0.0.1:{backend.port}/apis/wardle.example.com/v1beta1"
        assert c["reason"] == "FailedDiscoveryCheck"
        assert c["message"] == f"failing or missing response from {url}: bad status from {url}: 404"
        kubectl.run("delete", "apiservice", "v1beta1.wardle.example.com")
        metrics = kubectl.run("get", "--raw", "/metrics").stdout
        assert 'kplane_aggregator_proxy_requests_total{apiservice="v1alpha1.wardle.example.com"' in metrics
    finally:
        backend.stop()
        kubectl.run("delete", "apiservice", "v1alpha1.wardle.example.com", check=False)


def test_hanging_backend_discovery_returns_in_about_5s_stale(kp: KplaneProcess, kubectl: Kubectl,
                                                            tmp_path: Path) -> None:
    backend = TLSBackend(kp, tmp_path, hang=True)
    backend.start()
    try:
        register(kubectl, backend, "v1beta1")
        time.sleep(1)
        t0 = time.monotonic()
        r = kubectl.run("get", "--raw", "/apis", "-v=0", check=False)
        assert r.returncode == 0  # legacy discovery never calls the backend
        out = aggregated(kp)  # kubectl get --raw cannot set Accept: ask for aggregated discovery directly
        elapsed = time.monotonic() - t0
        assert elapsed < 12
        wardle = [g for g in out["items"] if g["metadata"].get("name") == "wardle.example.com"]
        if wardle:
            v = [v for v in wardle[0]["versions"] if v["version"] == "v1beta1"]
            assert not v or v[0]["freshness"] == "Stale"
        assert any(g["metadata"].get("name") == "apiregistration.k8s.io" for g in out["items"])
    finally:
        backend.stop()
        kubectl.run("delete", "apiservice", "v1beta1.wardle.example.com", check=False)


def aggregated(kp: KplaneProcess, version: str = "v2") -> dict:
    return aggregated_response(kp, version)[1]


def aggregated_response(kp: KplaneProcess, version: str = "v2") -> tuple[str, dict]:
    import ssl
    import urllib.request

    import yaml

    cfg = yaml.safe_load(Path(kp.kubeconfig).read_text())
    d = Path(kp.data_dir)
    ctx = ssl.create_default_context(cafile=str(d / "pki" / "ca.crt"))
    ctx.load_cert_chain(str(d / "pki" / "admin.crt"), str(d / "pki" / "admin.key"))
    req = urllib.request.Request(cfg["clusters"][0]["cluster"]["server"] + "/apis", headers={
        "Accept": f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        return resp.headers["Content-Type"], json.loads(resp.read())


def test_aggregated_discovery_v2beta1_is_still_served(kp: KplaneProcess) -> None:
    # kubectl before 1.30 asks for v2beta1 first; kube-apiserver 1.32 still answers it.
    content_type, doc = aggregated_response(kp, "v2beta1")
    assert content_type == "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    assert doc["apiVersion"] == "apidiscovery.k8s.io/v2beta1" and doc["kind"] == "APIGroupDiscoveryList"
    assert doc["items"] == aggregated(kp)["items"]
