"""PKI bootstrap for `kplane serve`: the certificates kubeadm would put in /etc/kubernetes/pki.

On first start ensure_pki creates, under pki_dir:
    ca.crt / ca.key                         cluster CA ("kplane-ca")
    apiserver.crt / apiserver.key           serving cert for the default SANs + `hosts`
    front-proxy-ca.crt / front-proxy-ca.key CA extension servers trust for X-Remote-* headers
    front-proxy-client.crt / .key           client cert the aggregator proxies with
    admin.crt / admin.key                   "kplane-admin" in group "system:masters"
    sa.key / sa.pub                         service-account token signing key pair
and later starts reuse the files byte for byte. Keys are EC P-256: much cheaper than RSA for
key generation and TLS handshakes, and accepted everywhere kube accepts RSA (sa.key signs ES256
tokens, which kube-apiserver supports). Key files are written 0600.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization

# issue_client_cert / issue_serving_cert / self_signed_ca are re-exported: minting certificates
# against kplane's CA (tests, tools) goes through this module.
from kplane.apiserver.certs import (  # noqa: F401
    LEAF_DAYS,
    covers,
    files_exist,
    issue_client_cert,
    issue_serving_cert,
    key_pem,
    new_key,
    self_signed_ca,
    write_atomic,
    write_pair,
)

DEFAULT_SERVING_HOSTS = (
    "127.0.0.1", "::1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)



@dataclass(frozen=True)
class PKI:
    dir: Path
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    front_proxy_ca_cert: Path
    front_proxy_ca_key: Path
    front_proxy_client_cert: Path
    front_proxy_client_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path

    @classmethod
    def at(cls, pki_dir: Path) -> PKI:
        d = Path(pki_dir)
        return cls(
            dir=d,
            ca_cert=d / "ca.crt", ca_key=d / "ca.key",
            serving_cert=d / "apiserver.crt", serving_key=d / "apiserver.key",
            front_proxy_ca_cert=d / "front-proxy-ca.crt", front_proxy_ca_key=d / "front-proxy-ca.key",
            front_proxy_client_cert=d / "front-proxy-client.crt",
            front_proxy_client_key=d / "front-proxy-client.key",
            admin_cert=d / "admin.crt", admin_key=d / "admin.key",
            sa_key=d / "sa.key", sa_pub=d / "sa.pub",
        )


def serving_hosts(hosts: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The default SANs kube-apiserver's self-signed cert carries, plus the caller's."""
    return list(dict.fromkeys([*DEFAULT_SERVING_HOSTS, *hosts]))


def _ensure_ca(cert: Path, key: Path, cn: str) -> bool:
    """Create the CA if missing; True when a new CA was made (its leaves must then be re-issued)."""
    if files_exist(cert, key):
        return False
    write_pair(cert, key, self_signed_ca(cn))
    return True


def _ensure_sa_keys(pki: PKI) -> None:
    if files_exist(pki.sa_key, pki.sa_pub):
        return
    key = new_key()
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    write_atomic(pki.sa_key, key_pem(key), 0o600)
    write_atomic(pki.sa_pub, pub, 0o644)


def ensure_pki(pki_dir: Path, *, hosts: list[str] | tuple[str, ...] = ()) -> PKI:
    """Create whatever is missing under pki_dir and return the paths; existing files are reused.

    The serving cert is re-issued when it lacks one of the requested hosts (e.g. a new
    --advertise-address), and every leaf is re-issued when its CA had to be created.
    """
    pki = PKI.at(pki_dir)
    pki.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    new_ca = _ensure_ca(pki.ca_cert, pki.ca_key, "kplane-ca")
    wanted = serving_hosts(hosts)
    if new_ca or not files_exist(pki.serving_cert, pki.serving_key) or not covers(pki.serving_cert, wanted):
        write_pair(pki.serving_cert, pki.serving_key, issue_serving_cert(pki.ca_cert, pki.ca_key, wanted))
    if new_ca or not files_exist(pki.admin_cert, pki.admin_key):
        write_pair(pki.admin_cert, pki.admin_key,
                    issue_client_cert(pki.ca_cert, pki.ca_key, "kplane-admin", ["system:masters"]))

    new_fp_ca = _ensure_ca(pki.front_proxy_ca_cert, pki.front_proxy_ca_key, "kplane-front-proxy-ca")
    if new_fp_ca or not files_exist(pki.front_proxy_client_cert, pki.front_proxy_client_key):
        write_pair(pki.front_proxy_client_cert, pki.front_proxy_client_key,
                    issue_client_cert(pki.front_proxy_ca_cert, pki.front_proxy_ca_key, "front-proxy-client"))

    _ensure_sa_keys(pki)
    return pki


# ---------------------------------------------------------------------------------------------
# kubeconfig
# ---------------------------------------------------------------------------------------------


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def kubeconfig_dict(server_url: str, ca_pem: bytes | str, client_cert_pem: bytes | str,
                    client_key_pem: bytes | str, *, user: str = "kplane-admin", cluster: str = "kplane",
                    context: str = "kplane") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server_url, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": _b64(client_cert_pem), "client-key-data": _b64(client_key_pem)}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }


def write_kubeconfig(path: Path | str, server_url: str, ca_pem: bytes | str, client_cert_pem: bytes | str,
                     client_key_pem: bytes | str, user: str = "kplane-admin", cluster: str = "kplane",
                     context: str = "kplane") -> Path:
    """Write a kubeconfig with embedded credentials; 0600 because it holds a private key."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = kubeconfig_dict(server_url, ca_pem, client_cert_pem, client_key_pem,
                          user=user, cluster=cluster, context=context)
    write_atomic(path, yaml.safe_dump(doc, sort_keys=False).encode(), 0o600)
    return path


__all__ = ["DEFAULT_SERVING_HOSTS", "PKI", "ensure_pki", "issue_client_cert", "issue_serving_cert",
           "kubeconfig_dict", "self_signed_ca", "serving_hosts", "write_kubeconfig"]
