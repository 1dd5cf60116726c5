"""Converting custom resources between a CRD's versions.

Strategy None rewrites apiVersion (synchronous: ResourceDef.to_storage/from_storage).
Strategy Webhook posts an apiextensions.k8s.io ConversionReview to the CRD's webhook
over TLS, trusting the CRD's caBundle (a url, or a service resolved through its
Endpoints, as kube-apiserver does with --enable-aggregator-routing). It is a
coroutine over a batch of objects (ResourceDef.async_to_storage/async_from_storage),
so the registry awaits it without blocking the event loop. Objects already in the
desired version are never sent.

Failures are answered as kube-apiserver answers them: 500 with no reason and the
converter's error text, e.g.
    conversion for stable.example.com/v1, Kind=CronTab failed: conversion webhook for /, Kind= failed:
    Post "https://127.0.0.1:9443/convert?timeout=30s": dial tcp 127.0.0.1:9443: connect: connection refused
(the inner "/, Kind=" is upstream's: its webhook converter is handed an untyped list).
"""

from __future__ import annotations

import base64
import ssl
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from kplane.apimachinery import errors

Obj = dict[str, Any]
WEBHOOK_TIMEOUT = 30.0  # client-go's webhook client default; sent as ?timeout=30s
BatchConverter = Callable[[list[Obj]], Awaitable[list[Obj]]]
# (namespace, service name, service port) -> (host, port) of a ready endpoint; raises on none.
EndpointLookup = Callable[[str, str, int], tuple[str, int]]
_REVIEW_VERSIONS = ("v1", "v1beta1")


class ConversionError(Exception):
    """One of upstream's conversion error texts (rendered as a 500 without reason)."""


def conversion_failed(message: str) -> errors.StatusError:
    # Upstream returns a plain error from the codec; ErrorToAPIStatus makes it a 500 with
    # StatusReasonUnknown (kubectl: "Error from server: <message>").
    return errors.StatusError(500, "", message)


def is_webhook(crd: Obj) -> bool:
    return ((crd.get("spec") or {}).get("conversion") or {}).get("strategy") == "Webhook"


