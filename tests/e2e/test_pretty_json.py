"""Pretty-printed JSON, end to end against a real `kplane serve` with raw HTTPS requests.

Upstream (k8s.io/apiserver/pkg/endpoints/handlers/negotiation, isPrettyPrint; NegotiateOutputMediaType)
swaps in the JSON PrettySerializer (json.MarshalIndent with two spaces: no trailing newline) when a
non-empty `?pretty=` parses true with strconv.ParseBool, or, without one, when the User-Agent starts
with curl, Wget or Mozilla/5.0; `pretty=1` in the Accept clause does it too. Watch streams are never
indented (NegotiateOutputMediaTypeStream ignores both)."""

from __future__ import annotations

import gzip
import http.client
import json
import ssl
import time
import urllib.error
import urllib.request

import pytest
import yaml

from kplane.testing import KplaneProcess

CURL = "curl/8.5.0"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def _ssl(kp: KplaneProcess, client_cert: bool = True) -> ssl.SSLContext:
    pki = kp.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if client_cert:
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def call(kp: KplaneProcess, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, client_cert: bool = True) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"{kp.url}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=_ssl(kp, client_cert), timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def indented(body: bytes) -> bool:
    """Exactly Go's json.MarshalIndent(obj, "", "  ") of the document: no trailing newline."""
    return body == json.dumps(json.loads(body), indent=2, ensure_ascii=False).encode()


def compact(body: bytes) -> bool:
    """json.Encoder's output: one line, ending with a newline."""
    return body.endswith(b"}\n") and body.count(b"\n") == 1


@pytest.fixture(scope="module", autouse=True)
def objects(kp):
    call(kp, "POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": "pp"}}).encode(),
         {"Content-Type": "application/json"})
    for i in range(3):
        cm = {"metadata": {"name": f"cm{i}", "labels": {"a": "b"}}, "data": {"k": "v"}}
        code, _, _ = call(kp, "POST", "/api/v1/namespaces/pp/configmaps", json.dumps(cm).encode(),
                          {"Content-Type": "application/json"})
        assert code == 201


ANSWERS = [  # (method, path, accept): objects, lists, Status errors, discovery, Tables
    ("GET", "/api/v1/namespaces/pp/configmaps/cm0", ""),
    ("GET", "/api/v1/namespaces/pp/configmaps", ""),
    ("GET", "/api/v1/namespaces/pp/configmaps/nope", ""),
    ("GET", "/api/v1/nothing", ""),
    ("DELETE", "/api/v1/namespaces/pp/configmaps/nope", ""),
    ("GET", "/api", ""), ("GET", "/apis", ""), ("GET", "/api/v1", ""),
    ("GET", "/apis/rbac.authorization.k8s.io", ""), ("GET", "/apis/rbac.authorization.k8s.io/v1", ""),
    ("GET", "/api", AGGREGATED), ("GET", "/apis", AGGREGATED),
    ("GET", "/api/v1/namespaces/pp/configmaps", TABLE), ("GET", "/api/v1/namespaces/pp/configmaps/cm0", TABLE),
]


@pytest.mark.parametrize("method,path,accept", ANSWERS)
def test_curl_gets_indented_answers(kp, method, path, accept):
    headers = {"User-Agent": CURL} | ({"Accept": accept} if accept else {})
    code, got, body = call(kp, method, path, headers=headers)
    assert indented(body) and body.startswith(b'{\n  "'), (code, body[:60], body[-20:])
    assert int(got["Content-Length"]) == len(body) and got["Content-Type"].startswith("application/json")
    # The same request from another client is compact, and says the same.
    code2, _, plain = call(kp, method, path, headers={"Accept": accept} if accept else {})
    assert code2 == code and compact(plain) and _ageless(json.loads(plain)) == _ageless(json.loads(body))


def _ageless(doc: dict) -> dict:
    for row in doc.get("rows") or []:  # a Table's Age cell moves on between two requests
        row.pop("cells")
    return doc


@pytest.mark.parametrize("query", ["pretty=true", "pretty=1", "pretty=True", "pretty=t", "limit=1&pretty=TRUE"])
def test_the_pretty_parameter_indents_for_any_client(kp, query):
    for path in ("/api/v1/namespaces/pp/configmaps/cm0", "/api/v1/namespaces/pp/configmaps", "/api/v1/nothing",
                 "/apis"):
        _, headers, body = call(kp, "GET", f"{path}?{query}")
        assert indented(body) and int(headers["Content-Length"]) == len(body), (path, body[-20:])


