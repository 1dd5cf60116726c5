"""kubectl's client-side validation reads /openapi/v2 as gnostic protobuf: `kubectl apply -f` of a
`kind: List` manifest validates every item against it."""

from __future__ import annotations

import json
import ssl
import urllib.request

from kplane.testing import KplaneProcess

PROTO = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def config_map(name: str, **extra: object) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": {"k": name}, **extra}


def as_list(*items: dict) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)})


def get(kp: KplaneProcess, path: str, accept: str) -> tuple[int, dict[str, str], bytes]:
    pki = kp.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    req = urllib.request.Request(kp.url + path, headers={"Accept": accept})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        return resp.status, dict(resp.headers), resp.read()


def test_openapi_v2_negotiates_protobuf(kp):
    status, headers, body = get(kp, "/openapi/v2", PROTO)
    assert status == 200
    assert headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert body[:5] == b"\x0a\x032.0"  # Document.swagger (field 1) = "2.0"
    _, json_headers, json_body = get(kp, "/openapi/v2", "application/json")
    assert json_headers["Content-Type"].startswith("application/json") and json.loads(json_body)["swagger"] == "2.0"
    assert json_headers["ETag"] == headers["ETag"] and headers["Vary"] == "Accept"


def test_apply_list_validates_with_default_validation(kubectl):
    out = kubectl("apply", "-f", "-", input=as_list(config_map("listed-a"), config_map("listed-b")))
    assert "configmap/listed-a created" in out and "configmap/listed-b created" in out
    got = kubectl.json("get", "configmap", "listed-a", "listed-b", "-n", "default")
    assert [(i["metadata"]["name"], i["data"]) for i in got["items"]] == [
        ("listed-a", {"k": "listed-a"}), ("listed-b", {"k": "listed-b"})]


def test_apply_list_strict_rejects_unknown_field_client_side(kubectl):
    manifest = as_list(config_map("strict-ok"), config_map("strict-bad", bogus=1))
    proc = kubectl.run("apply", "--validate=strict", "-f", "-", input=manifest, check=False)
    assert proc.returncode != 0
    assert 'error validating data: ValidationError(ConfigMap): unknown field "bogus" in ' \
           'io.k8s.api.core.v1.ConfigMap' in proc.stderr, proc.stderr
    assert "proto:" not in proc.stderr
    # client-side validation fails before anything is sent
    missing = kubectl.run("get", "configmap", "strict-ok", "-n", "default", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    # wrong types are caught too, from the same document
    wrong = as_list(config_map("typed", metadata={"name": "typed", "namespace": "default", "labels": ["x"]}))
    proc = kubectl.run("apply", "-f", "-", input=wrong, check=False)
    assert proc.returncode != 0
    assert "ValidationError(ConfigMap.metadata.labels): invalid type for " \
           "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta.labels" in proc.stderr, proc.stderr
