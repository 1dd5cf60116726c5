"""Storage benchmark (issue 7): kplane on SQLite vs kplane on etcd vs raw etcd, one run.

    python -m bench.storage [--duration 3] [--skip-replicas]

Starts its own etcd (Debian `etcd-server`) on free loopback ports and measures, closed loop:

- raw etcd from kplane's own etcd client (kplane/storage/etcd_http.py): puts of new keys,
  single-key ranges, and the EtcdStore's create transaction, at concurrency 1 and 32;
- through `kplane serve` (HTTPS, admin client cert, bench/_load.py generators) with
  --storage sqlite and --storage etcd: create, get and list (50 ConfigMaps) of ConfigMaps at
  concurrency 1 and 32, and watch delivery (events/s one watcher receives during creates at c=32,
  with a check that no event is lost);
- one etcd-backed replica vs two replicas sharing the etcd (creates at c=32 split evenly).

Each row also shows the CPU share (of one core) of the load generator and of the server
processes in the window: on a 2-core machine the client, kplane and etcd compete for the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._load import LoadResult, ProcCPU, RequestSpec, TLSFiles, run_load  # noqa: E402

LIST_SIZE = 50
CONCURRENCY = (1, 32)


def _ms(v: float) -> str:
    return f"{v * 1000:.1f}"


# -- raw etcd ------------------------------------------------------------------------------


async def _raw_etcd(url: str, duration: float) -> dict[tuple[str, int], tuple[float, float]]:
    """(op, concurrency) -> (ops/s, p50 seconds) for raw puts, ranges and the store's create txn."""
    import base64

    from kplane.storage.etcd import open_etcd_store
    from kplane.storage.etcd_http import EtcdHTTP

    client = EtcdHTTP([url])
    store = await open_etcd_store([url], prefix="/bench-store", root="")
    seq = 0
    value = base64.b64encode(b'{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"x"}}' * 4).decode()
    await client.call("/v3/kv/put", {"key": base64.b64encode(b"/bench-raw/get").decode(), "value": value})

    async def put() -> None:
        nonlocal seq
        seq += 1
        await client.call("/v3/kv/put", {"key": base64.b64encode(f"/bench-raw/k{seq}".encode()).decode(),
                                         "value": value})

    async def rng() -> None:
        await client.call("/v3/kv/range", {"key": base64.b64encode(b"/bench-raw/get").decode()})

    async def create() -> None:
        nonlocal seq
        seq += 1
        await store.create(f"/c/k{seq}", base64.b64decode(value))

    out = {}
    for name, op in (("put", put), ("range", rng), ("store create (txn)", create)):
        for conc in CONCURRENCY:
            lat: list[float] = []
            stop = time.perf_counter() + duration

            async def loop(op=op, lat=lat, stop=stop) -> None:
                while time.perf_counter() < stop:
                    t0 = time.perf_counter()
                    await op()
                    lat.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(conc)))
            lat.sort()
            out[(name, conc)] = (len(lat) / (time.perf_counter() - t0), lat[len(lat) // 2])
    await store.close()
    await client.close()
    return out


# -- through kplane ------------------------------------------------------------------------


def _tls(kp) -> TLSFiles:
    pki = kp.data_dir / "pki"
    return TLSFiles(str(pki / "ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))


def _setup(kp, tls: TLSFiles) -> None:
    import json
    import ssl
    import urllib.request

    ctx = tls.client_context()

    def post(path: str, body: dict) -> None:
        req = urllib.request.Request(kp.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, context=ctx, timeout=10).read()
        except urllib.error.HTTPError as e:
            if e.code != 409:
                raise

    del ssl
    for ns in ("bench", "bench-list", "bench-watch"):
        post("/api/v1/namespaces", {"metadata": {"name": ns}})
    for i in range(32):
        post("/api/v1/namespaces/bench/configmaps", {"metadata": {"name": f"get-{i}"}, "data": {"k": "v"}})
    for i in range(LIST_SIZE):
        post("/api/v1/namespaces/bench-list/configmaps", {"metadata": {"name": f"l-{i}"}, "data": {"k": "v"}})


SPECS = {
    "create": RequestSpec("POST", "/api/v1/namespaces/bench/configmaps",
                          '{"metadata":{"name":"c-{n}"},"data":{"k":"v"}}', expect=(201,)),
    "get": RequestSpec("GET", "/api/v1/namespaces/bench/configmaps/get-{slot}"),
    "list": RequestSpec("GET", "/api/v1/namespaces/bench-list/configmaps"),
}


def _measure(kps: list, tls: TLSFiles, spec: RequestSpec, conc: int, duration: float,
             others: list[int]) -> tuple[LoadResult, float]:
    """Load split over the replicas; (combined result, server-side CPU share incl. etcd)."""
    cpus = [ProcCPU(kp.proc.pid) for kp in kps] + [ProcCPU(p) for p in others]
    before = [c.seconds() for c in cpus]
    results: list[LoadResult] = [None] * len(kps)  # type: ignore[list-item]

    def one(i: int) -> None:
        results[i] = run_load(kps[i].url, tls, spec, concurrency=conc // len(kps) or 1, duration=duration,
                              warmup=0.5)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(kps))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    server = sum(c.seconds() - b for c, b in zip(cpus, before, strict=True)) / wall
    lat = [x for r in results for x in r.latencies]
    combined = LoadResult(sum(r.requests for r in results), sum(r.errors for r in results),
                          max(r.seconds for r in results), lat, sum(r.client_cpu for r in results))
    return combined, server


async def _watch_rate(kp, tls: TLSFiles, duration: float) -> tuple[float, int, int]:
    """Events/s one watcher receives while creates run at c=32; (rate, events, creates)."""
    import aiohttp
    import orjson

    conn = aiohttp.TCPConnector(ssl=tls.client_context())
    events = 0
    caught_up = asyncio.Event()
    total = -1
    async with aiohttp.ClientSession(connector=conn) as s:
        async with s.get(kp.url + "/api/v1/namespaces/bench-watch/configmaps?watch=1&resourceVersion=0",
                         timeout=aiohttp.ClientTimeout(total=None)) as resp:
            async def read() -> None:
                nonlocal events
                async for line in resp.content:
                    if orjson.loads(line)["type"] == "ADDED":
                        events += 1
                        if events == total:
                            caught_up.set()

            reader = asyncio.create_task(read())
            spec = RequestSpec("POST", "/api/v1/namespaces/bench-watch/configmaps",
                               '{"metadata":{"name":"w-{n}"},"data":{"k":"v"}}', expect=(201,))
            t0 = time.perf_counter()
            res = await asyncio.to_thread(run_load, kp.url, tls, spec, concurrency=32, duration=duration,
                                          warmup=0.0)
            # Creates made outside the measured window count too: compare with the namespace's size.
            async with s.get(kp.url + "/api/v1/namespaces/bench-watch/configmaps") as lr:
                total = len((await lr.json())["items"])
            if events < total:
                try:
                    await asyncio.wait_for(caught_up.wait(), 10)
                except TimeoutError:
                    pass
            elapsed = time.perf_counter() - t0
            reader.cancel()
    del res
    return events / elapsed, events, total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--skip-replicas", action="store_true")
    args = ap.parse_args()

    from kplane.testing import KplaneProcess
    from kplane.testing.etcd import INSTALL_HINT, EtcdProcess, etcd_binary

    if etcd_binary() is None:
        print(f"etcd not found: {INSTALL_HINT}")
        return 2
    print(f"machine: {os.cpu_count()} cores; etcd, kplane and the load generators share them", flush=True)
    with EtcdProcess() as etcd:
        etcd_pid = etcd.proc.pid
        raw = asyncio.run(_raw_etcd(etcd.url, args.duration))
        for (name, conc), (rate, p50) in raw.items():
            print(f"  raw etcd {name:18} c={conc:<2} {rate:8.0f}/s p50 {_ms(p50)} ms", flush=True)

        results: dict[tuple[str, str, int], tuple[LoadResult, float]] = {}
        watch: dict[str, tuple[float, int, int]] = {}
        for backend in ("sqlite", "etcd"):
            extra = ["--storage", "etcd", "--etcd-servers", etcd.url] if backend == "etcd" else []
            kp = KplaneProcess(extra_args=extra).start()
            try:
                tls = _tls(kp)
                _setup(kp, tls)
                others = [etcd_pid] if backend == "etcd" else []
                for op in ("create", "get", "list"):
                    for conc in CONCURRENCY:
                        res = _measure([kp], tls, SPECS[op], conc, args.duration, others)
                        results[(backend, op, conc)] = res
                        print(f"  kplane/{backend:6} {op:6} c={conc:<2} {res[0].rps:8.0f}/s p50 "
                              f"{_ms(res[0].pct(50))} ms errors {res[0].errors} client cpu "
                              f"{res[0].client_cpu_share:.0%} server cpu {res[1]:.0%}", flush=True)
                watch[backend] = asyncio.run(_watch_rate(kp, tls, args.duration))
                print(f"  kplane/{backend:6} watch {watch[backend][0]:.0f} events/s "
                      f"({watch[backend][1]}/{watch[backend][2]} events)", flush=True)
            finally:
                kp.stop()
                shutil.rmtree(kp.data_dir, ignore_errors=True)

        replicas: dict[int, tuple[LoadResult, float]] = {}
        if not args.skip_replicas:
            a = KplaneProcess(extra_args=["--storage", "etcd", "--etcd-servers", etcd.url]).start()
            bdir = Path(tempfile.mkdtemp(prefix="kplane-bench-b-"))
            shutil.copytree(a.data_dir / "pki", bdir / "pki")
            b = KplaneProcess(data_dir=bdir, extra_args=["--storage", "etcd", "--etcd-servers", etcd.url])
            b.start()
            try:
                tls = _tls(a)
                for n, kps in ((1, [a]), (2, [a, b])):
                    replicas[n] = _measure(kps, tls, SPECS["create"], 32, args.duration, [etcd_pid])
                    print(f"  {n} replica(s) create c=32 {replicas[n][0].rps:.0f}/s", flush=True)
            finally:
                for kp in (a, b):
                    kp.stop()
                    shutil.rmtree(kp.data_dir, ignore_errors=True)

    print()
    print("| operation | conc | kplane+SQLite req/s | p50 ms | kplane+etcd req/s | p50 ms | etcd/SQLite | "
          "client CPU (etcd run) | kplane+etcd CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for op in ("create", "get", "list"):
        for conc in CONCURRENCY:
            s, _ = results[("sqlite", op, conc)]
            e, srv = results[("etcd", op, conc)]
            label = f"list ({LIST_SIZE} items)" if op == "list" else op
            print(f"| {label} | {conc} | {s.rps:.0f} | {_ms(s.pct(50))} | {e.rps:.0f} | {_ms(e.pct(50))} | "
                  f"{e.rps / s.rps:.0%} | {e.client_cpu_share:.0%} | {srv:.0%} |")
    for backend in ("sqlite", "etcd"):
        rate, got, total = watch[backend]
        print(f"| watch ({backend}) | 32 writers | {rate:.0f} events/s | | | | | {got}/{total} delivered | |")
    print()
    print("| raw etcd (kplane's client) | conc | ops/s | p50 ms |")
    print("|---|---:|---:|---:|")
    for (name, conc), (rate, p50) in raw.items():
        print(f"| {name} | {conc} | {rate:.0f} | {_ms(p50)} |")
    put32 = raw[("put", 32)][0]
    create32 = results[("etcd", "create", 32)][0].rps
    print(f"\nkplane+etcd create at c=32 / raw etcd put at c=32: {create32 / put32:.0%} (target >= 50%)")
    if replicas:
        print()
        print("| replicas | create req/s (c=32) | p50 ms | client CPU | kplane+etcd CPU |")
        print("|---:|---:|---:|---:|---:|")
        for n, (r, srv) in replicas.items():
            print(f"| {n} | {r.rps:.0f} | {_ms(r.pct(50))} | {r.client_cpu_share:.0%} | {srv:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
