"""examples/wardle behind kplane's aggregator, end to end (issue 3's test list).

One kplane and one `python -m examples.wardle` subprocess for the module; the real kubectl and the
official `kubernetes` Python client talk to kplane only (except the direct 401 check). Two in-process
TLS backends stand in for a server that never answers and one that answers discovery after 7 s; a
second kplane with --feature-gates=EnableAggregatedDiscoveryTimeout=false covers the lifted bound.
"""

from __future__ import annotations

import asyncio
import base64
import json
import queue
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kplane.controlplane.pki import issue_serving_cert, self_signed_ca
from kplane.testing import ExtensionProcess, KplaneProcess, free_port

REPO = Path(__file__).resolve().parents[2]
GV = "wardle.example.com/v1alpha1"
APISERVICE = "v1alpha1.wardle.example.com"
ACCEPT_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
GATE_OFF = "--feature-gates=EnableAggregatedDiscoveryTimeout=false"


# ---- harness ---------------------------------------------------------------------------------------


def _insecure_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Kubectl:
    def __init__(self, kp: KplaneProcess, cache_dir: str):
        self.kp = kp
        self.cache_dir = cache_dir

    def argv(self, *args: str) -> list[str]:
        return ["kubectl", "--kubeconfig", self.kp.kubeconfig, "--cache-dir", self.cache_dir, *args]

    def __call__(self, *args: str, input: str | None = None,
                 check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(self.argv(*args), input=input, capture_output=True, text=True, timeout=60,
                           check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr}\n"
                                 f"kplane log:\n{self.kp.log()}")
        return r

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


class LineReader:
    """Lines of a long-running subprocess (kubectl ... -w), read on a thread: tests wait with a deadline."""

    def __init__(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, predicate: Any, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching line in {timeout}s; saw {self.seen}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            if predicate(line):
                return line

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def aggregated_discovery(kp: KplaneProcess, timeout: float = 90) -> tuple[float, dict]:
    """GET /apis as APIGroupDiscoveryList with the admin client certificate; (seconds, document)."""
    pki = kp.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    req = urllib.request.Request(f"{kp.url}/apis", headers={"Accept": ACCEPT_V2})
    t0 = time.monotonic()
    with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
        assert "g=apidiscovery.k8s.io" in resp.headers["Content-Type"]
        body = json.loads(resp.read())
    return time.monotonic() - t0, body


def group_versions(doc: dict, group: str) -> dict[str, dict]:
    for g in doc["items"]:
        if g["metadata"]["name"] == group:
            return {v["version"]: v for v in g["versions"]}
    return {}


# ---- in-process test backends: one that never answers, one that answers discovery after 7 s ---------


class Backends:
    """Both listen on 127.0.0.1 and serve TLS for api.<ns>.svc (ns = the group's first label)."""

    SLOW_SECONDS = 7.0

    def __init__(self, tmp: Path):
        ca, ca_key = self_signed_ca("test-backends-ca")
        (tmp / "ca.crt").write_bytes(ca)
        (tmp / "ca.key").write_bytes(ca_key)
        self.ca_bundle = base64.b64encode(ca).decode()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert, key = issue_serving_cert(tmp / "ca.crt", tmp / "ca.key", ["api.hang.svc", "api.slow.svc"])
        (tmp / "tls.crt").write_bytes(cert)
        (tmp / "tls.key").write_bytes(key)
        self.ctx.load_cert_chain(tmp / "tls.crt", tmp / "tls.key")
        self.hang_port, self.slow_port = free_port(), free_port()
        self.loop = asyncio.new_event_loop()
        self._held: list[asyncio.StreamWriter] = []
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._held.append(writer)  # accepted, never answered (not even the TLS handshake)

        self.hang_server = await asyncio.start_server(hold, "127.0.0.1", self.hang_port)
        app = web.Application()
        app.router.add_get("/apis", self._apis)
        app.router.add_get("/apis/slow.example.com/v1", self._resource_list)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.slow_port, ssl_context=self.ctx).start()

    async def _resource_list(self, request: web.Request) -> web.Response:
        return web.json_response({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "slow.example.com/v1",
            "resources": [{"name": "slowthings", "singularName": "slowthing", "namespaced": True,
                           "kind": "SlowThing", "verbs": ["get", "list"]}]})

    async def _apis(self, request: web.Request) -> web.Response:
        if "apidiscovery.k8s.io" not in request.headers.get("Accept", ""):
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        await asyncio.sleep(self.SLOW_SECONDS)
        doc = {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
               "items": [{"metadata": {"name": "slow.example.com", "creationTimestamp": None}, "versions": [
                   {"version": "v1", "freshness": "Current", "resources": [
                       {"resource": "slowthings", "singularResource": "slowthing", "scope": "Namespaced",
                        "responseKind": {"group": "", "version": "", "kind": "SlowThing"},
                        "verbs": ["get", "list"]}]}]}]}
        return web.Response(body=json.dumps(doc), headers={"Content-Type": ACCEPT_V2})

    def registration(self, group: str, port: int) -> str:
        ns = group.split(".")[0]
        items = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": ns},
             "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]}},
            {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "api", "namespace": ns},
             "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}]},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
             "metadata": {"name": f"v1.{group}"},
             "spec": {"group": group, "version": "v1", "groupPriorityMinimum": 1000, "versionPriority": 15,
                      "caBundle": self.ca_bundle, "service": {"namespace": ns, "name": "api", "port": 443}}},
        ]
        # Documents, not a v1 List: validating a List makes kubectl fetch /openapi/v2 as protobuf.
        return "\n---\n".join(json.dumps(item) for item in items)

    def close(self) -> None:
        async def shutdown() -> None:
            for w in self._held:
                w.close()
            self.hang_server.close()
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# ---- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kp() -> Iterator[KplaneProcess]:
    with KplaneProcess() as p:
        yield p


