"""Delegated authorization in an extension server: the SubjectAccessReview cache.

Authorized GETs by a user with an RBAC Role (not system:masters, whose requests skip the
SubjectAccessReview) through kplane's aggregator to an extension server (the shop's Order,
declared with kplane.extension) in three modes, each its own server and API group, all
running at once:

  AlwaysAllow   --authorization-mode=AlwaysAllow: no SubjectAccessReview at all (the baseline)
  cache on      the default: answers cached 10 s allowed / 10 s denied
  cache off     both TTLs 0: one SubjectAccessReview to kplane per request

Every connection cycles through the three modes request by request, so background load on a
shared machine hits all three alike; a mode's throughput is its requests divided by the time
spent waiting for them, times the connections. Prints req/s, the ratio to AlwaysAllow,
SubjectAccessReviews sent and the SAR cache hit rate (from the extensions' /metrics). Target:
cache on >= 90% of AlwaysAllow.

    python bench/authz_cache.py [--seconds 20] [--concurrency 12] [--objects 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import ssl
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout

from kplane.controlplane.pki import issue_client_cert  # noqa: E402
from kplane.testing import ExtensionProcess, KplaneProcess, Kubectl  # noqa: E402

MODES = {
    "AlwaysAllow": ("a", ["--authorization-mode", "AlwaysAllow"]),
    "cache on": ("b", []),
    "cache off": ("c", ["--authorization-webhook-cache-authorized-ttl", "0",
                        "--authorization-webhook-cache-unauthorized-ttl", "0"]),
}
GROUP_ENV = "KPLANE_AUTHZ_BENCH_GROUP"


def group_of(mode: str) -> str:
    return f"{MODES[mode][0]}.authz-bench.example.com"


def rbac(groups: list[str]) -> str:
    return f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: order-reader, namespace: default}}
rules: [{{apiGroups: {json.dumps(groups)}, resources: [orders], verbs: [get, list]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: bench-reads-orders, namespace: default}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: order-reader}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: bench-user}}]
"""


def extension_app() -> object:
    """The extension server each mode runs (`python -m bench.authz_cache --kubeconfig ...`)."""
    from kplane.extension import ExtensionServer, resource

    group = os.environ[GROUP_ENV]
    app = ExtensionServer(group=group, version="v1", namespace=group.split(".")[0] + "-authz-bench")

    @resource(app, kind="Order", plural="orders", printer_columns=[("Item", ".spec.item")])
    class Order:
        item: str
        qty: int = 1

    return app


async def load(url: str, ctx: ssl.SSLContext, objects: list[str], seconds: float,
               concurrency: int) -> dict[str, dict[str, float]]:
    modes = list(MODES)
    stats = {m: {"ok": 0, "errors": 0, "wait": 0.0} for m in modes}
    deadline = time.monotonic() + seconds
    conn = aiohttp.TCPConnector(ssl=ctx, limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        async def worker(i: int) -> None:
            n = i
            while time.monotonic() < deadline:
                mode = modes[n % len(modes)]
                name = objects[(n // len(modes)) % len(objects)]
                path = f"/apis/{group_of(mode)}/v1/namespaces/default/orders/{name}"
                start = time.monotonic()
                async with session.get(url + path) as resp:
                    await resp.read()
                    s = stats[mode]
                    s["wait"] += time.monotonic() - start
                    s["ok" if resp.status == 200 else "errors"] += 1
                n += 1
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    for s in stats.values():
        s["rps"] = s["ok"] / s["wait"] * concurrency if s["wait"] else 0.0
    return stats


async def metrics(port: int, admin: tuple[Path, Path]) -> dict[str, float]:
    """An extension's own /metrics, read directly with kplane's admin certificate (system:masters)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(*admin)
    async with aiohttp.ClientSession() as s, s.get(f"https://127.0.0.1:{port}/metrics", ssl=ctx) as r:
        text = await r.text()
    return {k: float(v) for k, v in re.findall(r"^(\S+)\s+([0-9.e+-]+)$", text, re.M)}


async def run(args: argparse.Namespace) -> None:
    with KplaneProcess() as kp:
        kubectl = Kubectl(kp.kubeconfig)
        pki = kp.data_dir / "pki"
        admin = (pki / "admin.crt", pki / "admin.key")
        tmp = Path(tempfile.mkdtemp(prefix="authz-bench-"))
        cert, key = issue_client_cert(pki / "ca.crt", pki / "ca.key", "bench-user", ["bench"])
        (tmp / "u.crt").write_bytes(cert)
        (tmp / "u.key").write_bytes(key)
        user = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        user.load_cert_chain(tmp / "u.crt", tmp / "u.key")
        kubectl("create", "-f", "-", input=rbac([group_of(m) for m in MODES]))
        objects = [f"o{i}" for i in range(args.objects)]
        servers: dict[str, ExtensionProcess] = {}
        try:
            for mode, (_, flags) in MODES.items():
                servers[mode] = ExtensionProcess(
                    kp, "bench.authz_cache", args=["--bind-address", "127.0.0.1", *flags], cwd=REPO,
                    env={GROUP_ENV: group_of(mode)}, apiservices=[f"v1.{group_of(mode)}"]).start(timeout=60)
                kubectl("create", "-f", "-", input="\n---\n".join(json.dumps({
                    "apiVersion": f"{group_of(mode)}/v1", "kind": "Order",
                    "metadata": {"name": n,
                                 "namespace": "default"}, "spec": {"item": "apple"}}) for n in objects))
            await load(kp.url, user, objects, 2.0, args.concurrency)  # warm up: connections, caches
            before = {m: await metrics(s.port, admin) for m, s in servers.items()}
            stats = await load(kp.url, user, objects, args.seconds, args.concurrency)
            after = {m: await metrics(s.port, admin) for m, s in servers.items()}
        finally:
            for s in servers.values():
                s.cleanup()

    def delta(mode: str, name: str) -> float:
        return after[mode].get(name, 0.0) - before[mode].get(name, 0.0)

    base = stats["AlwaysAllow"]["rps"]
    print(f"authorized GETs through kplane -> extension server; {args.concurrency} connections cycling "
          f"through the 3 modes, {args.objects} objects per mode, {args.seconds:g} s")
    print(f"{'mode':<12} {'requests':>9} {'req/s':>8} {'vs AlwaysAllow':>15} {'SARs sent':>10} "
          f"{'SAR cache hit rate':>19} {'errors':>7}")
    for mode, s in stats.items():
        hits = delta(mode, "kplane_extension_authorization_cache_hits_total")
        misses = delta(mode, "kplane_extension_authorization_cache_misses_total")
        rate = f"{hits / (hits + misses) * 100:.2f}%" if hits + misses else "-"
        sars = delta(mode, "kplane_extension_subjectaccessreviews_total")
        print(f"{mode:<12} {s['ok']:>9.0f} {s['rps']:>8.0f} {s['rps'] / base * 100:>14.1f}% "
              f"{sars:>10.0f} {rate:>19} {s['errors']:>7.0f}")


def main() -> None:
    if GROUP_ENV in os.environ:  # started by run() as one of the extension servers
        extension_app().run()  # type: ignore[attr-defined]
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--concurrency", type=int, default=12)
    p.add_argument("--objects", type=int, default=50,
                   help="distinct orders per mode (distinct SAR cache keys)")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
