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
import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 365
# Backdate certificates so a client whose clock is slightly behind still accepts them.
CLOCK_SKEW = dt.timedelta(hours=1)

DEFAULT_SERVING_HOSTS = (
    "127.0.0.1", "::1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)

PrivateKey = ec.EllipticCurvePrivateKey


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


# ---------------------------------------------------------------------------------------------
# Key and certificate primitives
# ---------------------------------------------------------------------------------------------


def _new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str, orgs: list[str] | tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                         crl_sign=False, encipher_only=False, decipher_only=False)


def self_signed_ca(cn: str, days: int = CA_DAYS) -> tuple[bytes, bytes]:
    """A new CA certificate and key, both PEM."""
    key = _new_key()
    name = _name(cn)
    cert = (
        _builder(name, name, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _load_ca(ca_cert_path: Path | str, ca_key_path: Path | str) -> tuple[x509.Certificate, PrivateKey]:
    cert = x509.load_pem_x509_certificate(Path(ca_cert_path).read_bytes())
    key = serialization.load_pem_private_key(Path(ca_key_path).read_bytes(), password=None)
    return cert, key  # type: ignore[return-value]


def _sign_leaf(ca_cert_path: Path | str, ca_key_path: Path | str, subject: x509.Name, days: int,
               usage: x509.ObjectIdentifier, san: x509.SubjectAlternativeName | None) -> tuple[bytes, bytes]:
    ca_cert, ca_key = _load_ca(ca_cert_path, ca_key_path)
    key = _new_key()
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def issue_client_cert(ca_cert_path: Path | str, ca_key_path: Path | str, cn: str,
                      groups: list[str] | tuple[str, ...] = (), days: int = LEAF_DAYS) -> tuple[bytes, bytes]:
    """A client certificate for user `cn` in `groups` (x509 authn maps CN->user, O->groups)."""
    return _sign_leaf(ca_cert_path, ca_key_path, _name(cn, groups), days,
                      ExtendedKeyUsageOID.CLIENT_AUTH, None)


def _san(hosts: list[str] | tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # de-duplicate, keep order
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def issue_serving_cert(ca_cert_path: Path | str, ca_key_path: Path | str, hosts: list[str] | tuple[str, ...],
                       cn: str = "kplane-apiserver", days: int = LEAF_DAYS) -> tuple[bytes, bytes]:
    """A TLS server certificate whose SANs are `hosts` (IP literals become IP SANs)."""
    return _sign_leaf(ca_cert_path, ca_key_path, _name(cn), days,
                      ExtendedKeyUsageOID.SERVER_AUTH, _san(hosts))


def serving_hosts(hosts: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The default SANs kube-apiserver's self-signed cert carries, plus the caller's."""
    return list(dict.fromkeys([*DEFAULT_SERVING_HOSTS, *hosts]))


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a temp file + rename so a crash never leaves a truncated cert or key behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_pair(cert_path: Path, key_path: Path, pair: tuple[bytes, bytes]) -> None:
    _write_atomic(key_path, pair[1], 0o600)
    _write_atomic(cert_path, pair[0], 0o644)


def _exists(*paths: Path) -> bool:
    return all(p.is_file() for p in paths)


def _covers(cert_path: Path, hosts: list[str]) -> bool:
    """Whether an existing serving cert already has every requested SAN."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    have |= set(san.get_values_for_type(x509.DNSName))
    wanted = set()
    for h in hosts:
        try:
            wanted.add(str(ipaddress.ip_address(h)))
        except ValueError:
            wanted.add(h)
    return wanted <= have


def _ensure_ca(cert: Path, key: Path, cn: str) -> bool:
    """Create the CA if missing; True when a new CA was made (its leaves must then be re-issued)."""
    if _exists(cert, key):
        return False
    _write_pair(cert, key, self_signed_ca(cn))
    return True


def _ensure_sa_keys(pki: PKI) -> None:
    if _exists(pki.sa_key, pki.sa_pub):
        return
    key = _new_key()
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_atomic(pki.sa_key, _key_pem(key), 0o600)
    _write_atomic(pki.sa_pub, pub, 0o644)


def ensure_pki(pki_dir: Path, *, hosts: list[str] | tuple[str, ...] = ()) -> PKI:
    """Create whatever is missing under pki_dir and return the paths; existing files are reused.

    The serving cert is re-issued when it lacks one of the requested hosts (e.g. a new
    --advertise-address), and every leaf is re-issued when its CA had to be created.
    """
    pki = PKI.at(pki_dir)
    pki.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    new_ca = _ensure_ca(pki.ca_cert, pki.ca_key, "kplane-ca")
    wanted = serving_hosts(hosts)
    if new_ca or not _exists(pki.serving_cert, pki.serving_key) or not _covers(pki.serving_cert, wanted):
        _write_pair(pki.serving_cert, pki.serving_key, issue_serving_cert(pki.ca_cert, pki.ca_key, wanted))
    if new_ca or not _exists(pki.admin_cert, pki.admin_key):
        _write_pair(pki.admin_cert, pki.admin_key,
                    issue_client_cert(pki.ca_cert, pki.ca_key, "kplane-admin", ["system:masters"]))

    new_fp_ca = _ensure_ca(pki.front_proxy_ca_cert, pki.front_proxy_ca_key, "kplane-front-proxy-ca")
    if new_fp_ca or not _exists(pki.front_proxy_client_cert, pki.front_proxy_client_key):
        _write_pair(pki.front_proxy_client_cert, pki.front_proxy_client_key,
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
    _write_atomic(path, yaml.safe_dump(doc, sort_keys=False).encode(), 0o600)
    return path


__all__ = ["DEFAULT_SERVING_HOSTS", "PKI", "ensure_pki", "issue_client_cert", "issue_serving_cert",
           "kubeconfig_dict", "self_signed_ca", "serving_hosts", "write_kubeconfig"]