class Converter:
    def __init__(self, endpoints_lookup: EndpointLookup | None = None):
        self.endpoints_lookup = endpoints_lookup
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT))
        return self._session

    # ---- strategy None -------------------------------------------------------------------------

    def to_version(self, crd: Obj, api_version: str) -> Callable[[Obj], Obj]:
        """The synchronous converter of strategy None: rewrite apiVersion."""
        def convert_none(obj: Obj) -> Obj:
            obj["apiVersion"] = api_version
            return obj
        return convert_none

    # ---- strategy Webhook ----------------------------------------------------------------------

    def webhook_to_version(self, crd: Obj, api_version: str) -> BatchConverter:
        """A coroutine function converting a batch of objects to `api_version` through the webhook."""
        webhook = ((crd.get("spec") or {}).get("conversion") or {}).get("webhook") or {}
        client_config = webhook.get("clientConfig") or {}
        review_version = next((v for v in webhook.get("conversionReviewVersions") or []
                               if v in _REVIEW_VERSIONS), "")
        context = _ssl_context(client_config.get("caBundle") or "")

        async def convert(objs: list[Obj]) -> list[Obj]:
            pending = [i for i, o in enumerate(objs) if o.get("apiVersion") != api_version]
            if not pending:
                return objs
            first = objs[pending[0]]
            try:
                converted = await self._review(client_config, context, review_version, api_version,
                                               [objs[i] for i in pending])
                out = list(objs)
                for n, i in enumerate(pending, start=1):
                    out[i] = _check_converted(objs[i], converted[n - 1], api_version, n)
                return out
            except ConversionError as e:
                raise conversion_failed(f"conversion for {_gvk(first)} {e}") from None
        return convert

    async def _review(self, client_config: Obj, context: ssl.SSLContext, review_version: str,
                      api_version: str, objs: list[Obj]) -> list[Obj]:
        failed = "failed: conversion webhook for /, Kind= failed"
        if not review_version:
            raise ConversionError("failed: no supported conversion review versions")
        request_uid = str(uuid.uuid4())
        review = {"kind": "ConversionReview", "apiVersion": f"apiextensions.k8s.io/{review_version}",
                  "request": {"uid": request_uid, "desiredAPIVersion": api_version, "objects": objs}}
        url = _url(client_config)
        try:
            target, server_name = self._target(client_config)
            async with self._client().post(
                    target, data=orjson.dumps(review), ssl=context, server_hostname=server_name,
                    headers={"Content-Type": "application/json", "Accept": "application/json, */*"}) as resp:
                body = await resp.read()
                status, ctype = resp.status, resp.headers.get("Content-Type", "")
        except TimeoutError:
            raise ConversionError(f'{failed}: Post "{url}": context deadline exceeded '
                                  f"(Client.Timeout exceeded while awaiting headers)") from None
        except (aiohttp.ClientError, OSError, ValueError) as e:
            raise ConversionError(f'{failed}: Post "{url}": {_go_error(e, client_config)}') from None
        if not 200 <= status < 300:
            raise ConversionError(f"{failed}: {_status_message(status, body)}")
        if not body:
            raise ConversionError(f"{failed}: 0-length response with status code: {status} and content type: "
                                  f"{ctype}")
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise ConversionError(f"{failed}: {e}") from None
        if not isinstance(answer, dict):
            raise ConversionError(f"{failed}: unrecognized response type")
        response = answer.get("response")
        if review_version == "v1":
            got = f"{answer.get('apiVersion', '')}, Kind={answer.get('kind', '')}"
            if got != "apiextensions.k8s.io/v1, Kind=ConversionReview":
                raise ConversionError(f"{failed}: expected webhook response of apiextensions.k8s.io/v1, "
                                      f"Kind=ConversionReview, got {_gv_string(answer)}")
        if not isinstance(response, dict):
            raise ConversionError(f"{failed}: no response provided")
        if review_version == "v1" and response.get("uid") != request_uid:
            raise ConversionError(f'{failed}: expected response.uid="{request_uid}", got "{response.get("uid", "")}"')
        result = response.get("result") or {}
        if result.get("status") != "Success":
            raise ConversionError(f"{failed}: " + (result.get("message") or
                                  f"response.result.status was '{result.get('status', '')}', not 'Success'"))
        converted = response.get("convertedObjects") or []
        if len(converted) != len(objs):
            raise ConversionError(f"returned {len(converted)} objects, expected {len(objs)}")
        return converted

    def _target(self, client_config: Obj) -> tuple[str, str]:
        """(URL to connect to, TLS server name to verify)."""
        if client_config.get("url"):
            u = urlsplit(client_config["url"])
            if u.scheme != "https":
                raise ValueError(f'unsupported protocol scheme "{u.scheme}"')
            return _with_timeout(client_config["url"]), u.hostname or ""
        svc = client_config.get("service") or {}
        ns, name, port = svc.get("namespace", ""), svc.get("name", ""), int(svc.get("port") or 443)
        if self.endpoints_lookup is None:
            raise ValueError(f'service "{name}" not found')
        host, ep_port = self.endpoints_lookup(ns, name, port)
        hostport = f"[{host}]" if ":" in host else host
        return _with_timeout(f"https://{hostport}:{ep_port}{svc.get('path') or ''}"), f"{name}.{ns}.svc"


