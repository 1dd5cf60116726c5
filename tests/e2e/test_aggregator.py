"""The aggregation layer end to end: a real kplane, the real kubectl, a TLS extension backend."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kplane.controlplane.pki import issue_serving_cert, self_signed_ca
from kplane.testing import KplaneProcess, free_port

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def kp():
    with KplaneProcess() as p:
        yield p


def kubectl(kp, *args, input=None, check=True):
    r = subprocess.run(["kubectl", "--kubeconfig", kp.kubeconfig, *args], input=input, capture_output=True,
                       text=True, timeout=60, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {r.stderr}")
    return r


class Backend:
    def __init__(self, kp, tmp: Path, hang: bool = False):
        self.port = free_port()
        ca, ca_key = self_signed_ca("wardle-ca")
        (tmp / "ca.crt").write_bytes(ca)
        (tmp / "ca.key").write_bytes(ca_key)
        cert, key = issue_serving_cert(tmp / "ca.crt", tmp / "ca.key", ["api.wardle.svc"])
        (tmp / "tls.crt").write_bytes(cert)
        (tmp / "tls.key").write_bytes(key)
        self.args = [sys.executable, str(HERE / "aggregator_backend.py"), str(self.port),
                     str(tmp / "tls.crt"), str(tmp / "tls.key"),
                     str(kp.data_dir / "pki" / "front-proxy-ca.crt"),
                     *(["--hang"] if hang else [])]
        self.ca_bundle = base64.b64encode(ca).decode()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(0.8)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def register(kp, backend, name="v1alpha1.wardle.example.com", version="v1alpha1"):
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "wardle"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "wardle"},
         "spec": {"ports": [{"name": "https", "port": 443, "targetPort": backend.port}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "api", "namespace": "wardle"},
         "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": backend.port}]}]},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": name},
         "spec": {"group": "wardle.example.com", "version": version, "groupPriorityMinimum": 1000,
                  "versionPriority": 15, "caBundle": backend.ca_bundle,
                  "service": {"namespace": "wardle", "name": "api", "port": 443}}},
    ]
    for doc in docs:
        kubectl(kp, "apply", "-f", "-", input=json.dumps(doc))


def condition(kp, name="v1alpha1.wardle.example.com"):
    obj = json.loads(kubectl(kp, "get", "apiservice", name, "-o", "json").stdout)
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == "Available":
            return c
    return None


def condition_with(kp, status):
    c = condition(kp)
    return c if c and c["status"] == status else None


def wait_for(fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_validation_is_422(kp):
    bad = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
           "metadata": {"name": "v1.wrong.io"},
           "spec": {"group": "other.io", "version": "v1", "groupPriorityMinimum": 0, "versionPriority": 15,
                    "service": {"namespace": "x", "name": "y"}}}
    r = kubectl(kp, "create", "-f", "-", input=json.dumps(bad), check=False)
    assert r.returncode != 0
    assert 'The APIService "v1.wrong.io" is invalid' in r.stderr
    assert "spec.groupPriorityMinimum: Invalid value: 0: must be positive and less than 20000" in r.stderr


def test_builtin_apiservices_are_local_and_available(kp):
    out = kubectl(kp, "get", "apiservices").stdout.splitlines()
    assert out[0].split() == ["NAME", "SERVICE", "AVAILABLE", "AGE"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows["v1."][1:3] == ["Local", "True"]


def test_register_proxy_unavailable_and_back(kp, tmp_path):
    backend = Backend(kp, tmp_path)
    backend.start()
    try:
        register(kp, backend)
        kubectl(kp, "wait", "--for=condition=Available", "apiservice/v1alpha1.wardle.example.com",
                "--timeout=30s")
        assert condition(kp)["reason"] == "Passed"
        row = kubectl(kp, "get", "apiservice", "v1alpha1.wardle.example.com").stdout.splitlines()[1].split()
        assert row[1:3] == ["wardle/api", "True"]
        r = kubectl(kp, "get", "flunders", "-n", "default", "-o", "json")
        caller = json.loads(r.stdout)["items"][0]["metadata"]["annotations"]["caller"]
        assert "kplane-admin" in caller and "system:masters" in caller
        res = kubectl(kp, "api-resources", "--api-group=wardle.example.com").stdout
        assert "flunders" in res
        groups = [g["name"] for g in json.loads(kubectl(kp, "get", "--raw", "/apis").stdout)["groups"]]
        assert groups[0] == "apiregistration.k8s.io" and "wardle.example.com" in groups

        backend.stop()
        c = wait_for(lambda: condition_with(kp, "False"), 40)
        assert c["reason"] == "FailedDiscoveryCheck", c
        assert "connection refused" in c["message"]
        r = kubectl(kp, "get", "flunders", "-n", "default", check=False)
        assert r.returncode != 0 and "ServiceUnavailable" in r.stderr
        assert kubectl(kp, "get", "configmaps", "-n", "kube-system").returncode == 0
        metrics = kubectl(kp, "get", "--raw", "/metrics").stdout
        assert 'aggregator_unavailable_apiservice{name="v1alpha1.wardle.example.com"} 1' in metrics

        backend.start()
        c = wait_for(lambda: condition_with(kp, "True"), 40)
        assert c["reason"] == "Passed"
        assert kubectl(kp, "get", "flunders", "-n", "default").returncode == 0
        metrics = kubectl(kp, "get", "--raw", "/metrics").stdout
        assert 'kplane_aggregator_proxy_requests_total{apiservice="v1alpha1.wardle.example.com"' in metrics
    finally:
        backend.stop()
        kubectl(kp, "delete", "apiservice", "v1alpha1.wardle.example.com", check=False)


def test_hanging_backend_discovery_returns_in_about_5s_stale(kp, tmp_path):
    backend = Backend(kp, tmp_path, hang=True)
    backend.start()
    try:
        register(kp, backend, "v1beta1.wardle.example.com", "v1beta1")
        time.sleep(1)
        t0 = time.monotonic()
        r = kubectl(kp, "get", "--raw", "/apis", "-v=0", check=False)
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
        kubectl(kp, "delete", "apiservice", "v1beta1.wardle.example.com", check=False)


def aggregated(kp):
    import ssl
    import urllib.request

    import yaml

    cfg = yaml.safe_load(Path(kp.kubeconfig).read_text())
    d = Path(kp.data_dir)
    ctx = ssl.create_default_context(cafile=str(d / "pki" / "ca.crt"))
    ctx.load_cert_chain(str(d / "pki" / "admin.crt"), str(d / "pki" / "admin.key"))
    req = urllib.request.Request(cfg["clusters"][0]["cluster"]["server"] + "/apis", headers={
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        return json.loads(resp.read())