@pytest.mark.parametrize("query", ["pretty=false", "pretty=0", "pretty=False", "pretty=yes", "pretty=on"])
def test_a_pretty_parameter_that_is_not_true_turns_it_off_even_for_curl(kp, query):
    """strconv.ParseBool: false spellings are false, and so is anything it cannot parse."""
    for path in ("/api/v1/namespaces/pp/configmaps/cm0", "/api/v1/namespaces/pp/configmaps/nope", "/api/v1"):
        _, _, body = call(kp, "GET", f"{path}?{query}", headers={"User-Agent": CURL})
        assert compact(body), (path, body[-20:])


def test_an_empty_pretty_parameter_leaves_it_to_the_user_agent(kp):
    assert indented(call(kp, "GET", "/api/v1/namespaces/pp/configmaps/cm0?pretty=", headers={"User-Agent": CURL})[2])
    assert compact(call(kp, "GET", "/api/v1/namespaces/pp/configmaps/cm0?pretty=")[2])


@pytest.mark.parametrize("agent,pretty", [
    ("curl/7.88.1", True), ("Wget/1.21.4", True), ("curlish", True),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", True),
    ("Mozilla/4.0 (compatible; MSIE 6.0)", False), ("CURL/8.5.0", False), ("wget/1.21", False),
    ("kubectl/v1.32.0 (linux/amd64) kubernetes/abcdef", False), ("OpenAPI-Generator/31.0.0/python", False),
    ("Python-urllib/3.12", False), ("a curl/8.5.0", False),
])
def test_user_agents_taken_for_humans(kp, agent, pretty):
    _, _, body = call(kp, "GET", "/api/v1/namespaces/pp/configmaps/cm0", headers={"User-Agent": agent})
    assert (indented(body) if pretty else compact(body)), (agent, body[-20:])


def test_pretty_in_the_accept_header(kp):
    """acceptMediaTypeOptions: `pretty=1` (only "1") in the chosen Accept clause; it is or'ed with the
    request's own rule, so ?pretty=false does not undo it."""
    accept = {"Accept": "application/json;pretty=1"}
    assert indented(call(kp, "GET", "/api/v1/namespaces/pp/configmaps/cm0", headers=accept)[2])
    assert indented(call(kp, "GET", "/api/v1/namespaces/pp/configmaps/cm0?pretty=false", headers=accept)[2])
    assert indented(call(kp, "GET", "/api/v1/namespaces/pp/configmaps", headers={"Accept": TABLE + ";pretty=1"})[2])
    assert compact(call(kp, "GET", "/api/v1/namespaces/pp/configmaps/cm0",
                        headers={"Accept": "application/json;pretty=true"})[2])


def test_writes_answer_indented(kp):
    headers = {"User-Agent": CURL, "Content-Type": "application/json"}
    cm = json.dumps({"metadata": {"name": "w"}, "data": {"x": "y"}}).encode()
    code, got, body = call(kp, "POST", "/api/v1/namespaces/pp/configmaps", cm, headers)
    assert code == 201 and indented(body) and int(got["Content-Length"]) == len(body)
    code, _, body = call(kp, "PUT", "/api/v1/namespaces/pp/configmaps/w", body, headers)
    assert code == 200 and indented(body)
    code, _, body = call(kp, "PATCH", "/api/v1/namespaces/pp/configmaps/w", b'{"data":{"x":"z"}}',
                         headers | {"Content-Type": "application/merge-patch+json"})
    assert code == 200 and indented(body) and json.loads(body)["data"] == {"x": "z"}
    code, _, body = call(kp, "POST", "/api/v1/namespaces/pp/configmaps", cm, headers)  # AlreadyExists
    assert code == 409 and indented(body) and json.loads(body)["reason"] == "AlreadyExists"
    code, _, body = call(kp, "DELETE", "/api/v1/namespaces/pp/configmaps/w", None, {"User-Agent": CURL})
    assert code == 200 and indented(body)


def test_authentication_and_authorization_failures_are_indented(kp):
    code, headers, body = call(kp, "GET", "/api/v1/namespaces", headers={"User-Agent": CURL}, client_cert=False)
    assert code in (401, 403) and indented(body) and json.loads(body)["kind"] == "Status"
    assert int(headers["Content-Length"]) == len(body)
    code, _, body = call(kp, "GET", "/api/v1/namespaces", client_cert=False)
    assert code in (401, 403) and compact(body)


