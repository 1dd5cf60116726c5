"""`kplane register` for an extension server not written with the SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kplane.apiserver.certs import issue_serving_cert, self_signed_ca
from kplane.testing import free_port

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def backend(kp, tmp_path_factory):
    d = tmp_path_factory.mktemp("backend")
    ca, ca_key = self_signed_ca("backend-ca")
    (d / "ca.crt").write_bytes(ca)
    (d / "ca.key").write_bytes(ca_key)
    cert, key = issue_serving_cert(d / "ca.crt", d / "ca.key", ["api.wardle.svc", "127.0.0.1"])
    (d / "tls.crt").write_bytes(cert)
    (d / "tls.key").write_bytes(key)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "aggregator_backend.py"), str(port), str(d / "tls.crt"),
                             str(d / "tls.key"), str(kp.data_dir / "pki" / "front-proxy-ca.crt")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield port, d / "ca.crt"
    proc.terminate()
    proc.wait(10)


def test_register_cli_makes_the_backend_reachable_through_kplane(kp, kubectl, backend):
    port, ca_file = backend
    # No --kubeconfig: $KUBECONFIG names the cluster, as for kubectl.
    out = subprocess.run([sys.executable, "-m", "kplane", "register",
                          "--group", "wardle.example.com", "--version", "v1alpha1",
                          "--url", f"https://127.0.0.1:{port}", "--ca-file", str(ca_file)],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "KUBECONFIG": kp.kubeconfig})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "apiservice/v1alpha1.wardle.example.com registered" in out.stdout
    apiservice = json.loads(kubectl("get", "apiservice", "v1alpha1.wardle.example.com", "-o", "json"))
    assert apiservice["spec"]["service"] == {"namespace": "wardle", "name": "api", "port": port}
    assert apiservice["spec"]["caBundle"]
    endpoints = json.loads(kubectl("-n", "wardle", "get", "endpoints", "api", "-o", "json"))
    assert endpoints["subsets"][0]["addresses"][0]["ip"] == "127.0.0.1"
    kubectl("wait", "--for=condition=Available", "apiservice/v1alpha1.wardle.example.com", "--timeout=30s")
    listed = json.loads(kubectl("get", "flunders", "-o", "json"))
    assert "kplane-admin" in listed["items"][0]["metadata"]["annotations"]["caller"]


def test_register_cli_refuses_bad_arguments(kp):
    for args in (["--url", "http://127.0.0.1:1", "--insecure-skip-tls-verify"],
                 ["--url", "https://127.0.0.1:1"]):
        out = subprocess.run([sys.executable, "-m", "kplane", "register", "--kubeconfig", kp.kubeconfig,
                              "--group", "g.example.com", "--version", "v1", *args],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0