@pytest.fixture(scope="module")
def kubectl(kp: KplaneProcess, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(kp, str(tmp_path_factory.mktemp("kubectl-cache")))


@pytest.fixture(scope="module")
def wardle(kp: KplaneProcess) -> Iterator[ExtensionProcess]:
    # -v 2: the request log the identity test reads; restartable on the same port and data dir.
    w = ExtensionProcess(kp, "examples.wardle", args=["-v", "2"], apiservices=[APISERVICE], cwd=REPO)
    w.start()
    try:
        yield w
    finally:
        w.cleanup()


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    b = Backends(tmp_path_factory.mktemp("backends"))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def k8s(kp: KplaneProcess, wardle: ExtensionProcess) -> Iterator[Any]:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kp.kubeconfig)
    try:
        yield client, api
    finally:
        api.close()


# ---- registration and the happy path ---------------------------------------------------------------


def test_wardle_registers_itself_and_becomes_available(kubectl: Kubectl, wardle: ExtensionProcess) -> None:
    r = kubectl("wait", "--for=condition=Available", f"apiservice/{APISERVICE}", "--timeout=30s", check=False)
    assert r.returncode == 0, r.stderr + wardle.log()
    row = kubectl("get", "apiservice", APISERVICE, "--no-headers").stdout.split()
    assert row[1:3] == ["wardle/api", "True"]
    cond = [c for c in kubectl.json("get", "apiservice", APISERVICE)["status"]["conditions"]
            if c["type"] == "Available"][0]
    assert (cond["reason"], cond["message"]) == ("Passed", "all checks passed")
    out = kubectl("api-resources", "--api-group=wardle.example.com", "--no-headers").stdout
    assert sorted(line.split()[0] for line in out.splitlines()) == ["fischers", "flunders"]


