"""The fast lane (kplane/apiserver/fastpath.py) on the wire: API requests (local and proxied to
a remote APIService) skip aiohttp, everything else goes through it, on the same keep-alive
connection, in order."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from kplane.testing import KplaneProcess, Kubectl
from tests.e2e.tls_backend import TLSBackend, condition_with, register, wait_until

FLUNDERS = "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders"


@pytest.fixture(scope="module")
def backend(kp: KplaneProcess, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSBackend]:
    b = TLSBackend(kp, tmp_path_factory.mktemp("backend")).start()
    try:
        register(kubectl, b)
        assert wait_until(lambda: condition_with(kubectl, "True"), 40)
        yield b
    finally:
        b.stop()


def _connect(kp, client_cert: bool = True) -> ssl.SSLSocket:
    pki = kp.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.check_hostname = False
    if client_cert:
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    sock = socket.create_connection(("127.0.0.1", kp.port), timeout=10)
    return ctx.wrap_socket(sock)


def _request(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Accept: application/json"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Reader:
    """Reads HTTP/1.1 responses with a Content-Length, one after the other, off one socket."""

    def __init__(self, sock: ssl.SSLSocket):
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), "connection closed before a response head"
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buf) < length:
            assert self._fill(), "connection closed inside a response body"
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed(self) -> bool:
        try:
            return not self._fill()
        except (ConnectionResetError, ssl.SSLError):
            return True


def _caller(body: bytes) -> str:
    return json.loads(body)["items"][0]["metadata"]["annotations"]["caller"]


def test_pipelined_requests_mix_both_lanes_in_order(kp, backend):
    with _connect(kp) as sock:
        sock.sendall(_request("GET", FLUNDERS) + _request("GET", "/version") + _request("GET", FLUNDERS + "?limit=5")
                     + _request("GET", "/api/v1/namespaces/default"))
        reader = _Reader(sock)
        s1, h1, b1 = reader.response()
        s2, _, b2 = reader.response()
        s3, _, b3 = reader.response()
        s4, _, b4 = reader.response()
    assert (s1, s2, s3, s4) == (200, 200, 200, 200)
    assert "kplane-admin" in _caller(b1) and "kplane-admin" in _caller(b3)
    assert "gitVersion" in json.loads(b2)
    assert json.loads(b4)["metadata"]["name"] == "default"
    assert h1["audit-id"] and h1["content-type"].startswith("application/json")


def _express_count(kubectl) -> int:
    metrics = kubectl("get", "--raw", "/metrics")
    return sum(int(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("kplane_aggregator_proxy_express_requests_total{"))


def test_proxied_requests_take_the_express_lane_once_a_connection_is_open(kp, kubectl, backend):
    before = _express_count(kubectl)
    with _connect(kp) as sock:
        reader = _Reader(sock)
        answers = []
        for i in range(20):
            sock.sendall(_request("GET", FLUNDERS + f"?limit={i + 1}", {"Audit-ID": f"audit-{i}"}))
            answers.append(reader.response())
        # A body and pipelining on the same connection: answered in order.
        sock.sendall(_request("POST", FLUNDERS, body=b'{"kind":"Flunder"}') + _request("GET", FLUNDERS))
        answers += [reader.response(), reader.response()]
    assert [a[0] for a in answers] == [200] * 22  # the test backend answers a POST with its list too
    assert [a[1]["audit-id"] for a in answers[:20]] == [f"audit-{i}" for i in range(20)]
    assert all("kplane-admin" in _caller(a[2]) for a in answers[:20])
    assert _express_count(kubectl) - before >= 18  # all but the first one or two (a connection is dialled)


def test_head_and_body_split_across_reads(kp, backend):
    with _connect(kp) as sock:
        reader = _Reader(sock)
        req = _request("GET", FLUNDERS)
        for cut in (3, 12, len(req) - 2):
            sock.sendall(req[:cut])
            time.sleep(0.1)
            sock.sendall(req[cut:])
            status, _, body = reader.response()
            assert status == 200 and "kplane-admin" in _caller(body)
        # A POST whose body arrives later: the backend answers it (404: it serves only GET here).
        body = json.dumps({"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder"}).encode()
        req = _request("POST", FLUNDERS + "/x/y", body=body)
        sock.sendall(req[:-10])
        time.sleep(0.1)
        sock.sendall(req[-10:])
        status, _, answer = reader.response()
        assert status == 404 and json.loads(answer)["reason"] == "NotFound"


def test_forged_identity_headers_are_replaced(kp, backend):
    with _connect(kp) as sock:
        sock.sendall(_request("GET", FLUNDERS, {"X-Remote-User": "mallory", "X-Remote-Group": "system:masters",
                                                "Authorization": "Bearer forged"}))
        status, _, body = _Reader(sock).response()
    assert status == 200
    caller = _caller(body)
    assert "kplane-admin" in caller and "mallory" not in caller


def test_each_request_on_a_connection_is_authenticated_by_its_own_headers(kp, kubectl, backend):
    # The fast lane reuses the parsed header block while a connection repeats it byte for byte:
    # a request whose credentials differ from the one before must never get the earlier identity.
    tokens = {}
    for sa in ("fl-alice", "fl-bob"):
        kubectl("create", "serviceaccount", sa, "-n", "default")
        kubectl("create", "clusterrolebinding", sa, "--clusterrole=cluster-admin", f"--serviceaccount=default:{sa}")
        tokens[sa] = kubectl("create", "token", sa, "-n", "default").strip()
    sequence = ["fl-alice", "fl-alice", "fl-alice", "fl-bob", "fl-bob", None, "fl-alice", None]
    with _connect(kp, client_cert=False) as sock:
        reader = _Reader(sock)
        seen = []
        for sa in sequence:
            headers = {"Authorization": f"Bearer {tokens[sa]}"} if sa else {}
            sock.sendall(_request("GET", FLUNDERS, headers))
            status, _, body = reader.response()
            seen.append(_caller(body) if status == 200 else status)
    for sa, got in zip(sequence, seen, strict=True):
        if sa is None:
            assert got == 403
        else:
            assert f"system:serviceaccount:default:{sa}" in got and "kplane-admin" not in got


def test_no_credentials_is_refused_with_a_status(kp, backend):
    with _connect(kp, client_cert=False) as sock:
        sock.sendall(_request("GET", FLUNDERS))
        status, _, body = _Reader(sock).response()
    status_obj = json.loads(body)
    assert status == 403 and status_obj["kind"] == "Status" and status_obj["reason"] == "Forbidden"
    assert 'User "system:anonymous" cannot list resource "flunders"' in status_obj["message"]


def test_connection_close_is_honoured(kp, backend):
    with _connect(kp) as sock:
        sock.sendall(_request("GET", FLUNDERS, {"Connection": "close"}))
        reader = _Reader(sock)
        status, headers, _ = reader.response()
        assert status == 200 and headers.get("connection") == "close"
        assert reader.closed()


def test_kubectl_through_the_fast_lane(kubectl, backend):
    out = kubectl.json("get", "flunders", "-n", "default")
    assert out["kind"] == "List" or out["kind"] == "FlunderList"
    assert "kplane-admin" in out["items"][0]["metadata"]["annotations"]["caller"]


def _fast_lane_count(kubectl: Kubectl) -> int:
    text = kubectl("get", "--raw", "/metrics")
    line = next(x for x in text.splitlines() if x.startswith("kplane_apiserver_fast_lane_requests_total "))
    return int(line.split()[1])


def test_only_plain_api_requests_take_the_lane(kp, kubectl, backend):
    before = _fast_lane_count(kubectl)
    with _connect(kp) as sock:
        reader = _Reader(sock)
        statuses = []
        for path in (FLUNDERS, "/version", FLUNDERS, "/api/v1/namespaces"):  # one at a time: no pipelining
            sock.sendall(_request("GET", path))
            statuses.append(reader.response()[0])
        sock.sendall(_request("GET", FLUNDERS + "?watch=1&timeoutSeconds=1"))
        time.sleep(0.5)
    assert statuses == [200, 200, 200, 200]
    # The flunder and namespace GETs took it; /version, the watch and kubectl's /metrics GET did not.
    assert _fast_lane_count(kubectl) - before == 3


def test_malformed_heads_get_aiohttps_400(kp, backend):
    for bad in (b"GET " + FLUNDERS.encode() + b" HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
                b"GET " + FLUNDERS.encode() + b" HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n"):
        with _connect(kp) as sock:
            sock.sendall(bad)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                head += chunk
        assert head.split(b" ")[1] == b"400", head[:200]  # aiohttp answers its parse errors as HTTP/1.0


def test_sigterm_lets_a_fast_request_in_flight_finish(tmp_path):
    with KplaneProcess() as own:
        own_kubectl = Kubectl(own.kubeconfig)
        b = TLSBackend(own, tmp_path).start()
        try:
            register(own_kubectl, b)
            assert wait_until(lambda: condition_with(own_kubectl, "True"), 40)
            with _connect(own) as sock:
                sock.sendall(_request("GET", FLUNDERS + "/slow"))
                time.sleep(0.3)  # the backend holds the answer for a second
                own.proc.send_signal(signal.SIGTERM)
                status, _, body = _Reader(sock).response()
            assert status == 200 and json.loads(body)["metadata"]["name"] == "slow"
            assert own.proc.wait(15) == 0
        finally:
            b.stop()


def test_the_feature_gate_turns_the_lane_off():
    with KplaneProcess(extra_args=["--feature-gates=KplaneFastLane=false"]) as own:
        with _connect(own) as sock:
            reader = _Reader(sock)
            for _ in range(3):
                sock.sendall(_request("GET", "/api/v1/namespaces/default"))
                assert reader.response()[0] == 200
        metrics = Kubectl(own.kubeconfig)("get", "--raw", "/metrics")
        assert "kplane_apiserver_fast_lane_requests_total 0" in metrics


def test_a_revoked_grant_is_refused_on_the_same_connection(kp, kubectl, backend):
    # The express lane reuses a connection's last decision while RBAC is unchanged
    # (server._express_verdict); deleting the binding must end it for the next request.
    kubectl("create", "serviceaccount", "fl-carol", "-n", "default")
    kubectl("create", "clusterrolebinding", "fl-carol", "--clusterrole=cluster-admin",
            "--serviceaccount=default:fl-carol")
    token = kubectl("create", "token", "fl-carol", "-n", "default").strip()
    request = _request("GET", FLUNDERS, {"Authorization": f"Bearer {token}"})
    with _connect(kp, client_cert=False) as sock:
        reader = _Reader(sock)
        for _ in range(3):
            sock.sendall(request)
            status, _, body = reader.response()
            assert status == 200 and "system:serviceaccount:default:fl-carol" in _caller(body)
        kubectl("delete", "clusterrolebinding", "fl-carol")
        deadline = time.monotonic() + 5
        while True:
            sock.sendall(request)
            status, _, body = reader.response()
            if status == 403 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert status == 403 and json.loads(body)["reason"] == "Forbidden"
