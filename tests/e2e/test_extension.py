"""examples/wardle against a real kplane, called directly over TLS (not yet through the
aggregator): identity headers are believed only with the front-proxy client certificate."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kplane.controlplane.pki import issue_client_cert
from kplane.testing import KplaneProcess, free_port

REPO = Path(__file__).resolve().parents[2]
BASE = "/apis/wardle.example.com/v1alpha1"


class Wardle:
    def __init__(self, kp: KplaneProcess):
        self.kp = kp
        self.port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix="wardle-"))
        self.pki = kp.data_dir / "pki"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / "wardle.log"
        self.extra_args: list[str] = []

    def start(self) -> None:
        cmd = [sys.executable, "-m", "examples.wardle", "--kubeconfig", self.kp.kubeconfig,
               "--secure-port", str(self.port), "--data-dir", str(self.data_dir), "-v", "2", *self.extra_args]
        if not self._auth_configmap_published():
            # Until kplane publishes extension-apiserver-authentication, the upstream flags do.
            cmd += ["--requestheader-client-ca-file", str(self.pki / "front-proxy-ca.crt"),
                    "--requestheader-allowed-names", "front-proxy-client",
                    "--client-ca-file", str(self.pki / "ca.crt")]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wardle exited {self.proc.returncode}:\n{self.log()}")
            try:
                if self.call("GET", "/healthz", cert=None)[0] == 200:
                    return
            except (OSError, ssl.SSLError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"wardle did not start:\n{self.log()}")

    def _auth_configmap_published(self) -> bool:
        proc = subprocess.run(["kubectl", "--kubeconfig", self.kp.kubeconfig, "get", "configmap", "-n",
                               "kube-system", "extension-apiserver-authentication"], capture_output=True, check=False)
        return proc.returncode == 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def ssl_context(self, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
        # Verify the serving cert the way the aggregator will: caBundle + the Service's DNS name.
        ctx = ssl.create_default_context(cafile=str(self.data_dir / "pki" / "ca.crt"))
        if cert is not None:
            ctx.load_cert_chain(cert[0], cert[1])
        return ctx

    def call(self, method: str, path: str, body: Any = None, *, cert: tuple[Path, Path] | None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        ctx = self.ssl_context(cert)
        ctx.check_hostname = False  # the URL is an IP; the SAN check is done in test_serving_cert
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture(scope="module")
def kp() -> Iterator[KplaneProcess]:
    proc = KplaneProcess().start()
    try:
        yield proc
    finally:
        proc.cleanup()


@pytest.fixture(scope="module")
def wardle(kp: KplaneProcess) -> Iterator[Wardle]:
    w = Wardle(kp)
    w.extra_args = ["--bind-address", "127.0.0.1"]
    w.start()
    try:
        yield w
    finally:
        w.stop()


def _proxy(w: Wardle) -> tuple[Path, Path]:
    return w.pki / "front-proxy-client.crt", w.pki / "front-proxy-client.key"


ADMIN = {"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"}


def test_health_is_public(wardle: Wardle) -> None:
    assert wardle.call("GET", "/healthz", cert=None) == (200, "ok")


def test_forged_identity_without_front_proxy_cert_is_401(wardle: Wardle) -> None:
    status, body = wardle.call("GET", f"{BASE}/namespaces/default/flunders", cert=None, headers=ADMIN)
    assert status == 401, body
    assert body["reason"] == "Unauthorized"


def test_front_proxy_ca_cert_with_other_cn_is_401(wardle: Wardle, tmp_path: Path) -> None:
    cert, key = issue_client_cert(wardle.pki / "front-proxy-ca.crt", wardle.pki / "front-proxy-ca.key", "intruder")
    (tmp_path / "i.crt").write_bytes(cert)
    (tmp_path / "i.key").write_bytes(key)
    status, _ = wardle.call("GET", f"{BASE}/namespaces/default/flunders", cert=(tmp_path / "i.crt",
                                                                                  tmp_path / "i.key"), headers=ADMIN)
    assert status == 401


def test_flunder_crud_with_front_proxy_identity(wardle: Wardle) -> None:
    proxy = _proxy(wardle)
    status, fischer = wardle.call("POST", f"{BASE}/fischers", {
        "apiVersion": "wardle.example.com/v1alpha1", "kind": "Fischer", "metadata": {"name": "f1"},
        "disallowedFlunders": ["banned-flunder"]}, cert=proxy, headers=ADMIN)
    assert status == 201, fischer
    flunder = {"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder",
               "metadata": {"name": "my-first-flunder"}, "spec": {"reference": "f1"}}
    status, created = wardle.call("POST", f"{BASE}/namespaces/default/flunders", flunder, cert=proxy,
                                  headers=ADMIN)
    assert status == 201, created
    assert created["spec"] == {"reference": "f1", "referenceType": "Flunder"}
    assert created["metadata"]["namespace"] == "default"

    status, got = wardle.call("GET", f"{BASE}/namespaces/default/flunders/my-first-flunder", cert=proxy,
                              headers=ADMIN)
    assert status == 200 and got["metadata"]["uid"] == created["metadata"]["uid"]

    got["spec"]["referenceType"] = "Fischer"
    status, updated = wardle.call("PUT", f"{BASE}/namespaces/default/flunders/my-first-flunder", got, cert=proxy,
                                  headers=ADMIN)
    assert status == 200 and updated["spec"]["referenceType"] == "Fischer"
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

    status, table = wardle.call("GET", f"{BASE}/namespaces/default/flunders", cert=proxy, headers={
        **ADMIN, "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert status == 200
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Reference", "Reference-Type", "Age"]
    assert table["rows"][0]["cells"][:3] == ["my-first-flunder", "f1", "Fischer"]

    status, banned = wardle.call("POST", f"{BASE}/namespaces/default/flunders", {
        "metadata": {"name": "banned-flunder"}}, cert=proxy, headers=ADMIN)
    assert status == 403
    assert banned["message"] == ('flunders.wardle.example.com "banned-flunder" is forbidden: this name may not be '
                                 'used, please change the resource name')

    status, invalid = wardle.call("POST", f"{BASE}/namespaces/default/flunders", {
        "metadata": {"name": "odd"}, "spec": {"referenceType": "Bogus", "reference": "x"}}, cert=proxy,
        headers=ADMIN)
    assert status == 422 and invalid["details"]["causes"][0]["field"] == "spec.referenceType"

    status, _ = wardle.call("DELETE", f"{BASE}/namespaces/default/flunders/my-first-flunder", cert=proxy,
                            headers=ADMIN)
    assert status == 200
    status, _ = wardle.call("GET", f"{BASE}/namespaces/default/flunders/my-first-flunder", cert=proxy,
                            headers=ADMIN)
    assert status == 404


def test_front_proxy_user_without_rights_is_forbidden(wardle: Wardle) -> None:
    status, body = wardle.call("GET", f"{BASE}/namespaces/default/flunders", cert=_proxy(wardle),
                               headers={"X-Remote-User": "bob", "X-Remote-Group": "devs"})
    assert status == 403, body
    assert 'User "bob" cannot list resource "flunders"' in body["message"]


def test_serving_cert_matches_the_service_name(wardle: Wardle) -> None:
    import socket

    ctx = wardle.ssl_context(None)
    with socket.create_connection(("127.0.0.1", wardle.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="api.wardle.svc") as tls:
        assert tls.version() is not None


def test_registered_service_and_endpoints(wardle: Wardle, kp: KplaneProcess) -> None:
    def kubectl(*args: str) -> Any:
        out = subprocess.run(["kubectl", "--kubeconfig", kp.kubeconfig, *args, "-o", "json"], capture_output=True,
                             text=True, check=True).stdout
        return json.loads(out)

    deadline = time.monotonic() + 10
    while True:
        try:
            svc = kubectl("get", "service", "-n", "wardle", "api")
            break
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise AssertionError(wardle.log()) from None
            time.sleep(0.2)
    assert svc["spec"]["ports"][0]["port"] == wardle.port
    assert not svc["spec"].get("selector")
    ep = kubectl("get", "endpoints", "-n", "wardle", "api")
    assert ep["subsets"][0]["addresses"][0]["ip"] == "127.0.0.1"
    assert ep["subsets"][0]["ports"][0]["port"] == wardle.port


def test_sigterm_exits_cleanly(kp: KplaneProcess) -> None:
    w = Wardle(kp)
    w.start()
    assert w.stop() == 0, w.log()


# ---- through kplane's aggregator --------------------------------------------------------


@pytest.fixture(scope="module")
def routed(kp: KplaneProcess) -> Iterator[Wardle]:
    w = Wardle(kp)  # defaults: bind 127.0.0.1 and register that address in Endpoints
    w.start()
    try:
        yield w
    finally:
        w.stop()


def _kubectl(kp: KplaneProcess, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--kubeconfig", kp.kubeconfig, *args], capture_output=True, text=True,
                          input=input, timeout=60, check=False)


def test_through_kplane_with_kubectl(routed: Wardle, kp: KplaneProcess) -> None:
    r = _kubectl(kp, "wait", "--for=condition=Available", "apiservice/v1alpha1.wardle.example.com",
                 "--timeout=30s")
    assert r.returncode == 0, r.stderr + routed.log()
    r = _kubectl(kp, "api-resources", "--api-group=wardle.example.com", "--no-headers")
    assert sorted(line.split()[0] for line in r.stdout.splitlines()) == ["fischers", "flunders"]
    assert _kubectl(kp, "apply", "-f", str(REPO / "examples/wardle/fischer.yaml")).returncode == 0
    r = _kubectl(kp, "apply", "-f", str(REPO / "examples/wardle/flunder.yaml"))
    assert r.returncode == 0, r.stderr
    r = _kubectl(kp, "get", "flunders", "-n", "default")
    assert r.stdout.split("\n")[0].split() == ["NAME", "REFERENCE", "REFERENCE-TYPE", "AGE"]
    assert r.stdout.split("\n")[1].split()[:3] == ["my-first-flunder", "my-first-fischer", "Fischer"]
    r = _kubectl(kp, "create", "-f", "-", input="apiVersion: wardle.example.com/v1alpha1\nkind: Flunder\n"
                 "metadata: {name: banned-flunder, namespace: default}\n")
    assert r.returncode != 0
    assert ('flunders.wardle.example.com "banned-flunder" is forbidden: this name may not be used, please '
            'change the resource name') in r.stderr
    r = _kubectl(kp, "explain", "flunder.spec")
    assert "referenceType" in r.stdout


def test_sigterm_leaves_the_apiservice_in_place(kp: KplaneProcess) -> None:
    w = Wardle(kp)
    w.start()
    assert w.stop() == 0
    r = _kubectl(kp, "get", "apiservice", "v1alpha1.wardle.example.com", "-o", "jsonpath={.spec.group}")
    assert r.stdout == "wardle.example.com"