def test_kubectl_crud_watch_and_ban_flunder(kubectl: Kubectl, wardle: ExtensionProcess) -> None:
    watch = LineReader(kubectl.argv("get", "flunders", "-n", "default", "-w", "--output-watch-events",
                                    "-o", "custom-columns=EVENT:.type,NAME:.object.metadata.name,"
                                    "REF:.object.spec.reference"))
    try:
        kubectl("apply", "-f", str(REPO / "examples/wardle/fischer.yaml"))
        kubectl("apply", "-f", str(REPO / "examples/wardle/flunder.yaml"))
        watch.wait_for(lambda line: line.split()[:2] == ["ADDED", "my-first-flunder"], 15)

        out = kubectl("get", "flunders", "-n", "default").stdout.splitlines()
        assert out[0].split() == ["NAME", "REFERENCE", "REFERENCE-TYPE", "AGE"]
        assert out[1].split()[:3] == ["my-first-flunder", "my-first-fischer", "Fischer"]
        got = kubectl.json("get", "flunder", "my-first-flunder", "-n", "default")
        assert got["metadata"]["labels"] == {"sample-label": "true"}

        kubectl("create", "-f", "-", input=f"apiVersion: {GV}\nkind: Flunder\n"
                "metadata: {name: second, namespace: default}\nspec: {reference: my-first-flunder}\n")
        watch.wait_for(lambda line: line.split()[:2] == ["ADDED", "second"], 15)
        assert kubectl.json("get", "flunder", "second", "-n", "default")["spec"]["referenceType"] == "Flunder"
        kubectl("patch", "flunder", "second", "-n", "default", "--type=merge", "-p",
                '{"spec":{"reference":"my-first-fischer","referenceType":"Fischer"}}')
        watch.wait_for(lambda line: line.split() == ["MODIFIED", "second", "my-first-fischer"], 15)
        kubectl("delete", "flunder", "second", "-n", "default")
        watch.wait_for(lambda line: line.split()[:2] == ["DELETED", "second"], 15)

        r = kubectl("create", "-f", "-", check=False, input=f"apiVersion: {GV}\nkind: Flunder\n"
                    "metadata: {name: banned-flunder, namespace: default}\n")
        assert r.returncode != 0
        assert ('Error from server (Forbidden): error when creating "STDIN": flunders.wardle.example.com '
                '"banned-flunder" is forbidden: this name may not be used, please change the resource name'
                ) in r.stderr
        r = kubectl("create", "-f", "-", check=False, input=f"apiVersion: {GV}\nkind: Flunder\n"
                    "metadata: {name: odd, namespace: default}\nspec: {referenceType: Bogus, reference: x}\n")
        assert r.returncode != 0
        assert 'The Flunder "odd" is invalid: spec.referenceType: Unsupported value: "Bogus"' in r.stderr
    finally:
        watch.close()


def test_python_client_custom_objects_and_dynamic(k8s: Any, kubectl: Kubectl) -> None:
    client, api = k8s
    from kubernetes import watch
    from kubernetes.dynamic import DynamicClient

    co = client.CustomObjectsApi(api)
    group, version = "wardle.example.com", "v1alpha1"
    listed = co.list_namespaced_custom_object(group, version, "default", "flunders")
    assert listed["kind"] == "FlunderList"
    rv = listed["metadata"]["resourceVersion"]
    created = co.create_namespaced_custom_object(group, version, "default", "flunders", {
        "apiVersion": GV, "kind": "Flunder", "metadata": {"name": "py-flunder"},
        "spec": {"reference": "my-first-fischer", "referenceType": "Fischer"}})
    assert created["metadata"]["namespace"] == "default" and created["metadata"]["uid"]
    patched = co.patch_namespaced_custom_object(group, version, "default", "flunders", "py-flunder",
                                                {"metadata": {"labels": {"via": "python"}}})
    assert patched["metadata"]["labels"] == {"via": "python"}
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

    events = []
    for ev in watch.Watch().stream(co.list_namespaced_custom_object, group, version, "default", "flunders",
                                   resource_version=rv, timeout_seconds=5):
        if ev["object"]["metadata"]["name"] == "py-flunder":
            events.append(ev["type"])
            if len(events) == 2:
                break
    assert events == ["ADDED", "MODIFIED"]

    fischer = co.get_cluster_custom_object(group, version, "fischers", "my-first-fischer")
    assert fischer["disallowedFlunders"] == ["banned-flunder"]

    dyn = DynamicClient(api)
    flunders = dyn.resources.get(api_version=GV, kind="Flunder")
    assert flunders.namespaced and flunders.name == "flunders"
    names = sorted(item.metadata.name for item in flunders.get(namespace="default").items)
    assert names == ["my-first-flunder", "py-flunder"]
    flunders.delete(name="py-flunder", namespace="default")
    assert "py-flunder" not in kubectl("get", "flunders", "-n", "default", "-o", "name").stdout

    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as exc:
        co.create_namespaced_custom_object(group, version, "default", "flunders", {
            "apiVersion": GV, "kind": "Flunder", "metadata": {"name": "banned-flunder"}})
    assert exc.value.status == 403
    assert json.loads(exc.value.body)["reason"] == "Forbidden"


