"""Wire details checked byte for byte against kube-apiserver's behaviour, end to end: a real
`kplane serve`, raw HTTPS requests (for the exact bytes), the real kubectl and the official
kubernetes Python client."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from kplane.testing import KplaneProcess


@pytest.fixture(scope="module")
def api(kp: KplaneProcess):
    return k8s_config.new_client_from_config(config_file=kp.kubeconfig)


def _ssl(kp: KplaneProcess) -> ssl.SSLContext:
    pki = kp.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def call(kp: KplaneProcess, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, raw body) of one request as the admin."""
    req = urllib.request.Request(f"{kp.url}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=_ssl(kp), timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


APPLY = {"Content-Type": "application/apply-patch+yaml"}


@pytest.mark.parametrize("body", [b"", b"null", b"{}"])
def test_server_side_apply_of_an_empty_configuration(kp, body):
    """Upstream decodes an empty apply body into an empty map; its versionCheckManager then refuses
    a configuration of no type, for an object that exists and for one that does not."""
    for name in ("kube-root-ca.crt", "absent"):
        code, _, out = call(kp, "PATCH", f"/api/v1/namespaces/default/configmaps/{name}?fieldManager=m",
                            body, APPLY)
        status = json.loads(out)
        assert (code, status["reason"], status["message"]) == (400, "BadRequest", "invalid object type: /, Kind=")


def test_server_side_apply_of_another_type_names_it(kp):
    body = json.dumps({"apiVersion": "v1", "metadata": {"name": "x"}}).encode()
    code, _, out = call(kp, "PATCH", "/api/v1/namespaces/default/configmaps/x?fieldManager=m", body, APPLY)
    assert (code, json.loads(out)["message"]) == (400, "invalid object type: /v1, Kind=")
    body = json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}).encode()
    code, _, out = call(kp, "PATCH", "/api/v1/namespaces/default/configmaps/x?fieldManager=m", body, APPLY)
    assert (code, json.loads(out)["message"]) == (400, "invalid object type: apps/v1, Kind=Deployment")


def test_kubectl_apply_of_nothing(kubectl):
    """kubectl itself refuses an empty manifest (client-side and server-side apply): nothing is sent."""
    for args in ((), ("--server-side",)):
        proc = kubectl.run("apply", "-f", "-", *args, input="", check=False)
        assert proc.returncode == 1 and proc.stderr.strip() == "error: no objects passed to apply"


def test_services_and_namespaces_carry_no_generation(kp, api, kubectl):
    """Upstream's Service and Namespace strategies never set metadata.generation (ConfigMap-like),
    on create or when the spec changes; Deployments and custom resources do, Services do not."""
    core = k8s.CoreV1Api(api)
    svc = core.create_namespaced_service("default", {"metadata": {"name": "gen"},
                                                     "spec": {"ports": [{"port": 80}]}})
    assert svc.metadata.generation is None
    svc = core.patch_namespaced_service("gen", "default", {"spec": {"selector": {"app": "a"}}})
    assert svc.spec.selector == {"app": "a"} and svc.metadata.generation is None
    assert "generation" not in kubectl.json("get", "service", "kubernetes")["metadata"]
    ns = core.create_namespace({"metadata": {"name": "gen"}})
    assert ns.metadata.generation is None
    ns = core.patch_namespace("gen", {"metadata": {"labels": {"a": "b"}}, "spec": {"finalizers": ["x.io/y"]}})
    assert ns.metadata.labels["a"] == "b" and ns.metadata.generation is None
    assert "generation" not in kubectl.json("get", "namespace", "default")["metadata"]


