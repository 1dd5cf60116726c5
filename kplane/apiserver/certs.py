"""Certificates and keys: a self-signed CA, client and serving certificates
signed by it, and atomic writes of PEM files. Used by kplane's PKI bootstrap
(controlplane/pki.py), by extension servers' serving certificates and by tests.
Keys are EC P-256 (cheap to generate and to handshake with)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 365
# Backdate certificates so a client whose clock is slightly behind still accepts them.
CLOCK_SKEW = dt.timedelta(hours=1)

PrivateKey = ec.EllipticCurvePrivateKey

# ---------------------------------------------------------------------------------------------
# Key and certificate primitives
# ---------------------------------------------------------------------------------------------


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
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
    key = new_key()
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
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


def _load_ca(ca_cert_path: Path | str, ca_key_path: Path | str) -> tuple[x509.Certificate, PrivateKey]:
    cert = x509.load_pem_x509_certificate(Path(ca_cert_path).read_bytes())
    key = serialization.load_pem_private_key(Path(ca_key_path).read_bytes(), password=None)
    return cert, key  # type: ignore[return-value]


def _sign_leaf(ca_cert_path: Path | str, ca_key_path: Path | str, subject: x509.Name, days: int,
               usage: x509.ObjectIdentifier, san: x509.SubjectAlternativeName | None) -> tuple[bytes, bytes]:
    ca_cert, ca_key = _load_ca(ca_cert_path, ca_key_path)
    key = new_key()
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
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


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


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes, mode: int) -> None:
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


def write_pair(cert_path: Path, key_path: Path, pair: tuple[bytes, bytes]) -> None:
    write_atomic(key_path, pair[1], 0o600)
    write_atomic(cert_path, pair[0], 0o644)


def files_exist(*paths: Path) -> bool:
    return all(p.is_file() for p in paths)


def covers(cert_path: Path, hosts: list[str]) -> bool:
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
