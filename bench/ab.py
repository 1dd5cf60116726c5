"""Interleaved A/B of two kplane builds on one core scenario: req/s and server CPU per request.

    python bench/ab.py REV_A REV_B [--op create] [--conc 1,32] [--rounds 4] [--duration 4]

REV_A and REV_B are git revisions (or paths of source trees holding a `kplane` package). Each
revision is checked out in a temporary worktree; one `kplane serve` per build runs from it
(PYTHONPATH), both on fresh data dirs, side by side. The rounds alternate A-B, B-A, ... so that
background load on this 2-core machine hits both alike; the generator is bench/_load.py's lean
client (bench/core.py's specs), 1 process at concurrency 1 and 2 at 32. Reported per build and
concurrency: the median over rounds of req/s and of the server's CPU per request (every round's
figure is listed too, to show the noise).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._load import ProcCPU, TLSFiles, run_load  # noqa: E402
from bench.core import API_SPECS  # noqa: E402
from kplane.testing import KplaneProcess, Kubectl  # noqa: E402

SETUP = (["create", "namespace", "bench-create"], ["create", "namespace", "bench"],
         ["create", "configmap", "get", "-n", "bench"],
         *(["create", "configmap", f"upd-{s}", "-n", "bench"] for s in range(32)))


def source_tree(rev: str, scratch: Path) -> Path:
    if (Path(rev) / "kplane").is_dir():
        return Path(rev)
    tree = scratch / rev.replace("/", "_")
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(tree), rev],
                   check=True, capture_output=True)
    return tree


def start_server(tree: Path) -> KplaneProcess:
    """`kplane serve` from `tree` (first on PYTHONPATH), with bench/core.py's objects."""
    server = KplaneProcess(env={"PYTHONPATH": str(tree)}).start(timeout=60)
    kubectl = Kubectl(server.kubeconfig)
    for args in SETUP:
        kubectl(*args)
    return server


def tls_files(server: KplaneProcess) -> TLSFiles:
    pki = server.data_dir / "pki"
    return TLSFiles(str(pki / "ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev_a")
    ap.add_argument("rev_b")
    ap.add_argument("--op", default="create", choices=sorted(API_SPECS))
    ap.add_argument("--conc", default="1,32")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=float, default=4.0)
    args = ap.parse_args()
    concurrencies = [int(c) for c in args.conc.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="kplane-ab-"))
    builds = [args.rev_a, args.rev_b]
    servers: dict[str, KplaneProcess] = {}
    try:
        for rev in builds:
            servers[rev] = start_server(source_tree(rev, scratch))
        results: dict[tuple[str, int], list[tuple[float, float]]] = {(r, c): [] for r in builds for c in concurrencies}
        for rnd in range(args.rounds):
            for rev in builds if rnd % 2 == 0 else builds[::-1]:
                server = servers[rev]
                assert server.proc is not None
                cpu = ProcCPU(server.proc.pid)
                for conc in concurrencies:
                    before = cpu.seconds()
                    res = run_load(server.url, tls_files(server), API_SPECS[args.op], concurrency=conc,
                                   duration=args.duration, warmup=0.5, processes=1 if conc == 1 else 2,
                                   client="lean")
                    if res.errors:
                        raise SystemExit(f"{rev}: {res.errors} failed requests")
                    ms_per_req = 1000 * (cpu.seconds() - before) / max(1, res.requests)
                    results[(rev, conc)].append((res.requests / res.seconds, ms_per_req))
        print(f"| build | conc | {args.op} req/s (median) | each round | server CPU ms/req (median) | each round |")
        print("|---|---:|---:|---|---:|---|")
        for (rev, conc), rows in results.items():
            rps, cpu_ms = [r[0] for r in rows], [r[1] for r in rows]
            print(f"| {rev} | {conc} | {statistics.median(rps):,.0f} | {' / '.join(f'{x:,.0f}' for x in rps)} "
                  f"| {statistics.median(cpu_ms):.2f} | {' / '.join(f'{x:.2f}' for x in cpu_ms)} |")
    finally:
        for server in servers.values():
            server.cleanup()
        for rev in builds:
            if not (Path(rev) / "kplane").is_dir():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                                str(scratch / rev.replace("/", "_"))], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