def test_a_namespace_deleted_event_carries_its_last_stored_state(api, kubectl):
    """Upstream's final delete happens inside the /finalize update (ShouldDeleteNamespaceDuringUpdate),
    and the watch's DELETED event carries the object as last stored: still Terminating, still with
    the "kubernetes" spec finalizer, with the controller's conditions, and (as upstream's namespace
    storage never sets one) no deletionGracePeriodSeconds."""
    from kubernetes import watch

    core = k8s.CoreV1Api(api)
    ns = core.create_namespace({"metadata": {"name": "ending"}})
    core.create_namespaced_config_map("ending", {"metadata": {"name": "c"}})
    events = []
    w = watch.Watch()
    kubectl("delete", "namespace", "ending", "--wait=false")
    for ev in w.stream(core.list_namespace, field_selector="metadata.name=ending",
                       resource_version=ns.metadata.resource_version, timeout_seconds=30, _preload_content=False):
        events.append((ev["type"], ev["raw_object"]))
        if ev["type"] == "DELETED":
            w.stop()
    kinds = [t for t, _ in events]
    assert kinds[0] == "MODIFIED" and kinds[-1] == "DELETED", kinds
    terminating = events[0][1]
    assert terminating["status"] == {"phase": "Terminating"} and terminating["metadata"]["deletionTimestamp"]
    assert "deletionGracePeriodSeconds" not in terminating["metadata"]
    last = events[-1][1]
    assert last["spec"] == {"finalizers": ["kubernetes"]} and last["status"]["phase"] == "Terminating"
    assert "deletionGracePeriodSeconds" not in last["metadata"]
    conditions = {c["type"]: (c["status"], c["reason"]) for c in last["status"]["conditions"]}
    assert conditions["NamespaceContentRemaining"] == ("False", "ContentRemoved")
    assert int(last["metadata"]["resourceVersion"]) > int(events[-2][1]["metadata"]["resourceVersion"])


TABLE_V1_YAML = "application/yaml;as=Table;g=meta.k8s.io;v=v1"
TABLE_V1BETA1 = "application/json;as=Table;v=v1beta1;g=meta.k8s.io"


def test_a_table_in_yaml(kp):
    """Upstream's AllowsMediaTypeTransform lets a Table be served as JSON or YAML."""
    import yaml

    code, headers, body = call(kp, "GET", "/api/v1/namespaces", headers={"Accept": TABLE_V1_YAML})
    assert code == 200 and headers["Content-Type"] == "application/yaml"
    table = yaml.safe_load(body)
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert "default" in [row["cells"][0] for row in table["rows"]]
    code, headers, body = call(kp, "GET", "/api/v1/namespaces/default", headers={"Accept": TABLE_V1_YAML})
    assert code == 200 and headers["Content-Type"] == "application/yaml"
    assert yaml.safe_load(body)["rows"][0]["object"]["metadata"]["name"] == "default"


def test_meta_v1beta1_kinds_are_answered_in_v1beta1(kp):
    """meta.k8s.io/v1beta1 Table and PartialObjectMetadata[List] are still served (1.32-1.34), in
    the version asked for, rows' PartialObjectMetadata included."""
    code, headers, body = call(kp, "GET", "/api/v1/namespaces", headers={"Accept": TABLE_V1BETA1})
    table = json.loads(body)
    assert (code, headers["Content-Type"], table["kind"], table["apiVersion"]) == (
        200, "application/json", "Table", "meta.k8s.io/v1beta1")
    assert {row["object"]["apiVersion"] for row in table["rows"]} == {"meta.k8s.io/v1beta1"}
    code, _, body = call(kp, "GET", "/api/v1/namespaces/default", headers={"Accept": TABLE_V1BETA1})
    assert (code, json.loads(body)["apiVersion"]) == (200, "meta.k8s.io/v1beta1")
    partial = "application/json;as=PartialObjectMetadataList;v=v1beta1;g=meta.k8s.io"
    code, _, body = call(kp, "GET", "/api/v1/namespaces", headers={"Accept": partial})
    listed = json.loads(body)
    assert (code, listed["kind"], listed["apiVersion"]) == (200, "PartialObjectMetadataList", "meta.k8s.io/v1beta1")
    assert {(i["kind"], i["apiVersion"]) for i in listed["items"]} == {("PartialObjectMetadata", "meta.k8s.io/v1beta1")}
    partial = "application/json;as=PartialObjectMetadata;v=v1beta1;g=meta.k8s.io"
    code, _, body = call(kp, "GET", "/api/v1/namespaces/default", headers={"Accept": partial})
    assert (code, json.loads(body)["apiVersion"]) == (200, "meta.k8s.io/v1beta1")


@pytest.mark.parametrize("accept", ["application/json;as=Table;v=v2;g=meta.k8s.io",
                                    "application/yaml;as=Foo;v=v1;g=meta.k8s.io",
                                    "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io"])
def test_conversions_not_made_are_406_listing_the_serializers(kp, accept):
    """Upstream's 406 names the endpoint's serializers (MediaTypesForSerializer), not conversions."""
    code, _, body = call(kp, "GET", "/api/v1/namespaces", headers={"Accept": accept})
    status = json.loads(body)
    assert (code, status["reason"], status["message"]) == (
        406, "NotAcceptable", "only the following media types are accepted: application/json, application/yaml")


