"""What one write costs etcd itself, next to what it costs the client (issue 7's ceiling).

    python -m bench.etcd_cost [--duration 3] [--rounds 2] [--concurrency 32]

Starts its own etcd (Debian `etcd-server`) on loopback and drives it from kplane's own etcd
client (kplane/storage/etcd_http.py, etcd's v3 JSON gateway) at one concurrency, interleaving
three operations round by round:

- `put`: a raw put of a new key (issue 7's baseline, "raw client puts");
- `txn`: the transaction a kplane create is, `txn(create_revision == 0 -> put)`, sent raw;
- `EtcdStore.create`: the same through kplane's storage layer (the txn plus its bookkeeping).

For each: ops/s, and the CPU per operation of the etcd process (from /proc) and of this client
process. On a machine where the client, kplane and etcd share the cores, etcd's own CPU per
create bounds what kplane-on-etcd can reach, whatever kplane does.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._load import ProcCPU  # noqa: E402
from kplane.storage.etcd import open_etcd_store  # noqa: E402
from kplane.storage.etcd_http import EtcdHTTP  # noqa: E402
from kplane.testing.etcd import EtcdProcess, etcd_binary  # noqa: E402

VALUE = b'{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"x"}}' * 4


async def run(url: str, etcd_pid: int, duration: float, rounds: int, concurrency: int) -> None:
    client = EtcdHTTP([url])
    store = await open_etcd_store([url], prefix="/bench-cost", root="")
    value = base64.b64encode(VALUE).decode()
    seq = 0

    async def put() -> None:
        nonlocal seq
        seq += 1
        await client.call("/v3/kv/put", {"key": base64.b64encode(f"/raw/p{seq}".encode()).decode(), "value": value})

    async def txn() -> None:
        nonlocal seq
        seq += 1
        key = base64.b64encode(f"/raw/t{seq}".encode()).decode()
        await client.call("/v3/kv/txn", {
            "compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": value}}], "failure": []})

    async def create() -> None:
        nonlocal seq
        seq += 1
        await store.create(f"/c/k{seq}", VALUE)

    ops = {"put": put, "txn": txn, "EtcdStore.create": create}
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in ops}
    etcd_cpu = ProcCPU(etcd_pid)
    for _ in range(rounds):
        for name, op in ops.items():
            done = 0
            stop = time.perf_counter() + duration

            async def loop(op=op, stop=stop) -> None:
                nonlocal done
                while time.perf_counter() < stop:
                    await op()
                    done += 1

            e0, c0, t0 = etcd_cpu.seconds(), time.process_time(), time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(concurrency)))
            e1, c1, t1 = etcd_cpu.seconds(), time.process_time(), time.perf_counter()
            results[name].append((done / (t1 - t0), 1e6 * (e1 - e0) / done, 1e6 * (c1 - c0) / done))
    await store.close()
    await client.close()

    put_rate = statistics.median(r[0] for r in results["put"])
    print(f"| operation (c={concurrency}) | ops/s | of put | etcd CPU µs/op | client CPU µs/op | each round (ops/s) |")
    print("|---|---:|---:|---:|---:|---|")
    for name, rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        print(f"| {name} | {rate:,.0f} | {rate / put_rate:.0%} | {statistics.median(r[1] for r in rows):.0f} "
              f"| {statistics.median(r[2] for r in rows):.0f} | {' / '.join(f'{r[0]:,.0f}' for r in rows)} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    if etcd_binary() is None:
        raise SystemExit("etcd not found: apt-get install -y etcd-server")
    etcd = EtcdProcess().start()
    try:
        assert etcd.proc is not None
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(run(etcd.url, etcd.proc.pid, args.duration, args.rounds, args.concurrency))
    finally:
        etcd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