def test_explain_through_aggregated_openapi(kubectl: Kubectl, wardle: ExtensionProcess) -> None:
    out = kubectl("explain", "flunder.spec").stdout
    assert "GROUP:      wardle.example.com" in out and "KIND:       Flunder" in out
    assert "reference\t<string>" in out and "referenceType\t<string>" in out
    assert "The reference type" in out
    out = kubectl("explain", "fischers.disallowedFlunders").stdout
    assert "disallowedFlunders" in out and "[]string" in out
    # metadata is metav1.ObjectMeta in full (it was an empty object).
    assert "map[string]string" in kubectl("explain", "flunders.metadata.labels").stdout
    # The SDK's nested types are named definitions, as a Go server's structs: <FlunderSpec>, not <Object>.
    out = kubectl("explain", "flunders.spec").stdout
    assert "FIELD: spec <FlunderSpec>" in out and "reference\t<string>" in out, out
    assert "status\t<FlunderStatus>" in kubectl("explain", "flunders").stdout
    # Client-side validation follows the references.
    flunder = {"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder",
               "metadata": {"name": "explain-check", "namespace": "default"}, "spec": {"bogus": 1}}
    r = kubectl("apply", "--validate=strict", "-f", "-", input=json.dumps(flunder), check=False)
    assert r.returncode != 0 and 'unknown field "spec.bogus"' in r.stderr, r.stderr


def test_sdk_metadata_is_object_meta(kubectl: Kubectl, wardle: ExtensionProcess) -> None:
    flunder = {"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder",
               "metadata": {"name": "meta-check", "namespace": "default", "bogus": 1}, "spec": {}}
    r = kubectl("create", "--validate=strict", "-f", "-", input=json.dumps(flunder), check=False)
    assert r.returncode != 0 and 'unknown field "metadata.bogus"' in r.stderr, r.stderr
    del flunder["metadata"]["bogus"]
    flunder["metadata"]["labels"] = {"a": "1"}
    kubectl("apply", "-f", "-", input=json.dumps(flunder))
    flunder["metadata"]["labels"] = {"a": "2"}
    r = kubectl("apply", "-f", "-", input=json.dumps(flunder))  # a client-side patch from OpenAPI v3
    assert "error calculating patch" not in r.stderr, r.stderr
    assert json.loads(kubectl("get", "flunder", "meta-check", "-o", "json").stdout)["metadata"]["labels"] == {"a": "2"}
    kubectl("delete", "flunder", "meta-check")


def test_namespace_deletion_removes_aggregated_content(kubectl: Kubectl, wardle: ExtensionProcess) -> None:
    """As upstream's namespace controller: the content on extension servers goes too, and the
    namespace stays Terminating until it has."""
    kubectl("create", "namespace", "agg-doomed")
    flunder = {"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder",
               "metadata": {"name": "inside", "namespace": "agg-doomed"}, "spec": {}}
    kubectl("create", "-f", "-", input=json.dumps(flunder))
    kubectl("delete", "namespace", "agg-doomed", "--timeout=30s")
    assert kubectl("get", "namespace", "agg-doomed", check=False).returncode != 0
    r = kubectl("get", "flunders", "-n", "agg-doomed", "-o", "json")
    assert json.loads(r.stdout)["items"] == []


