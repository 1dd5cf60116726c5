"""An extension server's serving certificate.

By default a self-signed CA and a serving certificate for the Service's DNS
names (`<service>.<namespace>.svc`, which the aggregator verifies) plus the
loopback addresses, kept under <data-dir>/pki and reused across restarts. The
CA's PEM is the APIService's caBundle. Certificates from files replace them.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from kplane.controlplane.pki import issue_serving_cert, self_signed_ca


@dataclass
class ServingCerts:
    cert_file: Path
    key_file: Path
    ca_bundle: bytes  # PEM the aggregator verifies the serving cert against


def service_hosts(service: str, namespace: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    hosts = [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local",
             f"{service}.{namespace}",
             service, "localhost", "127.0.0.1", "::1", *extra]
    return list(dict.fromkeys(h for h in hosts if h and h not in ("0.0.0.0", "::")))


def _write(path: Path, data: bytes, mode: int) -> None:
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


def _sans(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return ips | set(san.get_values_for_type(x509.DNSName))


def ensure_serving_certs(pki_dir: Path, hosts: list[str], ca_cn: str = "kplane-extension-ca") -> ServingCerts:
    """Create (or reuse) <pki_dir>/ca.{crt,key} and serving.{crt,key} covering `hosts`."""
    import ipaddress

    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_crt, ca_key = pki_dir / "ca.crt", pki_dir / "ca.key"
    crt, key = pki_dir / "serving.crt", pki_dir / "serving.key"
    new_ca = not (ca_crt.is_file() and ca_key.is_file())
    if new_ca:
        cert_pem, key_pem = self_signed_ca(ca_cn)
        _write(ca_key, key_pem, 0o600)
        _write(ca_crt, cert_pem, 0o644)
    wanted = set()
    for h in hosts:
        try:
            wanted.add(str(ipaddress.ip_address(h)))
        except ValueError:
            wanted.add(h)
    if new_ca or not (crt.is_file() and key.is_file()) or not wanted <= _sans(crt):
        cert_pem, key_pem = issue_serving_cert(ca_crt, ca_key, hosts, cn=hosts[0])
        _write(key, key_pem, 0o600)
        _write(crt, cert_pem, 0o644)
    return ServingCerts(crt, key, ca_crt.read_bytes())


def certs_from_files(cert_file: str, key_file: str, ca_file: str = "") -> ServingCerts:
    ca = Path(ca_file).read_bytes() if ca_file else Path(cert_file).read_bytes()
    return ServingCerts(Path(cert_file), Path(key_file), ca)
