"""Reading a kubeconfig: the current context's server, CA, client certificate and token."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass
class KubeConfig:
    server: str
    ca_pem: bytes = b""
    cert_pem: bytes = b""
    key_pem: bytes = b""
    token: str = ""
    insecure: bool = False
    user_name: str = ""

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_pem:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.ca_pem.decode())
        if self.cert_pem and self.key_pem:
            load_cert_chain_pem(ctx, self.cert_pem, self.key_pem)
        return ctx


def load_cert_chain_pem(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """ssl only loads certificates from files: go through a private temporary file."""
    fd, path = tempfile.mkstemp(prefix="kplane-client-", suffix=".pem")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)


def _data(entry: dict[str, Any], key: str, base: Path) -> bytes:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        p = Path(entry[key])
        return (p if p.is_absolute() else base / p).read_bytes()
    return b""


def _named(items: list[dict[str, Any]] | None, name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return item.get(what) or {}
    raise ValueError(f"kubeconfig has no {what} named {name!r}")


def load_kubeconfig(path: str | Path, context: str | None = None) -> KubeConfig:
    path = Path(path).expanduser()
    doc = yaml.safe_load(path.read_text()) or {}
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise ValueError(f"{path}: no current-context")
    ctx = _named(doc.get("contexts"), ctx_name, "context")
    cluster = _named(doc.get("clusters"), ctx["cluster"], "cluster")
    user = _named(doc.get("users"), ctx["user"], "user") if ctx.get("user") else {}
    base = path.parent
    token = user.get("token", "")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    return KubeConfig(server=cluster["server"].rstrip("/"), ca_pem=_data(cluster, "certificate-authority", base),
                      cert_pem=_data(user, "client-certificate", base), key_pem=_data(user, "client-key", base),
                      token=token, insecure=bool(cluster.get("insecure-skip-tls-verify")),
                      user_name=ctx.get("user", ""))
