"""The core API end to end: a real `kplane serve`, the real kubectl and the
official kubernetes Python client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from kplane.testing import KplaneProcess, Kubectl


@pytest.fixture(scope="module")
def api(kp):
    return k8s_config.new_client_from_config(config_file=kp.kubeconfig)


def admin_ssl(kp):
    import ssl

    pki = kp.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def apply(kubectl: Kubectl, manifest: dict, *args: str) -> str:
    return kubectl("apply", "-f", "-", *args, input=json.dumps(manifest))


def test_default_namespaces_and_version(kubectl):
    names = kubectl("get", "ns", "-o", "jsonpath={.items[*].metadata.name}").split()
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= set(names)
    version = json.loads(kubectl("version", "-o", "json"))
    assert version["serverVersion"]["major"] == "1"


def test_create_get_and_typed_client(kubectl, api):
    kubectl("create", "namespace", "demo")
    kubectl("-n", "demo", "create", "configmap", "app", "--from-literal=a=1")
    core = k8s.CoreV1Api(api)
    cm = core.read_namespaced_config_map("app", "demo")
    assert cm.data == {"a": "1"}
    assert cm.metadata.uid and cm.metadata.creation_timestamp and int(cm.metadata.resource_version) > 0
    table = kubectl("-n", "demo", "get", "configmap", "app")
    assert table.split("\n")[0].split() == ["NAME", "DATA", "AGE"]
    assert table.split("\n")[1].split()[:2] == ["app", "1"]


def test_generate_name_and_already_exists(api):
    core = k8s.CoreV1Api(api)
    body = {"metadata": {"generateName": "gen-"}, "data": {"x": "y"}}
    created = core.create_namespaced_config_map("default", body)
    assert created.metadata.name.startswith("gen-") and len(created.metadata.name) == len("gen-") + 5
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("default", {"metadata": {"name": created.metadata.name}})
    assert e.value.status == 409
    status = json.loads(e.value.body)
    assert status["reason"] == "AlreadyExists" and status["kind"] == "Status"


def test_apply_client_side_and_server_side(kubectl, api):
    manifest = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "applied", "namespace": "default", "labels": {"tier": "web"}},
                "data": {"a": "1"}}
    assert "created" in apply(kubectl, manifest)
    manifest["data"]["b"] = "2"
    assert "configured" in apply(kubectl, manifest)
    ssa = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "namespace": "default"},
           "data": {"k": "v"}}
    assert "serverside-applied" in apply(kubectl, ssa, "--server-side")
    obj = json.loads(kubectl("get", "cm", "ssa", "-o", "json", "--show-managed-fields"))
    managers = {m["manager"]: m for m in obj["metadata"]["managedFields"]}
    assert managers["kubectl"]["operation"] == "Apply"
    assert "f:k" in managers["kubectl"]["fieldsV1"]["f:data"]
    # A different manager setting the same field to another value conflicts (409) unless forced.
    other = dict(ssa, data={"k": "other"})
    proc = kubectl.run("apply", "-f", "-", "--server-side", "--field-manager=other", input=json.dumps(other),
                       check=False)
    assert proc.returncode != 0 and "conflict" in proc.stderr.lower()
    apply(kubectl, other, "--server-side", "--field-manager=other", "--force-conflicts")
    assert json.loads(kubectl("get", "cm", "ssa", "-o", "json"))["data"] == {"k": "other"}


def test_switching_from_client_side_to_server_side_apply(kubectl):
    """Upstream's documented upgrade: kubectl apply, then kubectl apply --server-side with a changed
    manifest takes over what the last-applied configuration names, without conflicts."""
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "csa-to-ssa", "namespace": "default"},
                "data": {"a": "1", "b": "x"}}
    apply(kubectl, manifest)
    manifest["data"]["a"] = "2"
    out = apply(kubectl, manifest, "--server-side")
    assert "serverside-applied" in out
    got = kubectl.json("get", "cm", "csa-to-ssa", "--show-managed-fields")
    assert got["data"] == {"a": "2", "b": "x"}
    last = json.loads(got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["data"] == {"a": "2", "b": "x"}  # rewritten to what was applied
    owners = {m["manager"]: m for m in got["metadata"]["managedFields"]}
    assert "f:a" in owners["kubectl"]["fieldsV1"]["f:data"]
    # Another manager's change since the client-side apply still conflicts.
    kubectl("patch", "cm", "csa-to-ssa", "--type=merge", "-p", '{"data":{"b":"changed"}}')
    manifest["data"]["b"] = "y"
    r = kubectl.run("apply", "--server-side", "-f", "-", input=json.dumps(manifest), check=False)
    assert r.returncode != 0 and "conflict" in r.stderr


def test_server_side_apply_of_a_service_port_without_protocol(kubectl):
    manifest = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ssa-web", "namespace": "default"},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
    apply(kubectl, manifest, "--server-side")
    apply(kubectl, manifest, "--server-side")  # finds the stored port (with its defaulted protocol) again
    svc = kubectl.json("get", "svc", "ssa-web", "--show-managed-fields")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]
    fields = next(m["fieldsV1"] for m in svc["metadata"]["managedFields"] if m["manager"] == "kubectl")
    assert 'k:{"port":80,"protocol":"TCP"}' in fields["f:spec"]["f:ports"]


def test_patch_types(kubectl):
    kubectl("create", "configmap", "patched", "--from-literal=a=1")
    kubectl("patch", "cm", "patched", "-p", '{"data":{"b":"2"}}')
    kubectl("patch", "cm", "patched", "--type=merge", "-p", '{"data":{"c":"3","a":null}}')
    kubectl("patch", "cm", "patched", "--type=json", "-p", '[{"op":"add","path":"/data/d","value":"4"}]')
    data = json.loads(kubectl("get", "cm", "patched", "-o", "jsonpath={.data}"))
    assert data == {"b": "2", "c": "3", "d": "4"}


def test_strategic_merge_patch_uses_merge_keys(kubectl):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}
    apply(kubectl, svc)
    kubectl("patch", "svc", "web", "-p", '{"spec":{"ports":[{"name":"https","port":443}]}}')
    obj = json.loads(kubectl("get", "svc", "web", "-o", "json"))
    assert sorted(p["port"] for p in obj["spec"]["ports"]) == [80, 443]
    assert obj["spec"]["clusterIP"].startswith("10.")
    assert obj["spec"]["ports"][0]["targetPort"] == 80 and obj["spec"]["ports"][0]["protocol"] == "TCP"


def test_cluster_ips_are_unique(api):
    core = k8s.CoreV1Api(api)
    ips = set()
    for i in range(20):
        svc = core.create_namespaced_service("default", {"metadata": {"name": f"s{i}"},
                                                         "spec": {"ports": [{"port": 80}]}})
        ips.add(svc.spec.cluster_ip)
    assert len(ips) == 20
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service("default", {"metadata": {"name": "dup"},
                                                   "spec": {"clusterIP": next(iter(ips)), "ports": [{"port": 80}]}})
    assert e.value.status == 422 and "already allocated" in e.value.body


def test_node_ports_are_allocated_once_and_given_back(kubectl, api):
    core = k8s.CoreV1Api(api)
    kubectl("create", "service", "nodeport", "np1", "--tcp=80:8080")
    first = core.read_namespaced_service("np1", "default").spec.ports[0].node_port
    assert 30000 <= first <= 32767
    assert f"80:{first}/TCP" in kubectl("get", "svc", "np1")
    r = kubectl.run("create", "service", "nodeport", "np2", "--tcp=80:8080", f"--node-port={first}", check=False)
    assert r.returncode != 0
    assert f'"np2" is invalid: spec.ports[0].nodePort: Invalid value: {first}: provided port is already ' \
           "allocated" in r.stderr
    r = kubectl.run("create", "service", "nodeport", "np3", "--tcp=80:8080", "--node-port=20000", check=False)
    assert "provided port is not in the valid range. The range of valid ports is 30000-32767" in r.stderr
    # A LoadBalancer gets node ports too; one kept across an update keeps its number.
    kubectl("create", "service", "loadbalancer", "lb1", "--tcp=443:8443")
    lb_port = core.read_namespaced_service("lb1", "default").spec.ports[0].node_port
    assert 30000 <= lb_port <= 32767 and lb_port != first
    kubectl("patch", "svc", "lb1", "-p", '{"metadata":{"labels":{"x":"y"}}}')
    assert core.read_namespaced_service("lb1", "default").spec.ports[0].node_port == lb_port
    # Back to ClusterIP: the node port goes, and is free again; deletion frees the rest.
    kubectl("patch", "svc", "np1", "-p", '{"spec":{"type":"ClusterIP"}}')
    assert core.read_namespaced_service("np1", "default").spec.ports[0].node_port is None
    kubectl("create", "service", "nodeport", "np4", "--tcp=80:8080", f"--node-port={first}")
    kubectl("delete", "svc", "lb1")
    kubectl("create", "service", "nodeport", "np5", "--tcp=80:8080", f"--node-port={lb_port}")
    kubectl("delete", "svc", "np1", "np4", "np5")


def test_load_balancer_status_goes_with_the_type(kubectl):
    kubectl("create", "service", "loadbalancer", "lb-status", "--tcp=80:8080")
    kubectl("patch", "svc", "lb-status", "--subresource=status", "--type=merge",
            "-p", '{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.7"}]}}}')
    assert "192.0.2.7" in kubectl("get", "svc", "lb-status")
    kubectl("patch", "svc", "lb-status", "--type=merge", "-p", '{"spec":{"type":"ClusterIP"}}')
    svc = kubectl.json("get", "svc", "lb-status")
    assert svc["status"] == {"loadBalancer": {}} and svc["spec"]["type"] == "ClusterIP"
    kubectl("delete", "svc", "lb-status")


def test_replace_with_stale_resource_version_conflicts(kubectl, api):
    core = k8s.CoreV1Api(api)
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "stale"}, "data": {"v": "1"}})
    cm.data = {"v": "2"}
    core.replace_namespaced_config_map("stale", "default", cm)
    cm.data = {"v": "3"}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("stale", "default", cm)
    status = json.loads(e.value.body)
    assert e.value.status == 409 and status["reason"] == "Conflict"
    assert status["message"] == ('Operation cannot be fulfilled on configmaps "stale": the object has been '
                                 'modified; please apply your changes to the latest version and try again')
    stale = json.loads(kubectl("get", "cm", "stale", "-o", "json"))
    stale["metadata"]["resourceVersion"] = "1"
    proc = kubectl.run("replace", "-f", "-", input=json.dumps(stale), check=False)
    assert proc.returncode != 0 and "the object has been modified" in proc.stderr


def test_label_selectors_and_field_selectors(kubectl):
    for name, tier in (("sel-a", "web"), ("sel-b", "db"), ("sel-c", "web")):
        apply(kubectl, {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "namespace": "default", "labels": {"layer": tier}}})
    def names(*a: str) -> list[str]:
        return kubectl("get", "cm", *a, "-o", "jsonpath={.items[*].metadata.name}").split()

    assert names("-l", "layer=web") == ["sel-a", "sel-c"]
    assert names("-l", "layer!=web,layer") == ["sel-b"]
    assert names("-l", "layer in (db,web)") == ["sel-a", "sel-b", "sel-c"]
    assert names("-l", "layer notin (web),layer") == ["sel-b"]
    assert "sel-a" not in names("-l", "!layer")
    assert names("--field-selector", "metadata.name=sel-b") == ["sel-b"]
    proc = kubectl.run("get", "cm", "--field-selector", "spec.nothing=x", check=False)
    assert proc.returncode != 0 and "field label not supported" in proc.stderr


def test_chunked_list(kubectl, api):
    core = k8s.CoreV1Api(api)
    kubectl("create", "namespace", "chunks")
    for i in range(25):
        core.create_namespaced_config_map("chunks", {"metadata": {"name": f"c{i:02d}"}})
    first = core.list_namespaced_config_map("chunks", limit=10)
    assert len(first.items) == 10 and first.metadata._continue
    second = core.list_namespaced_config_map("chunks", limit=10, _continue=first.metadata._continue)
    third = core.list_namespaced_config_map("chunks", limit=10, _continue=second.metadata._continue)
    names = [o.metadata.name for o in first.items + second.items + third.items]
    assert names == [f"c{i:02d}" for i in range(25)] and not third.metadata._continue
    # remainingItemCount without a selector (a count of keys: none with one), none on the last chunk.
    assert (first.metadata.remaining_item_count, second.metadata.remaining_item_count) == (15, 5)
    assert third.metadata.remaining_item_count is None
    selected = core.list_namespaced_config_map("chunks", limit=10, field_selector="metadata.name!=c00")
    assert selected.metadata._continue and selected.metadata.remaining_item_count is None
    out = kubectl("-n", "chunks", "get", "cm", "--chunk-size=7", "-o", "name", "-v=6", check=False)
    assert out.count("configmap/") == 25


def test_watch_with_kubectl(kp, kubectl):
    kubectl("create", "namespace", "watched")
    proc = subprocess.Popen(["kubectl", "--kubeconfig", kp.kubeconfig, "-n", "watched", "get", "cm", "-w",
                             "--output-watch-events"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        kubectl("-n", "watched", "create", "configmap", "w1")
        kubectl("-n", "watched", "label", "configmap", "w1", "x=y")
        kubectl("-n", "watched", "delete", "configmap", "w1")
        time.sleep(1.0)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    events = [line.split() for line in out.splitlines() if line.strip() and not line.startswith("EVENT")]
    assert [e[0] for e in events if e[1] == "w1"] == ["ADDED", "MODIFIED", "DELETED"], (out, err)


def test_watch_with_python_client_and_bookmarks(api):
    from kubernetes import watch

    core = k8s.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "pywatch"}})
    start = core.list_namespaced_config_map("pywatch").metadata.resource_version
    core.create_namespaced_config_map("pywatch", {"metadata": {"name": "p1"}})
    w = watch.Watch()
    seen = []
    for ev in w.stream(core.list_namespaced_config_map, "pywatch", resource_version=start, timeout_seconds=2,
                       allow_watch_bookmarks=True):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 1:
            w.stop()
    assert seen == [("ADDED", "p1")]


def test_watch_and_table_request_errors_are_clean_statuses(kp):
    import urllib.error
    import urllib.request

    def get(path: str, accept: str = "application/json", timeout: float = 10) -> tuple[int, bytes]:
        req = urllib.request.Request(f"{kp.url}{path}", headers={"Accept": accept})
        try:
            with urllib.request.urlopen(req, context=admin_ssl(kp), timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    # A malformed resourceVersion is refused before the watch starts streaming.
    code, body = get("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=abc")
    assert code == 400 and json.loads(body)["kind"] == "Status"
    # timeoutSeconds=0 asks for no particular timeout: the watch stays open.
    with pytest.raises(TimeoutError):
        get("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0&timeoutSeconds=0", timeout=2)
    # A negative one ends the watch at once (Go's timer); it is an int64, as upstream parses it.
    code, _ = get("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=-1", timeout=5)
    assert code == 200
    code, body = get("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1.5")
    assert code == 400 and 'strconv.ParseInt: parsing "1.5": invalid syntax' in json.loads(body)["message"]
    # A resourceVersion beyond uint64 is malformed (strconv.ParseUint), not a future one (504).
    huge = "99999999999999999999999"
    for path in (f"/api/v1/namespaces/default/configmaps?resourceVersion={huge}",
                 f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={huge}"):
        code, body = get(path)
        assert code == 400 and f'invalid resource version "{huge}"' in json.loads(body)["message"], path
    table = "application/json;as=Table;v=v1;g=meta.k8s.io"
    code, body = get("/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
                     "?includeObject=Object", table)
    assert code == 200 and json.loads(body)["rows"][0]["object"]["kind"] == "ConfigMap"
    code, body = get("/api/v1/namespaces/default/configmaps?includeObject=bogus", table)
    assert code == 400 and "includeObject: Invalid value: \"bogus\"" in json.loads(body)["message"]
    # Only conversions the server does not make: 406 NotAcceptable, as upstream (no silent fallback).
    for accept in ("application/json;as=Foo;v=v1;g=meta.k8s.io", "application/json;as=Table;v=v2;g=meta.k8s.io"):
        code, body = get("/api/v1/namespaces/default/configmaps", accept)
        assert code == 406 and json.loads(body)["reason"] == "NotAcceptable", accept
    code, _ = get("/api/v1/namespaces/default/configmaps",
                  "application/json;as=Foo;v=v1;g=meta.k8s.io, application/json")
    assert code == 200


def test_openapi_v3_documents_cache_as_upstream(kp, kubectl):
    import urllib.error
    import urllib.request

    index = json.loads(kubectl("get", "--raw", "/openapi/v3"))
    url = index["paths"]["api/v1"]["serverRelativeURL"]
    doc_hash = url.split("hash=")[1]

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kw):  # type: ignore[no-untyped-def]
            return None

    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=admin_ssl(kp)))

    def get(path: str, **headers: str) -> tuple[int, Any]:
        try:
            with opener.open(urllib.request.Request(f"{kp.url}{path}", headers=headers), timeout=10) as resp:
                return resp.status, resp.headers
        except urllib.error.HTTPError as e:
            return e.code, e.headers

    code, headers = get(url)
    assert code == 200 and headers["Etag"] == f'"{doc_hash}"' and headers["Cache-Control"] == "public, immutable"
    assert headers["Expires"]
    assert get("/openapi/v3/api/v1", **{"If-None-Match": f'"{doc_hash}"'})[0] == 304
    code, headers = get("/openapi/v3/api/v1?hash=0BSOLETE")
    assert code == 301 and headers["Location"] == url
    assert get("/openapi/v3/api/v1", Accept="application/xml")[0] == 406


def test_api_answers_are_not_for_shared_caches(kp):
    import urllib.error
    import urllib.request

    for path in ("/api/v1/namespaces/default/configmaps", "/api/v1/namespaces/default/secrets/absent", "/api"):
        req = urllib.request.Request(f"{kp.url}{path}", headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=admin_ssl(kp), timeout=10) as resp:
                headers = resp.headers
        except urllib.error.HTTPError as e:
            headers = e.headers
        assert headers["Cache-Control"] == "no-cache, private", path
        assert headers["X-Content-Type-Options"] == "nosniff", path


def test_watch_too_old_resource_version_is_gone(kp, api):
    import urllib.request

    core = k8s.CoreV1Api(api)
    resp = core.list_namespaced_config_map("default", resource_version="1", watch=True, timeout_seconds=2,
                                           _preload_content=False)
    first = json.loads(resp.readline())
    # Revision 1 is still in history (no compaction yet): replay works and starts at revision > 1.
    assert first["type"] in ("ADDED", "MODIFIED", "DELETED")
    del urllib


def test_api_resources_and_explain(kubectl):
    out = kubectl("api-resources")
    for res in ("configmaps", "secrets", "services", "endpoints", "namespaces", "serviceaccounts", "events",
                "endpointslices", "leases"):
        assert res in out
    explain = kubectl("explain", "configmap.data")
    assert "FIELD: data" in explain and "map[string]string" in explain
    # TokenRequest is a subresource of a named ServiceAccount in the published paths too.
    for doc in (json.loads(kubectl("get", "--raw", "/openapi/v3/api/v1")),
                json.loads(kubectl("get", "--raw", "/openapi/v2"))):
        paths = doc["paths"]
        token = paths["/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"]["post"]
        assert token["operationId"] == "createCoreV1NamespacedServiceAccountToken"
        assert "/api/v1/namespaces/{namespace}/serviceaccounts/token" not in paths


def test_unknown_fields_strict_and_warn(kubectl):
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "strict", "namespace": "default"},
           "data": {"a": "1"}, "bogus": True}
    proc = kubectl.run("apply", "-f", "-", "--validate=strict", input=json.dumps(bad), check=False)
    assert proc.returncode != 0 and 'unknown field "bogus"' in proc.stderr
    proc = kubectl.run("create", "-f", "-", "--validate=strict", input=json.dumps(bad), check=False)
    assert 'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field ' \
           '"bogus"' in proc.stderr, proc.stderr
    proc = kubectl.run("apply", "-f", "-", "--validate=warn", input=json.dumps(bad), check=False)
    assert proc.returncode == 0 and 'unknown field "bogus"' in proc.stderr


def test_bad_names_are_invalid(api):
    core = k8s.CoreV1Api(api)
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("default", {"metadata": {"name": "Bad_Name"}})
    status = json.loads(e.value.body)
    assert e.value.status == 422 and status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "metadata.name"
    with pytest.raises(ApiException) as e:
        core.create_namespace({"metadata": {"name": "a.b"}})  # namespaces are DNS-1123 labels
    assert e.value.status == 422


def test_malformed_json_and_oversized_bodies(kp, api):
    core = k8s.CoreV1Api(api)
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{kp.url}/api/v1/namespaces/default/configmaps", data=b"{not json",
                                 method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as he:
        urllib.request.urlopen(req, context=admin_ssl(kp))
    assert he.value.code == 400 and json.loads(he.value.read())["reason"] == "BadRequest"
    big = {"metadata": {"name": "big"}, "data": {"x": "a" * (3 * 1024 * 1024 + 10)}}
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("default", big)
    assert e.value.status == 413
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("big", "default")


def test_large_answers_are_gzipped_for_clients_that_accept_it(kp, kubectl, api):
    import gzip
    import urllib.request

    core = k8s.CoreV1Api(api)
    kubectl("create", "namespace", "bulky")
    for i in range(40):
        core.create_namespaced_config_map("bulky", {"metadata": {"name": f"b{i:02d}"}, "data": {"x": f"{i}" * 4000}})
    url = f"{kp.url}/api/v1/namespaces/bulky/configmaps"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept-Encoding": "gzip"}),
                                context=admin_ssl(kp)) as resp:
        assert resp.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in resp.headers["Vary"]
        listed = json.loads(gzip.decompress(resp.read()))
    assert len(listed["items"]) == 40
    with urllib.request.urlopen(urllib.request.Request(url), context=admin_ssl(kp)) as resp:
        assert resp.headers.get("Content-Encoding") is None and len(json.loads(resp.read())["items"]) == 40
    small = urllib.request.Request(f"{url}/b00", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(small, context=admin_ssl(kp)) as resp:  # under 128 KiB: as it is
        assert resp.headers.get("Content-Encoding") is None
    assert kubectl("-n", "bulky", "get", "cm", "-o", "name").count("configmap/") == 40


def test_dry_run_writes_nothing(kubectl):
    kubectl("create", "configmap", "dry", "--from-literal=a=1", "--dry-run=server")
    proc = kubectl.run("get", "cm", "dry", check=False)
    assert proc.returncode != 0 and "NotFound" in proc.stderr


def test_dry_run_delete_deletes_nothing(kp, kubectl, api):
    """kubectl and the Python client say dryRun in the DeleteOptions body, not in the query."""
    core = k8s.CoreV1Api(api)
    kubectl("create", "namespace", "drydel")
    kubectl("-n", "drydel", "create", "configmap", "keep", "--from-literal=a=1")
    out = kubectl("-n", "drydel", "delete", "cm", "--all", "--dry-run=server")
    assert "server dry run" in out
    core.delete_namespaced_config_map("keep", "drydel", body=k8s.V1DeleteOptions(dry_run=["All"]))
    kubectl("delete", "namespace", "drydel", "--dry-run=server")
    assert core.read_namespaced_config_map("keep", "drydel").data == {"a": "1"}
    assert core.read_namespace("drydel").status.phase == "Active"
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map("keep", "drydel", body=k8s.V1DeleteOptions(dry_run=["Some"]))
    assert e.value.status == 422 and json.loads(e.value.body)["details"]["kind"] == "DeleteOptions"
    # gracePeriodSeconds is an int64, in the query and in the body: anything else is a 400.
    proc = kubectl.run("delete", "--raw", "/api/v1/namespaces/drydel/configmaps/keep?gracePeriodSeconds=1e99",
                       check=False)
    assert proc.returncode != 0 and 'strconv.ParseInt: parsing "1e99": invalid syntax' in proc.stderr
    req = urllib.request.Request(f"{kp.url}/api/v1/namespaces/drydel/configmaps/keep", method="DELETE",
                                 data=b'{"gracePeriodSeconds": "30"}', headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as http_error:
        urllib.request.urlopen(req, context=admin_ssl(kp), timeout=10)
    assert http_error.value.code == 400
    assert "cannot unmarshal string into Go struct field DeleteOptions" in http_error.value.read().decode()
    assert core.read_namespaced_config_map("keep", "drydel").data == {"a": "1"}


def test_orphan_dependents_option_orphans(kubectl, api):
    core = k8s.CoreV1Api(api)
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "orphan-owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "orphan-owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map("default", {"metadata": {"name": "orphan-dep", "ownerReferences": [ref]}})
    core.delete_namespaced_config_map("orphan-owner", "default",
                                      body=k8s.V1DeleteOptions(orphan_dependents=True))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dep = core.read_namespaced_config_map("orphan-dep", "default")
        if not dep.metadata.owner_references:
            break
        time.sleep(0.1)
    assert not dep.metadata.owner_references  # orphaned: kept, its reference to the owner removed
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map("orphan-dep", "default", body=k8s.V1DeleteOptions(
            orphan_dependents=True, propagation_policy="Background"))
    assert e.value.status == 422
    assert "orphanDependents and deletionPropagation cannot be both set" in json.loads(e.value.body)["message"]


def test_namespaces_have_no_deletecollection(kp, kubectl):
    resources = json.loads(kubectl("get", "--raw", "/api/v1"))["resources"]
    verbs = next(r["verbs"] for r in resources if r["name"] == "namespaces")
    assert "deletecollection" not in verbs and "delete" in verbs
    proc = kubectl.run("delete", "--raw", "/api/v1/namespaces?labelSelector=nobody%3D1", check=False)
    assert proc.returncode != 0 and "the server does not allow this method" in proc.stderr, proc.stderr


def test_list_and_watch_option_validation(api):
    core = k8s.CoreV1Api(api)
    # What client-go's reflector sends first (watch-list): no resourceVersion, a consistent read.
    resp = core.list_namespaced_config_map("default", watch=True, send_initial_events=True,
                                           resource_version_match="NotOlderThan", allow_watch_bookmarks=True,
                                           timeout_seconds=5, _preload_content=False)
    events = []
    for line in resp:
        events.append(json.loads(line))
        if events[-1]["type"] == "BOOKMARK":
            break
    resp.close()
    bookmark = events[-1]["object"]["metadata"]
    assert bookmark["annotations"]["k8s.io/initial-events-end"] == "true"
    for kwargs, text in (
            ({"resource_version_match": "NotOlderThan"}, "resourceVersionMatch is forbidden unless resourceVersion"),
            ({"resource_version_match": "Exact", "resource_version": "0"}, 'forbidden for resourceVersion "0"'),
            ({"send_initial_events": True}, "sendInitialEvents is forbidden for list"),
            ({"watch": True, "resource_version_match": "NotOlderThan"},
             "forbidden for watch unless sendInitialEvents is provided")):
        with pytest.raises(ApiException) as e:
            core.list_namespaced_config_map("default", **kwargs)
        body = json.loads(e.value.body)
        assert e.value.status == 422 and body["reason"] == "Invalid", kwargs
        assert body["message"].startswith('ListOptions.meta.k8s.io "" is invalid') and text in body["message"]
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map("default", _continue="abc", resource_version="5")
    assert e.value.status == 400


def test_secrets_fold_string_data(kubectl):
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default"},
                "stringData": {"password": "hunter2"}}
    apply(kubectl, manifest)
    obj = json.loads(kubectl("get", "secret", "creds", "-o", "json"))
    assert obj["data"] == {"password": "aHVudGVyMg=="} and obj["type"] == "Opaque" and "stringData" not in obj


def test_finalizers_hold_deletion(kubectl, api):
    core = k8s.CoreV1Api(api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "held", "finalizers": ["example.com/x"]}})
    kubectl("delete", "cm", "held", "--wait=false")
    held = core.read_namespaced_config_map("held", "default")
    assert held.metadata.deletion_timestamp is not None
    kubectl("patch", "cm", "held", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("held", "default")
    assert e.value.status == 404


def test_namespace_deletion_removes_content(kubectl, api):
    core = k8s.CoreV1Api(api)
    kubectl("create", "namespace", "doomed")
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "x"}})
    core.create_namespaced_secret("doomed", {"metadata": {"name": "y"}})
    kubectl("delete", "namespace", "doomed", "--timeout=30s")
    with pytest.raises(ApiException) as e:
        core.read_namespace("doomed")
    assert e.value.status == 404
    assert core.list_namespaced_config_map("doomed").items == []


def test_create_in_a_terminating_namespace_is_forbidden(kubectl, api):
    core = k8s.CoreV1Api(api)
    kubectl("create", "namespace", "closing")
    core.create_namespaced_config_map("closing", {"metadata": {"name": "held", "finalizers": ["example.com/x"]}})
    kubectl("delete", "namespace", "closing", "--wait=false")
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("closing", {"metadata": {"name": "late"}})
    status = json.loads(e.value.body)
    assert e.value.status == 403 and status["reason"] == "Forbidden"
    assert status["message"] == ('configmaps "late" is forbidden: unable to create new content in namespace '
                                 "closing because it is being terminated")
    assert status["details"]["name"] == "late" and status["details"]["kind"] == "configmaps"
    assert status["details"]["causes"][0]["reason"] == "NamespaceTerminating"
    # The namespace says what it waits for, as upstream's namespace controller reports it.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        conditions = {c["type"]: c for c in kubectl.json("get", "ns", "closing")["status"].get("conditions") or []}
        if conditions.get("NamespaceFinalizersRemaining", {}).get("status") == "True":
            break
        time.sleep(0.2)
    assert conditions["NamespaceContentRemaining"]["message"] == \
        "Some resources are remaining: configmaps. has 1 resource instances"
    assert conditions["NamespaceFinalizersRemaining"]["message"] == \
        "Some content in the namespace has finalizers remaining: example.com/x in 1 resource instances"
    assert conditions["NamespaceDeletionDiscoveryFailure"]["status"] == "False"
    kubectl("-n", "closing", "patch", "cm", "held", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    kubectl("wait", "--for=delete", "namespace/closing", "--timeout=30s")


def test_create_in_missing_namespace_is_not_found(api):
    core = k8s.CoreV1Api(api)
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("nope", {"metadata": {"name": "x"}})
    assert e.value.status == 404 and json.loads(e.value.body)["message"] == 'namespaces "nope" not found'


def test_health_endpoints(kp, kubectl):
    assert kubectl("get", "--raw", "/readyz") == "ok"
    verbose = kubectl("get", "--raw", "/livez?verbose")
    assert "[+]ping ok" in verbose and "livez check passed" in verbose


def test_unauthenticated_is_refused(kp):
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(kp.data_dir / "pki" / "ca.crt"))
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{kp.url}/api/v1/namespaces/default/configmaps", context=ctx)
    assert e.value.code in (401, 403)
    assert json.loads(e.value.read())["kind"] == "Status"


def test_restart_keeps_data_and_resource_versions(kp, kubectl, api):
    core = k8s.CoreV1Api(api)
    before = core.create_namespaced_config_map("default", {"metadata": {"name": "survivor"}, "data": {"a": "1"}})
    kp.restart()
    after = core.read_namespaced_config_map("survivor", "default")
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.metadata.uid == before.metadata.uid
    created = core.create_namespaced_config_map("default", {"metadata": {"name": "after-restart"}})
    assert int(created.metadata.resource_version) > int(before.metadata.resource_version)


def test_tls_cert_flags_replace_the_bootstrapped_serving_cert(tmp_path):
    import ssl
    import urllib.request

    from kplane.extension.certs import ensure_serving_certs

    certs = ensure_serving_certs(tmp_path, ["127.0.0.1"], ca_cn="my-own-ca")
    with KplaneProcess(extra_args=["--tls-cert-file", str(certs.cert_file),
                                   "--tls-private-key-file", str(certs.key_file)]) as kp:
        ctx = ssl.create_default_context(cadata=certs.ca_bundle.decode())
        with urllib.request.urlopen(f"{kp.url}/version", context=ctx) as resp:
            assert json.loads(resp.read())["major"] == "1"


def test_wrong_json_types_are_a_decoding_error(kp, api):
    """Built-in types decode as Go structs upstream: a number where a string belongs is a 400, not stored."""
    import urllib.error
    import urllib.request

    def post(path: str, body: dict) -> tuple[int, dict]:
        req = urllib.request.Request(f"{kp.url}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, context=admin_ssl(kp))
        return e.value.code, json.loads(e.value.read())

    code, status = post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "typed"}, "data": {"x": 2}})
    assert code == 400 and status["reason"] == "BadRequest"
    assert status["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot '
                                 'unmarshal number into Go struct field ConfigMap.data of type string')
    with pytest.raises(ApiException) as e:
        k8s.CoreV1Api(api).read_namespaced_config_map("typed", "default")
    assert e.value.status == 404
    code, status = post("/api/v1/namespaces/default/services",
                        {"metadata": {"name": "typed"}, "spec": {"ports": [{"port": "80"}]}})
    assert code == 400 and "of type int32" in status["message"]


def test_events_expire_after_event_ttl_on_sqlite():
    """--event-ttl with the SQLite store: an Event is deleted that long after its last write
    (watchers see DELETED), as etcd's lease deletes it upstream; other objects stay."""
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "short-lived", "namespace": "default"},
        "involvedObject": {"kind": "ConfigMap", "namespace": "default", "name": "cm"},
        "reason": "Testing", "message": "expires soon", "type": "Normal",
    }
    with KplaneProcess(extra_args=["--event-ttl", "2s"]) as kp:
        kubectl = Kubectl(kp.kubeconfig)
        kubectl("create", "configmap", "cm", "-n", "default")
        kubectl("create", "-f", "-", input=json.dumps(event))
        template = 'jsonpath={.type} {.object.metadata.name}{"\\n"}'
        watch = subprocess.Popen(["kubectl", "--kubeconfig", kp.kubeconfig, "get", "events", "-n", "default",
                                  "-w", "--output-watch-events", "-o", template],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert kubectl.json("get", "event", "short-lived", "-n", "default")["reason"] == "Testing"
            deadline = time.monotonic() + 15
            while kubectl.run("get", "event", "short-lived", "-n", "default", check=False).returncode == 0:
                assert time.monotonic() < deadline, "the event outlived --event-ttl"
                time.sleep(0.5)
            assert kubectl.json("get", "configmap", "cm", "-n", "default")["metadata"]["name"] == "cm"
        finally:
            watch.terminate()
        out, _ = watch.communicate(timeout=10)
        assert "DELETED short-lived" in out.splitlines()


def test_request_metrics_on_metrics_endpoint(kubectl):
    """apiserver_request_total / _duration_seconds / longrunning_requests as kube-apiserver
    exposes them, for what kubectl just did."""
    kubectl("create", "namespace", "metrics-demo")
    kubectl("-n", "metrics-demo", "create", "configmap", "m", "--from-literal=a=1")
    kubectl("-n", "metrics-demo", "get", "configmap", "m")
    kubectl("-n", "metrics-demo", "get", "configmaps")
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "namespace": "metrics-demo"},
                "data": {"a": "2"}}
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(manifest))
    kubectl("-n", "metrics-demo", "get", "configmap", "absent", check=False)
    watch = subprocess.Popen(["kubectl", "--kubeconfig", kubectl.kubeconfig, "-n", "metrics-demo", "get",
                              "configmaps", "-w"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        common = 'group="",version="v1",resource="configmaps",subresource="",'
        deadline = time.monotonic() + 15
        while True:
            text = kubectl("get", "--raw", "/metrics")
            if f'apiserver_longrunning_requests{{verb="WATCH",{common}scope="namespace",component="apiserver"}} 1' \
                    in text:
                break
            assert time.monotonic() < deadline, "the open watch is not in apiserver_longrunning_requests"
            time.sleep(0.3)
    finally:
        watch.terminate()
        watch.wait(10)
    # The watcher is gone: its watch ends within seconds although no event comes (a quiet
    # resource), not at the next event or its timeout.
    deadline = time.monotonic() + 10
    while f'apiserver_longrunning_requests{{verb="WATCH",{common}scope="namespace",component="apiserver"}} 0' \
            not in kubectl("get", "--raw", "/metrics"):
        assert time.monotonic() < deadline, "the abandoned watch is still open"
        time.sleep(0.3)
    counters = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("apiserver_request_total{")}

    def count(verb: str, scope: str, code: int) -> int:
        return counters.get(f'apiserver_request_total{{verb="{verb}",dry_run="",{common}scope="{scope}",'
                            f'component="apiserver",code="{code}"}}', 0)

    assert count("POST", "resource", 201) >= 1
    assert count("GET", "resource", 200) >= 1 and count("GET", "resource", 404) >= 1
    assert count("LIST", "namespace", 200) >= 1
    assert count("APPLY", "resource", 200) >= 1
    assert 'apiserver_request_duration_seconds_count{verb="POST",dry_run="",' + common in text
    storage = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("apiserver_storage_objects{")}
    namespaces = len(kubectl.json("get", "namespaces")["items"])
    assert storage['apiserver_storage_objects{resource="namespaces"}'] == namespaces
    apiservices = len(kubectl.json("get", "apiservices")["items"])
    assert storage['apiserver_storage_objects{resource="apiservices.apiregistration.k8s.io"}'] == apiservices


def test_second_server_on_the_same_data_dir_is_refused(kp):
    """As etcd locks its data dir: a second `kplane serve` on a data dir in use exits with a clear
    message instead of writing revisions the first one also hands out."""
    from kplane.testing import free_port

    proc = subprocess.run([sys.executable, "-m", "kplane", "serve", "--data-dir", str(kp.data_dir),
                           "--secure-port", str(free_port()), "--bind-address", "127.0.0.1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert f"{kp.data_dir} is in use by another kplane serve" in proc.stderr
    assert kp.proc.poll() is None  # the first one is untouched
