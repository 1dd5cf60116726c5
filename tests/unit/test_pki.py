"""PKI bootstrap: chains verify, SANs and subjects are right, files are reused and private."""

from __future__ import annotations

import base64
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kplane.controlplane.pki import (
    PKI,
    ensure_pki,
    issue_client_cert,
    issue_serving_cert,
    self_signed_ca,
    write_kubeconfig,
)


def _cert(path_or_pem: Path | bytes) -> x509.Certificate:
    pem = path_or_pem.read_bytes() if isinstance(path_or_pem, Path) else path_or_pem
    return x509.load_pem_x509_certificate(pem)


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {str(i) for i in san.get_values_for_type(x509.IPAddress)}


def _eku(cert: x509.Certificate) -> list:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return ensure_pki(tmp_path_factory.mktemp("pki"), hosts=["10.0.0.7", "kplane.example.com"])


def test_all_files_exist_with_expected_names(pki: PKI) -> None:
    names = sorted(p.name for p in pki.dir.iterdir())
    assert names == sorted([
        "ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "front-proxy-ca.crt", "front-proxy-ca.key",
        "front-proxy-client.crt", "front-proxy-client.key", "admin.crt", "admin.key", "sa.key", "sa.pub",
    ])


def test_key_files_are_private(pki: PKI) -> None:
    for key in (pki.ca_key, pki.serving_key, pki.front_proxy_ca_key, pki.front_proxy_client_key,
                pki.admin_key, pki.sa_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key.name


def test_ca_subject_and_constraints(pki: PKI) -> None:
    ca = _cert(pki.ca_cert)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kplane-ca"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)


def test_serving_cert_verifies_against_ca_and_has_sans(pki: PKI) -> None:
    ca, leaf = _cert(pki.ca_cert), _cert(pki.serving_cert)
    leaf.verify_directly_issued_by(ca)  # raises if the signature or issuer does not match
    dns, ips = _sans(leaf)
    assert dns == {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                   "kubernetes.default.svc.cluster.local", "kplane.example.com"}
    assert ips == {"127.0.0.1", "::1", "10.0.0.7"}
    assert _eku(leaf) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_serving_cert_passes_webpki_server_verification(pki: PKI) -> None:
    # cryptography's RFC 5280 / CA-B-Forum verifier is stricter than Go's or OpenSSL's defaults.
    store = x509.verification.Store([_cert(pki.ca_cert)])
    verifier = x509.verification.PolicyBuilder().store(store).build_server_verifier(
        x509.DNSName("kubernetes.default.svc"))
    chain = verifier.verify(_cert(pki.serving_cert), [])
    assert chain[-1] == _cert(pki.ca_cert)
    ip_verifier = x509.verification.PolicyBuilder().store(store).build_server_verifier(
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    ip_verifier.verify(_cert(pki.serving_cert), [])
    wrong_host = x509.verification.PolicyBuilder().store(store).build_server_verifier(
        x509.DNSName("evil.example.com"))
    with pytest.raises(x509.verification.VerificationError):
        wrong_host.verify(_cert(pki.serving_cert), [])


def test_admin_cert_subject(pki: PKI) -> None:
    admin = _cert(pki.admin_cert)
    admin.verify_directly_issued_by(_cert(pki.ca_cert))
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kplane-admin"
    assert [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:masters"]
    assert _eku(admin) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_front_proxy_client_signed_by_front_proxy_ca(pki: PKI) -> None:
    client = _cert(pki.front_proxy_client_cert)
    client.verify_directly_issued_by(_cert(pki.front_proxy_ca_cert))
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "front-proxy-client"
    with pytest.raises(ValueError):
        client.verify_directly_issued_by(_cert(pki.ca_cert))  # a different CA than the cluster CA


def test_sa_key_pair_matches(pki: PKI) -> None:
    key = serialization.load_pem_private_key(pki.sa_key.read_bytes(), password=None)
    pub = serialization.load_pem_public_key(pki.sa_pub.read_bytes())
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*fmt) == pub.public_bytes(*fmt)


def test_second_ensure_reuses_files(pki: PKI) -> None:
    before = {p.name: p.read_bytes() for p in pki.dir.iterdir()}
    again = ensure_pki(pki.dir, hosts=["10.0.0.7", "kplane.example.com"])
    assert again == pki
    assert {p.name: p.read_bytes() for p in pki.dir.iterdir()} == before


def test_new_host_reissues_only_the_serving_cert(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path, hosts=[])
    before = {p.name: p.read_bytes() for p in first.dir.iterdir()}
    ensure_pki(tmp_path, hosts=["192.168.1.5"])
    after = {p.name: p.read_bytes() for p in first.dir.iterdir()}
    changed = sorted(n for n in before if before[n] != after[n])
    assert changed == ["apiserver.crt", "apiserver.key"]
    assert "192.168.1.5" in _sans(_cert(first.serving_cert))[1]


def test_issue_helpers(tmp_path: Path) -> None:
    ca_pem, ca_key_pem = self_signed_ca("test-ca")
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    (tmp_path / "ca.key").write_bytes(ca_key_pem)
    cert_pem, key_pem = issue_client_cert(tmp_path / "ca.crt", tmp_path / "ca.key", "alice", ["dev", "ops"], 7)
    cert = _cert(cert_pem)
    cert.verify_directly_issued_by(_cert(ca_pem))
    assert cert.subject.rfc4514_string() == "CN=alice,O=ops,O=dev"
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 7  # 7 days + 1h backdating
    assert serialization.load_pem_private_key(key_pem, password=None) is not None
    srv_pem, _ = issue_serving_cert(tmp_path / "ca.crt", tmp_path / "ca.key", ["svc.ns.svc", "10.1.2.3"])
    assert _sans(_cert(srv_pem)) == ({"svc.ns.svc"}, {"10.1.2.3"})


def test_write_kubeconfig(pki: PKI, tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "admin.kubeconfig", "https://127.0.0.1:6443", pki.ca_cert.read_bytes(),
                            pki.admin_cert.read_bytes(), pki.admin_key.read_bytes())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = yaml.safe_load(path.read_text())
    assert cfg["kind"] == "Config" and cfg["apiVersion"] == "v1"
    assert cfg["current-context"] == "kplane"
    assert cfg["contexts"] == [{"name": "kplane", "context": {"cluster": "kplane", "user": "kplane-admin"}}]
    cluster = cfg["clusters"][0]
    assert cluster["name"] == "kplane"
    assert cluster["cluster"]["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == pki.ca_cert.read_bytes()
    user = cfg["users"][0]
    assert user["name"] == "kplane-admin"
    assert base64.b64decode(user["user"]["client-certificate-data"]) == pki.admin_cert.read_bytes()
    assert base64.b64decode(user["user"]["client-key-data"]) == pki.admin_key.read_bytes()


def test_tls_handshake_with_generated_certs(pki: PKI) -> None:
    """A real mutual-TLS handshake in memory: server uses apiserver.crt, client uses admin.crt."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.serving_cert, pki.serving_key)
    server_ctx.load_verify_locations(pki.ca_cert)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    client_ctx.load_cert_chain(pki.admin_cert, pki.admin_key)

    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="kubernetes.default.svc")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(10):
        for name, conn in (("c", client), ("s", server)):
            if not done[name]:
                try:
                    conn.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    assert done == {"c": True, "s": True}
    peer = server.getpeercert()
    assert ((("commonName", "kplane-admin"),) in peer["subject"]) is True
