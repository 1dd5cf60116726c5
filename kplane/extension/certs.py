"""An extension server's serving certificate.

By default a self-signed CA and a serving certificate for the Service's DNS
names (`<service>.<namespace>.svc`, which the aggregator verifies) plus the
loopback addresses, kept under <data-dir>/pki and reused across restarts. The
CA's PEM is the APIService's caBundle. Certificates from files replace them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kplane.apiserver.certs import covers, files_exist, issue_serving_cert, self_signed_ca, write_pair


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


def ensure_serving_certs(pki_dir: Path, hosts: list[str], ca_cn: str = "kplane-extension-ca") -> ServingCerts:
    """Create (or reuse) <pki_dir>/ca.{crt,key} and serving.{crt,key} covering `hosts`."""
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_crt, ca_key = pki_dir / "ca.crt", pki_dir / "ca.key"
    crt, key = pki_dir / "serving.crt", pki_dir / "serving.key"
    new_ca = not files_exist(ca_crt, ca_key)
    if new_ca:
        write_pair(ca_crt, ca_key, self_signed_ca(ca_cn))
    if new_ca or not files_exist(crt, key) or not covers(crt, hosts):
        write_pair(crt, key, issue_serving_cert(ca_crt, ca_key, hosts, cn=hosts[0]))
    return ServingCerts(crt, key, ca_crt.read_bytes())


def certs_from_files(cert_file: str, key_file: str, ca_file: str = "") -> ServingCerts:
    ca = Path(ca_file).read_bytes() if ca_file else Path(cert_file).read_bytes()
    return ServingCerts(Path(cert_file), Path(key_file), ca)
