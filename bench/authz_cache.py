"""Delegated authorization in an extension server: the SubjectAccessReview cache.

Authorized GETs of shop orders by a user with an RBAC Role (not system:masters, whose requests
skip the SubjectAccessReview) through kplane's aggregator to examples/shop, in three modes of the
extension server:

  AlwaysAllow   --authorization-mode=AlwaysAllow: no SubjectAccessReview at all (the baseline)
  cache on      the default: answers cached 10 s allowed / 10 s denied
  cache off     both TTLs 0: one SubjectAccessReview to kplane per request

Prints req/s, the ratio to AlwaysAllow, SubjectAccessReviews sent and the cache hit rate (read
from the extension's /metrics). The target is cache on >= 90% of AlwaysAllow.

    python bench/authz_cache.py [--seconds 8] [--concurrency 16] [--objects 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import ssl
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from kplane.controlplane.pki import issue_client_cert  # noqa: E402
from kplane.testing import ExtensionProcess, KplaneProcess, Kubectl  # noqa: E402

MODES = {
    "AlwaysAllow": ["--authorization-mode", "AlwaysAllow"],
    "cache on": [],
    "cache off": ["--authorization-webhook-cache-authorized-ttl", "0",
                  "--authorization-webhook-cache-unauthorized-ttl", "0"],
}
ORDERS = "/apis/shop.example.com/v1/namespaces/default/orders"
REPO = Path(__file__).resolve().parents[1]
RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: order-reader, namespace: default}
rules: [{apiGroups: [shop.example.com], resources: [orders], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bench-reads-orders, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: order-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bench-user}]
"""


def client_ssl(pki: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(cert, key)
    return ctx


async def load(url: str, ctx: ssl.SSLContext, names: list[str], seconds: float,
               concurrency: int) -> tuple[int, int]:
    ok = errors = 0
    deadline = time.monotonic() + seconds
    conn = aiohttp.TCPConnector(ssl=ctx, limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        async def worker(i: int) -> None:
            nonlocal ok, errors
            n = i
            while time.monotonic() < deadline:
                async with session.get(f"{url}{ORDERS}/{names[n % len(names)]}") as resp:
                    await resp.read()
                    if resp.status == 200:
                        ok += 1
                    else:
                        errors += 1
                n += concurrency
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return ok, errors


async def metrics(port: int, admin: tuple[Path, Path]) -> dict[str, float]:
    """The extension's own /metrics, read directly with kplane's admin certificate (system:masters)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(*admin)
    async with aiohttp.ClientSession() as s, s.get(f"https://127.0.0.1:{port}/metrics", ssl=ctx) as r:
        text = await r.text()
    return {k: float(v) for k, v in re.findall(r"^(\S+)\s+([0-9.e+-]+)$", text, re.M)}


async def run_mode(kp: KplaneProcess, kubectl: Kubectl, mode: str, args: argparse.Namespace,
                   user_ctx: ssl.SSLContext, objects: list[str]) -> dict[str, float]:
    admin = (kp.data_dir / "pki" / "admin.crt", kp.data_dir / "pki" / "admin.key")
    ext = ExtensionProcess(kp, "examples.shop", args=["--bind-address", "127.0.0.1", *MODES[mode]],
                           cwd=REPO)
    try:
        ext.start(apiservices=["v1.shop.example.com"], timeout=60)
        existing = set(kubectl("get", "orders", "-n", "default", "-o", "name").split())
        manifest = "\n---\n".join(json.dumps({"apiVersion": "shop.example.com/v1", "kind": "Order",
                                              "metadata": {"name": n, "namespace": "default"},
                                              "spec": {"item": "apple"}})
                                  for n in objects if f"order.shop.example.com/{n}" not in existing)
        if manifest:
            kubectl("create", "-f", "-", input=manifest)
        await load(kp.url, user_ctx, objects, 1.0, args.concurrency)  # warm up (connections, caches)
        before = await metrics(ext.port, admin)
        ok, errors = await load(kp.url, user_ctx, objects, args.seconds, args.concurrency)
        after = await metrics(ext.port, admin)
    finally:
        ext.cleanup()
    hits = after.get("kplane_extension_authorization_cache_hits_total", 0) - before.get(
        "kplane_extension_authorization_cache_hits_total", 0)
    misses = after.get("kplane_extension_authorization_cache_misses_total", 0) - before.get(
        "kplane_extension_authorization_cache_misses_total", 0)
    sars = after.get("kplane_extension_subjectaccessreviews_total", 0) - before.get(
        "kplane_extension_subjectaccessreviews_total", 0)
    return {"rps": ok / args.seconds, "errors": errors, "sars": sars,
            "hit_rate": hits / (hits + misses) if hits + misses else float("nan"), "requests": ok}


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--objects", type=int, default=50, help="distinct orders read (distinct SAR cache keys)")
    p.add_argument("--rounds", type=int, default=2, help="each mode runs this many times, interleaved")
    args = p.parse_args()

    with KplaneProcess() as kp:
        kubectl = Kubectl(kp.kubeconfig)
        pki = kp.data_dir / "pki"
        tmp = Path(tempfile.mkdtemp(prefix="authz-bench-"))
        cert, key = issue_client_cert(pki / "ca.crt", pki / "ca.key", "bench-user", ["bench"])
        (tmp / "u.crt").write_bytes(cert)
        (tmp / "u.key").write_bytes(key)
        user_ctx = client_ssl(pki, tmp / "u.crt", tmp / "u.key")
        kubectl("create", "-f", "-", input=RBAC)
        objects = [f"o{i}" for i in range(args.objects)]
        results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                results[mode].append(await run_mode(kp, kubectl, mode, args, user_ctx, objects))

    base = max(r["rps"] for r in results["AlwaysAllow"])
    print(f"authorized GETs through kplane -> examples/shop; {args.concurrency} connections, "
          f"{args.objects} objects, {args.seconds:.0f} s x {args.rounds} rounds (best round shown)")
    print(f"{'mode':<12} {'req/s':>8} {'vs AlwaysAllow':>15} {'SARs sent':>10} {'SAR cache hit rate':>19} "
          f"{'errors':>7}")
    for mode, runs in results.items():
        best = max(runs, key=lambda r: r["rps"])
        rate = "-" if mode == "AlwaysAllow" else f"{best['hit_rate'] * 100:.2f}%"
        print(f"{mode:<12} {best['rps']:>8.0f} {best['rps'] / base * 100:>14.1f}% {best['sars']:>10.0f} "
              f"{rate:>19} {sum(int(r['errors']) for r in runs):>7}")
    print("all rounds (req/s): " + "; ".join(f"{m}: " + ", ".join(f"{r['rps']:.0f}" for r in runs)
                                            for m, runs in results.items()))


if __name__ == "__main__":
    asyncio.run(main())
