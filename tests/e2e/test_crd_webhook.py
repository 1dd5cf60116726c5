"""CRD conversion webhooks end to end: a real ConversionReview webhook (aiohttp over TLS with its own CA,
addressed by a Service + Endpoints on 127.0.0.1, then by url) converting between v1 and v2 with a field
rename, against a `kplane serve` subprocess driven by kubectl and the official python client."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kplane.controlplane import pki
from kplane.testing import KplaneProcess, Kubectl, free_port

GROUP = "conv.example.com"
CRD_NAME = f"widgets.{GROUP}"
SERVICE = "conv-webhook"


def _schema(field: str) -> dict:
    return {"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {field: {"type": "string"}, "color": {"type": "string"}}}}}}


def crd(client_config: dict) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": _schema("size")},
                         {"name": "v2", "served": True, "storage": False, "schema": _schema("dimension")}],
            "conversion": {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
                                                              "clientConfig": client_config}},
        },
    }


# ---- the webhook ---------------------------------------------------------------------------------


def convert(obj: dict, desired: str) -> dict:
    """v1 spec.size <-> v2 spec.dimension; the webhook also adds a label to show it ran."""
    out = json.loads(json.dumps(obj))
    spec = out.setdefault("spec", {})
    if desired.endswith("/v2") and "size" in spec:
        spec["dimension"] = spec.pop("size")
    elif desired.endswith("/v1") and "dimension" in spec:
        spec["size"] = spec.pop("dimension")
    out["apiVersion"] = desired
    out.setdefault("metadata", {}).setdefault("labels", {})["converted-by"] = "webhook"
    return out


class Webhook:
    """An aiohttp TLS conversion webhook on its own event loop in a thread; stop() takes it down."""

    def __init__(self, cert: Path, key: Path, port: int):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.port = port
        self.reviews: list[dict] = []
        self.delay = 0.0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.reviews.append(review)
        if self.delay:
            await asyncio.sleep(self.delay)
        req = review["request"]
        converted = [convert(o, req["desiredAPIVersion"]) for o in req["objects"]]
        return web.json_response({"apiVersion": review["apiVersion"], "kind": "ConversionReview",
                                  "response": {"uid": req["uid"], "result": {"status": "Success"},
                                               "convertedObjects": converted}})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/convert", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ctx).start()

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("webhook-pki")
    ca_pem, ca_key = pki.self_signed_ca("conversion-webhook-ca")
    (d / "ca.crt").write_bytes(ca_pem)
    (d / "ca.key").write_bytes(ca_key)
    cert, key = pki.issue_serving_cert(d / "ca.crt", d / "ca.key",
                                       [f"{SERVICE}.default.svc", "localhost", "127.0.0.1"], cn=SERVICE)
    (d / "tls.crt").write_bytes(cert)
    (d / "tls.key").write_bytes(key)
    return {"ca": d / "ca.crt", "cert": d / "tls.crt", "key": d / "tls.key"}


@pytest.fixture(scope="module")
def webhook(certs: dict[str, Path]) -> Iterator[Webhook]:
    hook = Webhook(certs["cert"], certs["key"], free_port())
    hook.start()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def api(kp: KplaneProcess) -> Any:
    import kubernetes

    return kubernetes.client.CustomObjectsApi(kp.api_client())


@pytest.fixture(scope="module")
def ca_bundle(certs: dict[str, Path]) -> str:
    return base64.b64encode(certs["ca"].read_bytes()).decode()


@pytest.fixture(scope="module")
def widgets(kubectl: Kubectl, webhook: Webhook, ca_bundle: str) -> str:
    """The CRD, its webhook addressed as a Service (port 443 -> the webhook's port on 127.0.0.1)."""
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": "default"},
               "spec": {"ports": [{"name": "https", "port": 443, "targetPort": webhook.port}]}}
    endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": SERVICE, "namespace": "default"},
                 "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": webhook.port}]}]}
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [service, endpoints]}))
    client_config = {"caBundle": ca_bundle,
                     "service": {"namespace": "default", "name": SERVICE, "path": "/convert", "port": 443}}
    kubectl("apply", "-f", "-", input=json.dumps(crd(client_config)))
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=30s")
    _wait_served(kubectl, "v2")
    return CRD_NAME