def test_yaml_raw_json_and_openapi_are_as_before(kp):
    """YAML has no pretty serializer; /version is always indented (WriteRawJSON); the OpenAPI
    documents are served as stored, whoever asks."""
    _, headers, body = call(kp, "GET", "/api/v1/namespaces/pp/configmaps/cm0",
                            headers={"User-Agent": CURL, "Accept": "application/yaml"})
    assert headers["Content-Type"].startswith("application/yaml") and not body.startswith(b"{")
    assert yaml.safe_load(body)["kind"] == "ConfigMap"
    for agent in (CURL, "kubectl/v1.32.0"):
        body = call(kp, "GET", "/version", headers={"User-Agent": agent})[2]
        assert indented(body)
        body = call(kp, "GET", "/openapi/v2", headers={"User-Agent": agent, "Accept": "application/json"})[2]
        assert b"\n" not in body[:200]


def test_large_pretty_answers_are_gzipped_with_the_right_length(kp):
    call(kp, "POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": "ppbulk"}}).encode(),
         {"Content-Type": "application/json"})
    for i in range(40):
        cm = {"metadata": {"name": f"b{i:02d}"}, "data": {"x": "y" * 4000}}
        call(kp, "POST", "/api/v1/namespaces/ppbulk/configmaps", json.dumps(cm).encode(),
             {"Content-Type": "application/json"})
    code, headers, body = call(kp, "GET", "/api/v1/namespaces/ppbulk/configmaps",
                               headers={"User-Agent": CURL, "Accept-Encoding": "gzip"})
    assert code == 200 and headers["Content-Encoding"] == "gzip" and int(headers["Content-Length"]) == len(body)
    plain = gzip.decompress(body)
    assert indented(plain) and len(json.loads(plain)["items"]) == 40


def test_watch_events_are_never_indented(kp):
    for path, agent in [("?watch=1&resourceVersion=0&timeoutSeconds=1&pretty=true", CURL),
                        ("?watch=1&resourceVersion=0&timeoutSeconds=1", CURL),
                        ("?watch=1&resourceVersion=0&timeoutSeconds=1&pretty=1", "kubectl/v1.32.0")]:
        code, _, body = call(kp, "GET", "/api/v1/namespaces/pp/configmaps" + path, headers={"User-Agent": agent})
        lines = body.split(b"\n")
        assert code == 200 and lines[-1] == b"" and len(lines) >= 4, body[:200]
        for line in lines[:-1]:
            assert line.startswith(b'{"type":"ADDED","object":{') and json.loads(line)["type"] == "ADDED"


def test_one_keep_alive_connection_decides_each_request_on_its_own(kp):
    """The fast lane reuses a connection's parsed header block: the query still decides each time."""
    conn = http.client.HTTPSConnection("127.0.0.1", kp.port, context=_ssl(kp), timeout=30)
    conn._context.check_hostname = False  # type: ignore[attr-defined]
    try:
        for query, pretty in [("?pretty=true", True), ("", False), ("?pretty=1", True), ("?pretty=0", False)]:
            conn.request("GET", "/api/v1/namespaces/pp/configmaps/cm0" + query, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200 and (indented(body) if pretty else compact(body)), (query, body[-20:])
            assert int(resp.getheader("Content-Length")) == len(body)
        for agent, pretty in [(CURL, True), (CURL, True), ("kubectl/v1.32.0", False), (CURL, True)]:
            conn.request("GET", "/api/v1/namespaces/pp/configmaps/cm1", headers={"User-Agent": agent})
            body = conn.getresponse().read()
            assert indented(body) if pretty else compact(body)
    finally:
        conn.close()


def test_custom_resources_and_their_scale_are_indented(kp):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.pretty.example.com"},
           "spec": {"group": "pretty.example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "subresources": {"scale": {"specReplicasPath": ".spec.replicas",
                                                             "statusReplicasPath": ".status.replicas"}},
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}}
    code, _, _ = call(kp, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json.dumps(crd).encode(),
                      {"Content-Type": "application/json"})
    assert code == 201
    base = "/apis/pretty.example.com/v1/namespaces/pp/widgets"
    widget = json.dumps({"apiVersion": "pretty.example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                         "spec": {"replicas": 2}}).encode()
    deadline = time.monotonic() + 30
    while (code := call(kp, "POST", base, widget, {"Content-Type": "application/json"})[0]) == 404 \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert code == 201
    for path in (f"{base}/w", base, f"{base}/w/scale", "/apis/pretty.example.com/v1"):
        code, headers, body = call(kp, "GET", path, headers={"User-Agent": CURL})
        assert code == 200 and indented(body) and int(headers["Content-Length"]) == len(body), (path, body[-20:])
        assert compact(call(kp, "GET", path)[2])
    assert json.loads(call(kp, "GET", f"{base}/w/scale?pretty=true")[2])["spec"] == {"replicas": 2}
