"""Hostile or out-of-range client input against a real kplane: every answer is the upstream 4xx
Status, the server stays up and bounded, and credentials tied to deleted objects stop working."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from typing import Any

import pytest

from kplane.testing import KplaneProcess

NS = "hostile"


def call(kp: KplaneProcess, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
         content_type: str = "application/json", token: str | None = None) -> tuple[int, Any]:
    pki = kp.data_dir / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    if token is None:
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    else:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPSConnection("127.0.0.1", int(kp.url.rsplit(":", 1)[1]), context=ctx, timeout=30)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if not resp.getheader("Content-Type", "").startswith("application/json"):
            return resp.status, data
        return resp.status, json.loads(data)
    finally:
        conn.close()


@pytest.fixture(scope="module", autouse=True)
def namespace(kp: KplaneProcess) -> None:
    status, _ = call(kp, "POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    assert status == 201


def test_out_of_range_limit_is_a_bad_request(kp: KplaneProcess) -> None:
    status, body = call(kp, "GET", f"/api/v1/namespaces/{NS}/configmaps?limit=99999999999999999999999")
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"] == 'strconv.ParseInt: parsing "99999999999999999999999": value out of range'
    status, body = call(kp, "GET", f"/api/v1/namespaces/{NS}/configmaps?limit=ten")
    assert (status, body["message"]) == (400, 'strconv.ParseInt: parsing "ten": invalid syntax')
    status, _ = call(kp, "GET", f"/api/v1/namespaces/{NS}/configmaps?limit=9223372036854775807")
    assert status == 200


def test_alias_bomb_and_copy_bomb_are_refused_quickly(kp: KplaneProcess) -> None:
    doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\n"
    doc += 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, 12):
        doc += f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]\n"
    started = time.monotonic()
    status, body = call(kp, "POST", f"/api/v1/namespaces/{NS}/configmaps", raw=doc.encode(),
                        content_type="application/yaml")
    assert (status, body["message"]) == (400, "error decoding YAML: yaml: document contains excessive aliasing")
    status, _ = call(kp, "POST", f"/api/v1/namespaces/{NS}/configmaps",
                     {"metadata": {"name": "target"}, "data": {"a": "x" * 1000}})
    assert status == 201
    ops = [{"op": "copy", "from": "/data", "path": "/metadata/annotations"}]
    ops += [{"op": "copy", "from": "/metadata/annotations", "path": f"/metadata/annotations/n{i}"} for i in range(40)]
    status, body = call(kp, "PATCH", f"/api/v1/namespaces/{NS}/configmaps/target", ops,
                        content_type="application/json-patch+json")
    assert status == 422
    assert "exceeding the limit 3145728" in body["details"]["causes"][0]["message"]
    assert time.monotonic() - started < 10
    assert call(kp, "GET", "/readyz") == (200, b"ok")


def test_token_bound_to_a_secret_dies_with_the_secret(kp: KplaneProcess) -> None:
    assert call(kp, "POST", f"/api/v1/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "bound"}})[0] == 201
    status, secret = call(kp, "POST", f"/api/v1/namespaces/{NS}/secrets",
                          {"metadata": {"name": "anchor"}, "stringData": {"k": "v"}})
    assert status == 201
    status, review = call(kp, "POST", f"/api/v1/namespaces/{NS}/serviceaccounts/bound/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "anchor",
                                    "uid": secret["metadata"]["uid"]}}})
    assert status == 201
    token = review["status"]["token"]
    whoami = ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
              {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    status, body = call(kp, *whoami, token=token)
    assert status == 201 and body["status"]["userInfo"]["username"] == f"system:serviceaccount:{NS}:bound"
    assert call(kp, "DELETE", f"/api/v1/namespaces/{NS}/secrets/anchor")[0] == 200
    deadline = time.monotonic() + 5
    while (status := call(kp, *whoami, token=token)[0]) != 401 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 401
    # A Secret of the same name is another object: the token stays dead.
    assert call(kp, "POST", f"/api/v1/namespaces/{NS}/secrets", {"metadata": {"name": "anchor"}})[0] == 201
    time.sleep(0.5)
    assert call(kp, *whoami, token=token)[0] == 401