def test_extension_answers_are_pretty_for_curl_through_kplane(kp: KplaneProcess, wardle: ExtensionProcess) -> None:
    """The aggregator passes User-Agent and query on; the SDK server negotiates as kube-apiserver does."""
    pki = kp.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    def get(path: str, agent: str) -> bytes:
        req = urllib.request.Request(f"{kp.url}{path}", headers={"User-Agent": agent, "Accept": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.read()

    path = "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders"
    pretty = get(path, "curl/8.5.0")
    assert pretty.startswith(b'{\n  "') and not pretty.endswith(b"\n")
    assert json.loads(pretty)["kind"] == "FlunderList"
    compact = get(path, "kubectl/v1.32.0 (linux/amd64)")
    assert compact.endswith(b"}\n") and b"\n  " not in compact
    not_pretty = get(path + "?pretty=false", "curl/8.5.0")
    assert not_pretty.endswith(b"}\n") and b"\n  " not in not_pretty


def test_sdk_refuses_content_in_a_missing_namespace(kubectl: Kubectl, wardle: ExtensionProcess) -> None:
    flunder = {"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder",
               "metadata": {"name": "lost", "namespace": "no-such-namespace"}, "spec": {}}
    r = kubectl("create", "-f", "-", input=json.dumps(flunder), check=False)
    assert r.returncode != 0 and 'namespaces "no-such-namespace" not found' in r.stderr, r.stderr


def test_forged_identity_is_stripped_by_kplane_and_refused_by_wardle(k8s: Any, wardle: ExtensionProcess) -> None:
    client, _ = k8s
    from kubernetes import config

    # Through kplane: the admin client adds forged identity headers; wardle must see kplane-admin.
    api = config.new_client_from_config(config_file=wardle.kp.kubeconfig)
    try:
        for name, value in (("X-Remote-User", "mallory"), ("X-Remote-Group", "evil-group"),
                            ("X-Remote-Extra-Scopes", "everything")):
            api.set_default_header(name, value)
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "wardle.example.com", "v1alpha1", "default", "flunders",
            {"apiVersion": GV, "kind": "Flunder", "metadata": {"name": "forged-check"}})
    finally:
        api.close()
    lines = [line for line in wardle.log_path.read_text().splitlines() if "name=forged-check" in line]
    assert lines, wardle.log()[-2000:]
    assert "user=kplane-admin groups=system:masters,system:authenticated" in lines[-1]
    assert "mallory" not in lines[-1] and "evil-group" not in lines[-1]

    # Straight to wardle, without the front-proxy client certificate: refused.
    req = urllib.request.Request(f"https://127.0.0.1:{wardle.port}/apis/{GV}/namespaces/default/flunders",
                                 headers={"X-Remote-User": "system:admin",
                                          "X-Remote-Group": "system:masters"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, context=_insecure_ctx(), timeout=10)
    assert exc.value.code == 401
    assert json.loads(exc.value.read())["reason"] == "Unauthorized"


def _expired_client_cert(ca_cert: Path, ca_key: Path, cn: str, out: Path) -> tuple[str, str]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=3)).not_valid_after(now - dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(signer, hashes.SHA256()))
    (out / f"{cn}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / f"{cn}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return str(out / f"{cn}.crt"), str(out / f"{cn}.key")


def test_bad_client_certificates_straight_to_wardle_are_401(wardle: ExtensionProcess, kp: KplaneProcess,
                                                            tmp_path: Path) -> None:
    """As kube-apiserver's generic server: the handshake takes any client certificate and the
    authenticator answers a bad one (unknown CA, expired) with a 401 Status, not a TLS alert."""
    pki = kp.data_dir / "pki"
    unknown_ca, unknown_key = self_signed_ca("mallory-ca")
    (tmp_path / "mallory-ca.crt").write_bytes(unknown_ca)
    (tmp_path / "mallory-ca.key").write_bytes(unknown_key)
    from kplane.controlplane.pki import issue_client_cert

    forged, forged_key = issue_client_cert(tmp_path / "mallory-ca.crt", tmp_path / "mallory-ca.key",
                                           "front-proxy-client")
    (tmp_path / "forged.crt").write_bytes(forged)
    (tmp_path / "forged.key").write_bytes(forged_key)
    certs = {
        "unknown CA": (str(tmp_path / "forged.crt"), str(tmp_path / "forged.key")),
        "expired front-proxy": _expired_client_cert(pki / "front-proxy-ca.crt", pki / "front-proxy-ca.key",
                                                    "front-proxy-client", tmp_path),
        "expired client": _expired_client_cert(pki / "ca.crt", pki / "ca.key", "kplane-admin", tmp_path),
    }
    for what, chain in certs.items():
        ctx = _insecure_ctx()
        ctx.load_cert_chain(*chain)
        req = urllib.request.Request(f"https://127.0.0.1:{wardle.port}/apis/{GV}/namespaces/default/flunders",
                                     headers={"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"})
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, context=ctx, timeout=10)
        assert exc.value.code == 401, what
        assert json.loads(exc.value.read())["reason"] == "Unauthorized", what


# ---- the backend goes away and comes back ---------------------------------------------------------


