"""Converting custom resources between a CRD's versions.

Strategy None rewrites apiVersion. Strategy Webhook posts an
apiextensions.k8s.io/v1 ConversionReview to the CRD's webhook over TLS,
trusting the CRD's caBundle (a url, or a service resolved through its
Endpoints). The registry converts synchronously, so the webhook call blocks
the event loop for its duration (10 s at most); objects already in the
desired version are never sent.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from kplane.apimachinery import errors

Obj = dict[str, Any]
WEBHOOK_TIMEOUT = 10.0


class Converter:
    def __init__(self, endpoints_lookup: Callable[[str, str], tuple[str, int] | None] | None = None):
        # (namespace, service name) -> (address, port) of a ready endpoint.
        self.endpoints_lookup = endpoints_lookup

    def to_version(self, crd: Obj, api_version: str) -> Callable[[Obj], Obj]:
        conv = (crd.get("spec") or {}).get("conversion") or {}
        kind = ((crd.get("status") or {}).get("acceptedNames") or {}).get("kind") or \
            ((crd.get("spec") or {}).get("names") or {}).get("kind", "")
        if conv.get("strategy") != "Webhook":
            def convert_none(obj: Obj) -> Obj:
                obj["apiVersion"] = api_version
                return obj
            return convert_none
        webhook = conv.get("webhook") or {}
        client_config = webhook.get("clientConfig") or {}
        review_versions = webhook.get("conversionReviewVersions") or ["v1"]
        review_version = "v1" if "v1" in review_versions else review_versions[0]
        context = _ssl_context(client_config.get("caBundle") or "")

        def convert_webhook(obj: Obj) -> Obj:
            if obj.get("apiVersion") == api_version:
                return obj
            return self._call(client_config, context, review_version, api_version, kind, obj)
        return convert_webhook

    def _call(self, client_config: Obj, context: ssl.SSLContext, review_version: str, api_version: str,
              kind: str, obj: Obj) -> Obj:
        gvk = f"{api_version}, Kind={kind}"
        failed = f"conversion webhook for {gvk} failed"
        request_uid = str(uuid.uuid4())
        review = {"apiVersion": f"apiextensions.k8s.io/{review_version}", "kind": "ConversionReview",
                  "request": {"uid": request_uid, "desiredAPIVersion": api_version, "objects": [obj]}}
        try:
            host, port, path, server_name = self._target(client_config)
            conn = _SNIConnection(host, port, server_name, timeout=WEBHOOK_TIMEOUT, context=context)
            try:
                conn.request("POST", path, body=orjson.dumps(review),
                             headers={"Content-Type": "application/json", "Accept": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise errors.internal(f"{failed}: Post \"{_url(client_config)}\": {e}") from None
        if resp.status != 200:
            raise errors.internal(f"{failed}: conversion webhook returned status {resp.status}")
        try:
            answer = orjson.loads(body)
            response = answer["response"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise errors.internal(f"{failed}: unmarshal failed: invalid ConversionReview response") from None
        if response.get("uid") != request_uid:
            raise errors.internal(f"{failed}: expected response uid {request_uid!r}, got {response.get('uid')!r}")
        result = response.get("result") or {}
        if result.get("status") != "Success":
            raise errors.internal(f"{failed}: conversion request failed for {_describe(obj)}, Response: "
                                  f"{result.get('message', '')}")
        converted = response.get("convertedObjects") or []
        if len(converted) != 1:
            raise errors.internal(f"{failed}: returned {len(converted)} objects, expected 1")
        out = converted[0]
        if out.get("apiVersion") != api_version:
            raise errors.internal(f"{failed}: invalid converted object: invalid apiVersion "
                                  f"{out.get('apiVersion')!r}, expected {api_version!r}")
        # The webhook may change labels/annotations and the rest; metadata identity stays the server's.
        m, om = out.setdefault("metadata", {}), obj.get("metadata") or {}
        for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "generation",
                    "deletionTimestamp", "managedFields", "finalizers", "ownerReferences"):
            if key in om:
                m[key] = om[key]
        return out

    def _target(self, client_config: Obj) -> tuple[str, int, str, str]:
        if client_config.get("url"):
            u = urlsplit(client_config["url"])
            if u.scheme != "https":
                raise ValueError("webhook url must use https")
            path = u.path or "/"
            if u.query:
                path += "?" + u.query
            return u.hostname or "", u.port or 443, path, u.hostname or ""
        svc = client_config.get("service") or {}
        ns, name = svc.get("namespace", ""), svc.get("name", "")
        found = self.endpoints_lookup(ns, name) if self.endpoints_lookup else None
        if found is None:
            raise ValueError(f'service "{ns}/{name}" has no ready endpoints')
        return found[0], found[1], svc.get("path") or "/", f"{name}.{ns}.svc"


class _SNIConnection(http.client.HTTPSConnection):
    """Connects to an address while verifying the certificate for a service's DNS name."""

    def __init__(self, host: str, port: int, server_name: str, **kw: Any):
        super().__init__(host, port, **kw)
        self._server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_name)  # type: ignore[attr-defined]


def _ssl_context(ca_bundle_b64: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_bundle_b64:
        try:
            pem = base64.b64decode(ca_bundle_b64).decode()
        except (ValueError, UnicodeDecodeError):
            pem = ""
        if pem:
            ctx.load_verify_locations(cadata=pem)
    return ctx


def _url(client_config: Obj) -> str:
    if client_config.get("url"):
        return client_config["url"]
    svc = client_config.get("service") or {}
    return f"https://{svc.get('name')}.{svc.get('namespace')}.svc:{svc.get('port', 443)}{svc.get('path', '')}"


def _describe(obj: Obj) -> str:
    m = obj.get("metadata") or {}
    return f"{obj.get('apiVersion')}/{obj.get('kind')}/{m.get('namespace', '')}/{m.get('name', '')}"
