"""The kube-system/extension-apiserver-authentication ConfigMap.

kube-apiserver publishes it at startup (the `start-cluster-authentication-info-
controller` post-start hook); extension API servers read it to learn which CA
signs client certificates and how to trust the front proxy's identity headers.
Values of the requestheader-* keys are JSON string lists, as upstream writes them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from kplane.apimachinery import errors
from kplane.apiserver.registry import WriteOptions

log = logging.getLogger("kplane.aggregator.handshake")

NAMESPACE = "kube-system"
NAME = "extension-apiserver-authentication"


@dataclass
class RequestHeaderConfig:
    client_ca_pem: str
    allowed_names: list[str] = field(default_factory=lambda: ["front-proxy-client"])
    username_headers: list[str] = field(default_factory=lambda: ["X-Remote-User"])
    group_headers: list[str] = field(default_factory=lambda: ["X-Remote-Group"])
    extra_headers_prefix: list[str] = field(default_factory=lambda: ["X-Remote-Extra-"])


def _json_list(values: list[str]) -> str:
    return json.dumps(values, separators=(",", ":"))


def configmap_data(client_ca_pem: str, requestheader: RequestHeaderConfig | None) -> dict[str, str]:
    data = {"client-ca-file": client_ca_pem}
    if requestheader is not None:
        data.update({
            "requestheader-client-ca-file": requestheader.client_ca_pem,
            "requestheader-allowed-names": _json_list(requestheader.allowed_names),
            "requestheader-username-headers": _json_list(requestheader.username_headers),
            "requestheader-group-headers": _json_list(requestheader.group_headers),
            "requestheader-extra-headers-prefix": _json_list(requestheader.extra_headers_prefix),
        })
    return data


async def publish(configmaps: Any, data: dict[str, str]) -> None:
    """Create the ConfigMap or bring its data up to date (keys we do not own are kept)."""
    opts = WriteOptions(field_manager="kube-apiserver")
    try:
        current = await configmaps.get(NAMESPACE, NAME)
    except errors.StatusError as e:
        if e.code != 404:
            raise
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": NAMESPACE},
               "data": dict(data)}
        try:
            await configmaps.create(NAMESPACE, obj, opts)
            return
        except errors.StatusError as e2:
            if e2.code != 409:
                raise
            current = await configmaps.get(NAMESPACE, NAME)
    merged = dict(current.get("data") or {})
    merged.update(data)
    if merged == (current.get("data") or {}):
        return

    def mutate(old: dict[str, Any]) -> dict[str, Any]:
        old["data"] = merged
        return old

    await configmaps.patch(NAMESPACE, NAME, mutate, opts)