def test_json_answers_end_with_a_newline_as_upstreams_encoder_writes_them(kp):
    """Upstream's JSON serializer is a json.Encoder: every object, list, Status error, discovery
    document and Table ends with "\\n" (and Content-Length counts it)."""
    table = "application/json;as=Table;v=v1;g=meta.k8s.io"
    aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    for method, path, accept in [("GET", "/api/v1/namespaces/default", ""), ("GET", "/api/v1/namespaces", ""),
                                 ("GET", "/api/v1/namespaces/nope", ""), ("GET", "/api/v1/nothing", ""),
                                 ("GET", "/api", ""), ("GET", "/apis", ""), ("GET", "/api/v1", ""),
                                 ("GET", "/apis/rbac.authorization.k8s.io", ""), ("GET", "/api", aggregated),
                                 ("GET", "/apis/rbac.authorization.k8s.io/v1", ""), ("GET", "/nowhere", ""),
                                 ("GET", "/api/v1/namespaces", table), ("GET", "/api/v1/namespaces/default", table),
                                 ("DELETE", "/api/v1/namespaces/default/configmaps/nope", "")]:
        code, headers, body = call(kp, method, path, headers={"Accept": accept} if accept else {})
        assert body.endswith(b"}\n") and body.count(b"\n") == 1, (path, accept, body[-40:])
        assert int(headers["Content-Length"]) == len(body) and json.loads(body)
    code, headers, body = call(kp, "POST", "/api/v1/namespaces/default/configmaps",
                               json.dumps({"metadata": {"name": "nl"}}).encode(), {"Content-Type": "application/json"})
    assert code == 201 and body.endswith(b"}\n") and int(headers["Content-Length"]) == len(body)
    # These went through the fast lane's one-write path (onewrite.py), which sets Content-Length itself.
    metrics = call(kp, "GET", "/metrics")[2].decode().splitlines()
    assert [int(line.split()[-1]) for line in metrics if line.startswith("kplane_apiserver_fast_lane_requests_total")
            ][0] > 0


def test_raw_json_answers_are_indented_without_a_newline(kp):
    """/version, the / index and a Status no serializer could be negotiated for (406) are written
    by upstream's WriteRawJSON: json.MarshalIndent, two spaces, no trailing newline."""
    for path, accept in [("/version", ""), ("/", ""), ("/api/v1/namespaces", "application/vnd.kubernetes.protobuf")]:
        code, headers, body = call(kp, "GET", path, headers={"Accept": accept} if accept else {})
        assert body.startswith(b'{\n  "') and body.endswith(b"\n}"), (path, body[:20], body[-20:])
        assert json.loads(body) and int(headers["Content-Length"]) == len(body)
    assert call(kp, "GET", "/version")[0] == 200 and call(kp, "GET", "/")[0] == 200


def test_gzipped_answers_keep_the_newline(kp, api):
    import gzip

    core = k8s.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "bulk"}})
    for i in range(40):
        core.create_namespaced_config_map("bulk", {"metadata": {"name": f"b{i:02d}"}, "data": {"x": "y" * 4000}})
    code, headers, body = call(kp, "GET", "/api/v1/namespaces/bulk/configmaps", headers={"Accept-Encoding": "gzip"})
    assert code == 200 and headers["Content-Encoding"] == "gzip" and int(headers["Content-Length"]) == len(body)
    plain = gzip.decompress(body)
    assert plain.endswith(b"]}\n") and len(json.loads(plain)["items"]) == 40


def test_clients_read_newline_terminated_answers(kp, api, kubectl):
    """The official client and kubectl (a Go json decoder) take the answers as they are."""
    core = k8s.CoreV1Api(api)
    assert core.read_namespace("default").metadata.name == "default"
    assert "kube-system" in [n.metadata.name for n in core.list_namespace().items]
    assert "default" in kubectl("get", "namespaces")
    assert kubectl.json("version")["serverVersion"]["major"]
    assert "configmaps" in kubectl("api-resources")


@pytest.mark.parametrize("accept", ["application/yaml", "application/yaml, application/json",
                                    "application/yaml;as=Table;g=meta.k8s.io;v=v1"])
