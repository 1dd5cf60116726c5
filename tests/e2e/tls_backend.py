"""A TLS extension backend for the aggregator's end-to-end tests (aggregator_backend.py in a
process of its own, serving wardle.example.com with a certificate from its own CA) and the
objects that register it with kplane."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kplane.extension.certs import ensure_serving_certs
from kplane.testing import KplaneProcess, Kubectl, free_port

HERE = Path(__file__).parent
GROUP = "wardle.example.com"
T = TypeVar("T")


class TLSBackend:
    """`hang=True`: accepts connections and never answers (for the discovery timeout)."""

    def __init__(self, kp: KplaneProcess, tmp: Path, hang: bool = False):
        self.port = free_port()
        certs = ensure_serving_certs(tmp, ["api.wardle.svc"], ca_cn="wardle-ca")
        self.args = [sys.executable, str(HERE / "aggregator_backend.py"), str(self.port),
                     str(certs.cert_file), str(certs.key_file),
                     str(kp.data_dir / "pki" / "front-proxy-ca.crt"),
                     *(["--hang"] if hang else [])]
        self.ca_bundle = base64.b64encode(certs.ca_bundle).decode()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> TLSBackend:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(0.8)
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def registration(self, version: str = "v1alpha1") -> list[dict[str, Any]]:
        """Namespace wardle, Service and Endpoints wardle/api (127.0.0.1 on this backend's port)
        and the APIService <version>.wardle.example.com with this backend's CA."""
        return [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "wardle"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "wardle"},
             "spec": {"ports": [{"name": "https", "port": 443, "targetPort": self.port}]}},
            {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "api", "namespace": "wardle"},
             "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": self.port}]}]},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
             "metadata": {"name": f"{version}.{GROUP}"},
             "spec": {"group": GROUP, "version": version, "groupPriorityMinimum": 1000, "versionPriority": 15,
                      "caBundle": self.ca_bundle, "service": {"namespace": "wardle", "name": "api", "port": 443}}},
        ]


def wait_until(fn: Callable[[], T], timeout: float = 20.0) -> T:
    """fn()'s first truthy value, or its last value once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def register(kubectl: Kubectl, backend: TLSBackend, version: str = "v1alpha1") -> None:
    for doc in backend.registration(version):
        kubectl("apply", "-f", "-", input=json.dumps(doc))


def condition(kubectl: Kubectl, name: str = f"v1alpha1.{GROUP}") -> dict | None:
    """The APIService's Available condition."""
    obj = kubectl.json("get", "apiservice", name)
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == "Available":
            return c
    return None


def condition_with(kubectl: Kubectl, status: str) -> dict | None:
    c = condition(kubectl)
    return c if c and c["status"] == status else None
