"""Shared helpers for the aggregator unit tests: throwaway PKI and a TLS backend."""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from kplane.controlplane.pki import issue_client_cert, issue_serving_cert, self_signed_ca


@dataclass
class TestPKI:
    ca: Path
    ca_key: Path
    serving: Path
    serving_key: Path
    fp_ca: Path
    fp_ca_key: Path
    client: Path
    client_key: Path

    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca.read_bytes()).decode()


def make_pki(d: Path, hosts=("api.wardle.svc", "127.0.0.1")) -> TestPKI:
    def pair(name, data):
        (d / f"{name}.crt").write_bytes(data[0])
        (d / f"{name}.key").write_bytes(data[1])
        return d / f"{name}.crt", d / f"{name}.key"

    ca, ca_key = pair("ca", self_signed_ca("backend-ca"))
    serving, serving_key = pair("serving", issue_serving_cert(ca, ca_key, list(hosts)))
    fp_ca, fp_ca_key = pair("fp-ca", self_signed_ca("front-proxy-ca"))
    client, client_key = pair("client", issue_client_cert(fp_ca, fp_ca_key, "front-proxy-client"))
    return TestPKI(ca, ca_key, serving, serving_key, fp_ca, fp_ca_key, client, client_key)


def server_context(pki: TestPKI, require_client: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.serving, pki.serving_key)
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(pki.fp_ca))
    return ctx


async def start_app(app: web.Application, ctx: ssl.SSLContext | None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, port