def test_a_watch_asked_for_in_yaml_is_406(kp, accept):
    """YAML has no stream serializer: upstream's serveWatchHandler fails NegotiateOutputMediaTypeStream
    (the first acceptable clause is YAML; JSON after it is not tried) with a 406 naming the stream
    media types, and writes that Status as ErrorNegotiated does: in YAML when YAML was asked for
    (without the Table conversion, which errors do not get: then WriteRawJSON)."""
    import yaml

    code, headers, body = call(kp, "GET", "/api/v1/namespaces?watch=1&timeoutSeconds=1", headers={"Accept": accept})
    assert code == 406, body
    if "as=Table" in accept:
        assert headers["Content-Type"] == "application/json" and body.startswith(b'{\n  "')
        status = json.loads(body)
    else:
        assert headers["Content-Type"] == "application/yaml"
        status = yaml.safe_load(body)
    assert (status["kind"], status["reason"], status["code"], status["message"]) == (
        "Status", "NotAcceptable", 406, "only the following media types are accepted: application/json;stream=watch")
    # JSON watches are unchanged.
    code, headers, body = call(kp, "GET", "/api/v1/namespaces?watch=1&timeoutSeconds=1",
                               headers={"Accept": "application/json;stream=watch"})
    assert code == 200 and json.loads(body.splitlines()[0])["type"] == "ADDED"


def test_errors_are_written_in_yaml_when_yaml_was_asked_for(kp):
    """ErrorNegotiated writes the Status with the serializer the Accept header negotiates (default
    endpoint restrictions: no conversions), so a client asking for YAML reads its error in YAML."""
    import yaml

    path = "/api/v1/namespaces/default/configmaps/absent"
    for accept in ("application/yaml", "application/yaml, application/json",
                   "application/json;as=Table;v=v1;g=meta.k8s.io, application/yaml"):
        code, headers, body = call(kp, "GET", path, headers={"Accept": accept})
        assert (code, headers["Content-Type"]) == (404, "application/yaml"), (accept, body)
        status = yaml.safe_load(body)
        assert (status["kind"], status["apiVersion"], status["reason"], status["code"], status["message"]) == (
            "Status", "v1", "NotFound", 404, 'configmaps "absent" not found')
        assert status["details"] == {"name": "absent", "kind": "configmaps"}
        # Keys sorted, as JSONToYAML writes them through go-yaml's maps.
        top = [line.split(":")[0] for line in body.decode().splitlines() if line[:1].isalpha()]
        assert top == sorted(top) and top[0] == "apiVersion", top
    # A Table (a conversion) is not offered for errors: nothing else acceptable, so WriteRawJSON.
    code, headers, body = call(kp, "GET", path, headers={"Accept": "application/yaml;as=Table;g=meta.k8s.io;v=v1"})
    assert (code, headers["Content-Type"]) == (404, "application/json") and body.startswith(b'{\n  "kind"')
    # A Table asked for with a JSON fallback (kubectl's Accept): the fallback writes the error.
    code, headers, body = call(kp, "GET", path, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,"
                                                                   "application/json"})
    assert (code, headers["Content-Type"]) == (404, "application/json") and body.endswith(b"}\n")
    # A refused write's error is negotiated alike.
    code, headers, body = call(kp, "POST", "/api/v1/namespaces/default/configmaps", b"{", {
        "Content-Type": "application/json", "Accept": "application/yaml"})
    assert (code, headers["Content-Type"]) == (400, "application/yaml")
    assert yaml.safe_load(body)["reason"] == "BadRequest"


# ---- request head size: kube-apiserver's MaxHeaderBytes (1 MiB) plus Go's 4096 bytes of slop ----

HEAD_LIMIT = (1 << 20) + 4096
GO_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
          b"Connection: close\r\n\r\n431 Request Header Fields Too Large")