def _check_converted(original: Obj, converted: Any, api_version: str, index: int) -> Obj:
    """Upstream's checks of a converted object, then its metadata restored but for labels/annotations."""
    prefix = f"returned invalid converted object at index {index}"  # 1-based, as upstream's
    if not isinstance(converted, dict):
        raise ConversionError(f"{prefix}: invalid type")
    if converted.get("apiVersion") != api_version:
        raise ConversionError(f"{prefix}: invalid groupVersion (expected {api_version}, received "
                              f"{converted.get('apiVersion', '')})")
    if converted.get("kind") != original.get("kind"):
        raise ConversionError(f"{prefix}: invalid kind (expected {original.get('kind')}, received "
                              f"{converted.get('kind', '')})")
    om = original.get("metadata") or {}
    cm = converted.get("metadata")
    if not isinstance(cm, dict):
        raise ConversionError(f"returned invalid metadata in object at index {index}: missing metadata in converted "
                              f"object")
    for key in ("name", "namespace", "uid"):
        if om.get(key, "") != cm.get(key, ""):
            raise ConversionError(f"{prefix}: must have the same {'UID' if key == 'uid' else key}: "
                                  f"{om.get(key, '')} != {cm.get(key, '')}")
    meta = orjson.loads(orjson.dumps(om))
    for key in ("labels", "annotations"):
        value = cm.get(key)
        if value is None:
            meta.pop(key, None)
            continue
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConversionError(f"returned invalid metadata in object at index {index}: metadata.{key} must "
                                  f"be a map of strings")
        meta[key] = value
    converted["metadata"] = meta
    return converted


def _gvk(obj: Obj) -> str:
    return f"{obj.get('apiVersion', '')}, Kind={obj.get('kind', '')}"


def _gv_string(answer: Obj) -> str:
    api_version = str(answer.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}, Kind={answer.get('kind', '')}"


def _with_timeout(url: str) -> str:
    return url + ("&" if "?" in url else "?") + f"timeout={int(WEBHOOK_TIMEOUT)}s"


def _url(client_config: Obj) -> str:
    """The URL as client-go reports it in errors (the service's DNS name, not the endpoint)."""
    if client_config.get("url"):
        return _with_timeout(client_config["url"])
    svc = client_config.get("service") or {}
    return _with_timeout(f"https://{svc.get('name')}.{svc.get('namespace')}.svc:{svc.get('port') or 443}"
                         f"{svc.get('path') or ''}")


def _go_error(e: BaseException, client_config: Obj) -> str:
    """Transport errors worded like Go's net/http and crypto/tls."""
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        cert_error = e.certificate_error
        if isinstance(cert_error, ssl.SSLCertVerificationError) and cert_error.verify_code == 62:
            return f"tls: failed to verify certificate: x509: {cert_error.verify_message}"
        return "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    if isinstance(e, aiohttp.ClientConnectorError):
        os_error = e.os_error
        where = f"dial tcp {e.host}:{e.port}"
        if isinstance(os_error, ConnectionRefusedError):
            return f"{where}: connect: connection refused"
        return f"{where}: {os_error.strerror or os_error}"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "EOF"
    return str(e) or type(e).__name__


def _status_message(status: int, body: bytes) -> str:
    """client-go's error for a non-2xx answer without a Status body (NewGenericServerResponse)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        decoded = orjson.loads(body)
        if isinstance(decoded, dict) and decoded.get("kind") == "Status" and decoded.get("message"):
            return str(decoded["message"])
    except orjson.JSONDecodeError:
        pass
    known = {400: "the server rejected our request for an unknown reason",
             401: "the server has asked for the client to provide credentials",
             403: "the server does not allow access to the requested resource",
             404: "the server could not find the requested resource",
             405: "the server does not allow this method on the requested resource",
             409: "the server reported a conflict",
             413: "the server has rejected the request because it is too large",
             415: "the server does not support the media type of the request",
             422: "the server rejected our request due to an error in our request",
             429: "the server has received too many requests and has asked us to try again later",
             503: "the server is currently unable to handle the request",
             504: "the server was unable to return a response in the time allotted, but may still be processing "
                  "the request"}
    if status in known:
        return known[status]
    if status >= 500:
        quoted = orjson.dumps(text or "unknown").decode()
        return f"an error on the server ({quoted}) has prevented the request from succeeding"
    return f"the server responded with the status code {status} but did not return more information"


def _ssl_context(ca_bundle_b64: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_bundle_b64:
        try:
            pem = base64.b64decode(ca_bundle_b64).decode()
        except (ValueError, UnicodeDecodeError):
            pem = ""
        if pem:
            try:
                ctx.load_verify_locations(cadata=pem)
            except ssl.SSLError:
                pass  # an unusable bundle trusts nothing beyond the system roots: the call fails with x509
    return ctx