def test_kill_wardle_then_restart(kubectl: Kubectl, wardle: ExtensionProcess, kp: KplaneProcess) -> None:
    cond = "{.status.conditions[0]"
    watch = LineReader(kubectl.argv("get", "apiservice", APISERVICE, "-w", "-o",
                                    f"jsonpath={cond}.status}} {cond}.reason}}{{'\\n'}}"))
    try:
        watch.wait_for(lambda line: line == "True Passed", 10)
        t0 = time.monotonic()
        assert wardle.stop() == 0
        line = watch.wait_for(lambda ln: ln.startswith("False"), 10)
        went_down = time.monotonic() - t0
        assert line in ("False FailedDiscoveryCheck", "False MissingEndpoints")
        cond = [c for c in kubectl.json("get", "apiservice", APISERVICE)["status"]["conditions"]
                if c["type"] == "Available"][0]
        assert cond["status"] == "False"
        if cond["reason"] == "FailedDiscoveryCheck":
            assert "connection refused" in cond["message"], cond
        print(f"unavailable after {went_down:.2f}s")

        r = kubectl("get", "flunders", "-n", "default", check=False)
        assert r.returncode != 0
        assert ("Error from server (ServiceUnavailable): the server is currently unable to handle the "
                "request") in r.stderr, r.stderr
        assert kubectl("get", "configmaps", "-n", "kube-system", "-o", "name").stdout.count("configmap/") >= 1
        # api-resources still lists every other group (it reports the missing one on stderr, as upstream).
        r = kubectl("api-resources", "--no-headers", check=False)
        names = {line.split()[0] for line in r.stdout.splitlines()}
        assert {"configmaps", "namespaces", "apiservices"} <= names, r.stdout + r.stderr
        r = kubectl("api-resources", "--api-group=apiregistration.k8s.io", "--no-headers", check=False)
        assert r.stdout.split()[0] == "apiservices"
        metrics = kubectl("get", "--raw", "/metrics").stdout
        assert f'aggregator_unavailable_apiservice{{name="{APISERVICE}"}} 1' in metrics

        t1 = time.monotonic()
        wardle.start()
        watch.wait_for(lambda ln: ln == "True Passed", 15)
        print(f"available again {time.monotonic() - t1:.2f}s after restart")
        out = kubectl("get", "flunders", "-n", "default", "-o", "name").stdout.split()
        assert out == [f"flunder.wardle.example.com/{n}" for n in ("forged-check", "my-first-flunder")]
        metrics = kubectl("get", "--raw", "/metrics").stdout
        assert f'aggregator_unavailable_apiservice{{name="{APISERVICE}"}} 0' in metrics
        assert f'kplane_aggregator_proxy_requests_total{{apiservice="{APISERVICE}"' in metrics
    finally:
        watch.close()


# ---- aggregated discovery with a backend that never answers (5 s bound) and a slow one ---------------


def test_aggregated_discovery_is_bounded_by_5s(kp: KplaneProcess, kubectl: Kubectl, backends: Backends,
                                               wardle: ExtensionProcess) -> None:
    kubectl("apply", "-f", "-", input=backends.registration("hang.example.com", backends.hang_port))
    kubectl("apply", "-f", "-", input=backends.registration("slow.example.com", backends.slow_port))
    elapsed, doc = aggregated_discovery(kp)
    print(f"aggregated discovery with a hanging and a 7 s backend: {elapsed:.2f}s")
    assert elapsed < 6.5
    for group in ("hang.example.com", "slow.example.com"):
        v1 = group_versions(doc, group).get("v1")
        assert v1 is None or (v1["freshness"] == "Stale" and not v1.get("resources")), v1
    assert group_versions(doc, "apiregistration.k8s.io")["v1"]["resources"]
    assert group_versions(doc, "wardle.example.com")["v1alpha1"]["resources"]
    # Legacy discovery never calls a backend.
    t0 = time.monotonic()
    groups = [g["name"] for g in json.loads(kubectl("get", "--raw", "/apis").stdout)["groups"]]
    assert time.monotonic() - t0 < 3
    assert {"hang.example.com", "slow.example.com", "wardle.example.com"} <= set(groups)
    kubectl("delete", "apiservice", "v1.hang.example.com", "v1.slow.example.com")


def test_gate_off_waits_for_the_slow_backend(backends: Backends, tmp_path: Path) -> None:
    with KplaneProcess(extra_args=[GATE_OFF]) as kp2:
        kc = Kubectl(kp2, str(tmp_path / "cache"))
        kc("apply", "-f", "-", input=backends.registration("slow.example.com", backends.slow_port))
        elapsed, doc = aggregated_discovery(kp2)
        print(f"aggregated discovery with the gate off and a 7 s backend: {elapsed:.2f}s")
        assert elapsed > Backends.SLOW_SECONDS - 2.5
        v1 = group_versions(doc, "slow.example.com")["v1"]
        assert v1["freshness"] == "Current"
        assert [r["resource"] for r in v1["resources"]] == ["slowthings"]