def _raw_exchange(kp: KplaneProcess, head: bytes, timeout: float = 30) -> bytes:
    """Everything the server writes back to `head` on a fresh TLS connection, up to its close."""
    import socket

    host, port = kp.url.removeprefix("https://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock, \
            _ssl(kp).wrap_socket(sock, server_hostname=host) as tls:
        tls.sendall(head)
        out = b""
        while chunk := tls.recv(65536):
            out += chunk
        return out


def _head(target: str, size: int = 0, extra: str = "") -> bytes:
    """A GET head of exactly `size` bytes (padded with a header), or as it comes when size is 0."""
    start = f"GET {target} HTTP/1.1\r\nHost: kplane\r\nConnection: close\r\n{extra}"
    if not size:
        return (start + "\r\n").encode()
    pad = size - len(start) - len("X-Pad: \r\n\r\n")
    return (start + "X-Pad: " + "p" * pad + "\r\n\r\n").encode()


def test_a_long_url_is_served_in_either_lane(kp):
    """A big labelSelector (a URL over aiohttp's 8190-byte line limit) works upstream: a list (the
    fast lane) and a watch (aiohttp's lane) both answer 200."""
    values = ",".join(f"v{i}" for i in range(6000))  # about 40 KB
    for target in (f"/api/v1/namespaces?labelSelector=x+notin+({values})",
                   f"/api/v1/namespaces?watch=1&timeoutSeconds=1&labelSelector=x+notin+({values})"):
        assert len(target) > 8190
        out = _raw_exchange(kp, _head(target))
        assert out.startswith(b"HTTP/1.1 200 OK\r\n"), out[:200]
        assert b'"name":"default"' in out


@pytest.mark.parametrize("target", ["/api/v1/namespaces/default", "/api/v1/namespaces?watch=1&timeoutSeconds=1",
                                    "/version"])
def test_heads_up_to_upstreams_limit_are_served_and_longer_ones_are_431(kp, target):
    """Go's server reads a head of up to MaxHeaderBytes + 4096 bytes (one large header here, as a
    big bearer token would be); past it, it writes its fixed 431 and closes the connection."""
    out = _raw_exchange(kp, _head(target, 100_000))
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and (b'"default"' in out or b'"gitVersion"' in out), out[:300]
    out = _raw_exchange(kp, _head(target, HEAD_LIMIT))
    assert out.startswith(b"HTTP/1.1 200 OK\r\n"), out[:300]
    assert _raw_exchange(kp, _head(target, HEAD_LIMIT + 1)) == GO_431
    # Many small headers count alike (aiohttp also refused more than 128 headers).
    many = "".join(f"X-H{i}: {i}\r\n" for i in range(1000))
    assert _raw_exchange(kp, _head(target, extra=many)).startswith(b"HTTP/1.1 200 OK\r\n")
    # A head far past the limit, still being sent while the server answers.
    assert _raw_exchange(kp, _head(target, 3 * HEAD_LIMIT)) == GO_431


def test_a_head_past_the_limit_after_a_request_on_the_same_connection_is_431(kp):
    import socket

    host, port = kp.url.removeprefix("https://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock, \
            _ssl(kp).wrap_socket(sock, server_hostname=host) as tls:
        tls.sendall(b"GET /api/v1/namespaces/default HTTP/1.1\r\nHost: kplane\r\n\r\n")
        first = tls.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 OK\r\n")
        tls.sendall(_head("/api/v1/namespaces/default", HEAD_LIMIT + 10))
        out = b""
        while chunk := tls.recv(65536):
            out += chunk
    assert out == GO_431


def test_json_escapes_html_characters_and_line_separators_as_gos_encoder(kp, kubectl):
    """Upstream's JSON is Go's encoding/json: <, > and & in strings are written \\u003c, \\u003e,
    \\u0026, and U+2028/U+2029 as \\u2028/\\u2029 — in objects, pretty answers, lists and watch
    events; YAML keeps the characters; clients read back the same text."""
    text = "<b>a & b</b>\u2028\u2029"
    body = json.dumps({"metadata": {"name": "html"}, "data": {"k": text}}).encode()
    code, _, created = call(kp, "POST", "/api/v1/namespaces/default/configmaps", body,
                            {"Content-Type": "application/json"})
    escaped = b'"\\u003cb\\u003ea \\u0026 b\\u003c/b\\u003e\\u2028\\u2029"'
    assert code == 201 and escaped in created and b"<" not in created and b"&" not in created
    assert escaped in call(kp, "GET", "/api/v1/namespaces/default/configmaps/html")[2]
    assert escaped in call(kp, "GET", "/api/v1/namespaces/default/configmaps/html?pretty=true")[2]
    assert escaped in call(kp, "GET", "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dhtml")[2]
    watch = call(kp, "GET", "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1"
                 "&fieldSelector=metadata.name%3Dhtml")[2]
    assert escaped in watch and b"<" not in watch
    yaml_body = call(kp, "GET", "/api/v1/namespaces/default/configmaps/html", headers={"Accept": "application/yaml"})[2]
    assert b"<b>a & b</b>" in yaml_body
    assert json.loads(created)["data"]["k"] == text
    assert kubectl.json("get", "configmap", "html", "-n", "default")["data"]["k"] == text