def _wait_served(kubectl: Kubectl, version: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        proc = kubectl.run("get", "--raw", f"/apis/{GROUP}/{version}/widgets", check=False)
        if proc.returncode == 0 or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def widget(name: str, version: str, value: str) -> dict:
    field = "size" if version == "v1" else "dimension"
    return {"apiVersion": f"{GROUP}/{version}", "kind": "Widget", "metadata": {"name": name, "namespace": "default"},
            "spec": {field: value, "color": "red"}}


def _get(api: Any, version: str, name: str) -> dict:
    return api.get_namespaced_custom_object(GROUP, version, "default", "widgets", name)


# ---- tests ---------------------------------------------------------------------------------------


def test_create_v1_read_v2(kubectl: Kubectl, api: Any, widgets: str, webhook: Webhook) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(widget("w1", "v1", "large")))
    stored = _get(api, "v1", "w1")
    assert stored["spec"] == {"size": "large", "color": "red"}
    assert "labels" not in stored["metadata"]  # created and read at the storage version: no conversion
    before = len(webhook.reviews)
    got = _get(api, "v2", "w1")
    assert got["apiVersion"] == f"{GROUP}/v2" and got["kind"] == "Widget"
    assert got["spec"] == {"dimension": "large", "color": "red"}
    # The webhook may set labels; identity metadata stays the server's.
    assert got["metadata"]["labels"] == {"converted-by": "webhook"}
    assert got["metadata"]["uid"] == stored["metadata"]["uid"]
    assert got["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    review = webhook.reviews[before]
    assert review["apiVersion"] == "apiextensions.k8s.io/v1" and review["kind"] == "ConversionReview"
    assert review["request"]["desiredAPIVersion"] == f"{GROUP}/v2"
    assert [o["apiVersion"] for o in review["request"]["objects"]] == [f"{GROUP}/v1"]


def test_create_v2_read_v1(kubectl: Kubectl, api: Any, widgets: str) -> None:
    created = api.create_namespaced_custom_object(GROUP, "v2", "default", "widgets", widget("w2", "v2", "small"))
    # Stored through the webhook (v2 -> v1), answered in v2 (v1 -> v2).
    assert created["apiVersion"] == f"{GROUP}/v2" and created["spec"] == {"dimension": "small", "color": "red"}
    got = _get(api, "v1", "w2")
    assert got["spec"] == {"size": "small", "color": "red"}
    # Update and patch at v2 go through the webhook both ways too.
    api.patch_namespaced_custom_object(GROUP, "v2", "default", "widgets", "w2", {"spec": {"dimension": "medium"}})
    assert _get(api, "v1", "w2")["spec"]["size"] == "medium"
    out = kubectl("get", f"widgets.v2.{GROUP}", "w2", "-o", "jsonpath={.spec.dimension}")
    assert out == "medium"


def test_list_and_watch_at_non_storage_version(kubectl: Kubectl, api: Any, widgets: str,
                                               webhook: Webhook) -> None:
    api.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", widget("w3", "v1", "tiny"))
    before = len(webhook.reviews)
    listed = api.list_namespaced_custom_object(GROUP, "v2", "default", "widgets")
    assert listed["apiVersion"] == f"{GROUP}/v2"
    by_name = {o["metadata"]["name"]: o for o in listed["items"]}
    assert {"w1", "w2", "w3"} <= set(by_name)
    assert all(o["apiVersion"] == f"{GROUP}/v2" and "size" not in o["spec"] for o in by_name.values())
    assert by_name["w3"]["spec"]["dimension"] == "tiny"
    # One ConversionReview for the whole list.
    assert len(webhook.reviews) == before + 1
    assert len(webhook.reviews[before]["request"]["objects"]) == len(listed["items"])
    # Chunked: the limit path reads pages from storage, each converted in one review.
    names = kubectl("get", f"widgets.v2.{GROUP}", "--chunk-size=2", "-o", "jsonpath={.items[*].spec.dimension}")
    assert {"large", "medium", "tiny"} <= set(names.split())
    # Watch at v2: initial events and a later change, converted.
    raw = kubectl("get", "--raw", f"/apis/{GROUP}/v2/namespaces/default/widgets?watch=1&timeoutSeconds=1"
                                  f"&fieldSelector=metadata.name%3Dw3")
    events = [json.loads(line) for line in raw.splitlines() if line.strip()]
    assert events and events[0]["type"] == "ADDED"
    assert events[0]["object"]["apiVersion"] == f"{GROUP}/v2"
    assert events[0]["object"]["spec"]["dimension"] == "tiny"


def test_webhook_does_not_block_the_server(kubectl: Kubectl, api: Any, widgets: str, webhook: Webhook) -> None:
    webhook.delay = 2.0
    result: dict[str, Any] = {}

    def slow_read() -> None:
        t0 = time.monotonic()
        result["obj"] = _get(api, "v2", "w1")
        result["took"] = time.monotonic() - t0

    try:
        reader = threading.Thread(target=slow_read)
        reader.start()
        time.sleep(0.3)  # the v2 read is now waiting on the webhook
        t0 = time.monotonic()
        assert _get(api, "v1", "w1")["spec"]["size"] == "large"
        fast = time.monotonic() - t0
        reader.join(10)
    finally:
        webhook.delay = 0.0
    assert fast < 1.0, f"a storage-version read waited {fast:.2f}s behind a webhook call"
    assert result["took"] >= 1.5 and result["obj"]["spec"]["dimension"] == "large"


def test_webhook_down(kubectl: Kubectl, api: Any, widgets: str, webhook: Webhook) -> None:
    import kubernetes

    webhook.stop()
    try:
        with pytest.raises(kubernetes.client.ApiException) as exc:
            _get(api, "v2", "w1")
        assert exc.value.status == 500
        status = json.loads(exc.value.body)
        assert status["kind"] == "Status" and status["code"] == 500 and "reason" not in status
        assert status["message"] == (
            f'conversion for {GROUP}/v1, Kind=Widget failed: conversion webhook for /, Kind= failed: '
            f'Post "https://{SERVICE}.default.svc:443/convert?timeout=30s": '
            f"dial tcp 127.0.0.1:{webhook.port}: connect: connection refused")
        with pytest.raises(kubernetes.client.ApiException) as exc:
            api.list_namespaced_custom_object(GROUP, "v2", "default", "widgets")
        assert exc.value.status == 500
        # Writes at v2 fail the same way and leave nothing behind.
        with pytest.raises(kubernetes.client.ApiException) as exc:
            api.create_namespaced_custom_object(GROUP, "v2", "default", "widgets", widget("w9", "v2", "x"))
        assert exc.value.status == 500
        assert json.loads(exc.value.body)["message"].startswith(f"conversion for {GROUP}/v2, Kind=Widget failed: ")
        proc = kubectl.run("get", f"widgets.v2.{GROUP}", "w1", check=False)
        assert proc.returncode != 0
        assert f"Error from server: conversion for {GROUP}/v1, Kind=Widget failed: " in proc.stderr
        # The storage version needs no conversion and still reads fine.
        assert _get(api, "v1", "w1")["spec"]["size"] == "large"
        names = {o["metadata"]["name"] for o in api.list_namespaced_custom_object(GROUP, "v1", "default",
                                                                                   "widgets")["items"]}
        assert {"w1", "w2", "w3"} <= names and "w9" not in names
    finally:
        webhook.start()
    assert _get(api, "v2", "w1")["spec"]["dimension"] == "large"


def test_webhook_by_url_and_untrusted_ca(kubectl: Kubectl, api: Any, widgets: str, webhook: Webhook,
                                         ca_bundle: str) -> None:
    def set_client_config(client_config: dict) -> None:
        patch = {"spec": {"conversion": {"strategy": "Webhook", "webhook": {
            "conversionReviewVersions": ["v1"], "clientConfig": client_config}}}}
        kubectl("patch", "crd", CRD_NAME, "--type=merge", "-p", json.dumps(patch))

    url = f"https://127.0.0.1:{webhook.port}/convert"
    set_client_config({"url": url, "caBundle": ca_bundle, "service": None})
    deadline = time.monotonic() + 15
    while True:  # the CRD is re-served with the new client config
        try:
            got = _get(api, "v2", "w2")
            assert got["spec"]["dimension"] == "medium"
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    # A caBundle that does not sign the webhook's certificate: x509 error, as upstream.
    other_ca, _ = pki.self_signed_ca("someone-else")
    set_client_config({"url": url, "caBundle": base64.b64encode(other_ca).decode()})
    deadline = time.monotonic() + 15
    message = ""
    while time.monotonic() < deadline:
        proc = kubectl.run("get", "--raw", f"/apis/{GROUP}/v2/namespaces/default/widgets/w2", check=False)
        if proc.returncode != 0:
            message = proc.stderr
            break
        time.sleep(0.2)
    assert "x509: certificate signed by unknown authority" in message
    assert _get(api, "v1", "w2")["spec"]["size"] == "medium"
    set_client_config({"url": url, "caBundle": ca_bundle})
