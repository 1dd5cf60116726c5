"""Core API benchmark: GET, LIST (1,000 objects), create and update through the API,
next to (a) a bare aiohttp handler answering the same JSON over the same TLS setup
and (b) the raw SQLiteStore calls in-process; then watch fan-out to 1,000 watchers.

    python bench/core.py                 # full run (about 2.5 minutes)
    python bench/core.py --duration 2    # shorter windows

Everything is measured in one run on this machine and every ratio compares
figures from that run. The API server (`python -m kplane serve`, uvloop) and the
bare server each run in a subprocess; the load generator (bench/_load.py) runs
in one or more further processes. Its CPU use is reported: on a small machine
the client competes with the server for the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._load import LoadResult, ProcCPU, RequestSpec, TLSFiles, percentile, run_load  # noqa: E402

CM_DATA = {"app.properties": "color=blue\nsize=large\nreplicas=3\n" * 4, "mode": "benchmark"}
LABELS = {"app": "bench", "tier": "backend"}
LIST_SIZE = 1000
WATCHERS = 1000
WATCH_WRITES = 20


def configmap(name: str, namespace: str, extra: str = "") -> dict[str, Any]:
    data = dict(CM_DATA)
    if extra:
        data["rev"] = extra
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": LABELS}, "data": data}


def body_template(name: str, namespace: str, extra: str = "") -> str:
    return orjson.dumps(configmap(name, namespace, extra)).decode()


# ---- the bare aiohttp server (baseline a) ------------------------------------


def bare_server_main(data_dir: str, port: int, get_file: str, list_file: str) -> None:
    """Serve fixed JSON with the API server's own TLS context (same cert, same client-cert check)."""
    import uvloop
    from aiohttp import web

    from kplane.controlplane.controlplane import serving_ssl_context
    from kplane.controlplane.pki import PKI

    get_body = Path(get_file).read_bytes()
    list_body = Path(list_file).read_bytes()

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=get_body, content_type="application/json")

    async def list_(request: web.Request) -> web.Response:
        return web.Response(body=list_body, content_type="application/json")

    async def write(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=get_body, status=201 if request.method == "POST" else 200,
                            content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/get", get)
        app.router.add_get("/list", list_)
        app.router.add_post("/write", write)
        app.router.add_put("/write", write)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        ctx = serving_ssl_context(PKI.at(Path(data_dir) / "pki"))
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx, backlog=1024).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.install()
    asyncio.run(main())


# ---- raw store (baseline b) -----------------------------------------------------


@dataclass
class StoreResult:
    requests: int
    seconds: float
    latencies: list[float]
    cpu: float = 0.0  # CPU seconds of this process (loop + SQLite worker thread) in the window

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, p: float) -> float:
        return percentile(self.latencies, p)


_SEQ = itertools.count()


async def _store_load(op: Any, concurrency: int, duration: float, warmup: float) -> StoreResult:
    state = {"record": False, "stop": False}
    lat: list[float] = []

    async def loop(slot: int) -> None:
        while not state["stop"]:
            n = next(_SEQ)
            t0 = time.perf_counter()
            await op(slot, n)
            if state["record"]:
                lat.append(time.perf_counter() - t0)

    tasks = [asyncio.create_task(loop(s)) for s in range(concurrency)]
    await asyncio.sleep(warmup)
    state["record"] = True
    t0 = os.times()
    await asyncio.sleep(duration)
    t1 = os.times()
    state["record"] = False
    state["stop"] = True
    await asyncio.gather(*tasks)
    return StoreResult(len(lat), duration, lat, (t1.user + t1.system) - (t0.user + t0.system))


class StoreBench:
    """SQLiteStore in this process on its own uvloop loop, pre-filled like the API server's data."""

    def __init__(self, path: str):
        import uvloop

        from kplane.storage.sqlite import open_sqlite_store

        self.runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        self.store = self.runner.run(open_sqlite_store(path))
        self.runner.run(self._fill())

    @staticmethod
    def value(name: str, ns: str, extra: str = "") -> bytes:
        return orjson.dumps(configmap(name, ns, extra))

    async def _fill(self) -> None:
        st, value = self.store, self.value
        await st.create("/registry/configmaps/bench/get", value("get", "bench"))
        for i in range(LIST_SIZE):
            await st.create(f"/registry/configmaps/bench-list/cm-{i:04d}", value(f"cm-{i:04d}", "bench-list"))
        for s in range(32):
            await st.create(f"/registry/configmaps/bench/upd-{s}", value(f"upd-{s}", "bench"))

    async def _op(self, name: str, slot: int, n: int) -> None:
        st, value = self.store, self.value
        if name == "get":
            await st.get("/registry/configmaps/bench/get")
        elif name == "list":
            await st.list("/registry/configmaps/bench-list/")
        elif name == "create":
            await st.create(f"/registry/configmaps/bench-create/c-{n}", value(f"c-{n}", "bench-create"))
        else:
            await st.update(f"/registry/configmaps/bench/upd-{slot}", value(f"upd-{slot}", "bench", str(n)),
                            expected_revision=0)

    def run(self, name: str, concurrency: int, duration: float, warmup: float) -> StoreResult:
        async def op(slot: int, n: int) -> None:
            await self._op(name, slot, n)

        return self.runner.run(_store_load(op, concurrency, duration, warmup))

    def close(self) -> None:
        self.runner.run(self.store.close())
        self.runner.close()


def merge_load(results: list[LoadResult]) -> LoadResult:
    return LoadResult(sum(r.requests for r in results), sum(r.errors for r in results),
                      sum(r.seconds for r in results), [x for r in results for x in r.latencies],
                      sum(r.client_cpu for r in results))


def merge_store(results: list[StoreResult]) -> StoreResult:
    return StoreResult(sum(r.requests for r in results), sum(r.seconds for r in results),
                       [x for r in results for x in r.latencies], sum(r.cpu for r in results))


# ---- watch fan-out -------------------------------------------------------------


async def _watchers_main(url: str, tls: TLSFiles, count: int, expect: int, deadline: float,
                         conn: Any) -> None:
    import aiohttp

    received: list[tuple[str, float]] = []
    connector = aiohttp.TCPConnector(ssl=tls.client_context(), limit=0)
    opened = [0]
    all_open = asyncio.Event()
    no_timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=no_timeout) as session:
        async def watch() -> None:
            got = 0
            async with session.get(url) as resp:
                opened[0] += 1
                if opened[0] == count:
                    all_open.set()
                async for line in resp.content:
                    t = time.monotonic()
                    ev = orjson.loads(line)
                    if ev.get("type") == "ADDED":
                        received.append((ev["object"]["metadata"]["name"], t))
                        got += 1
                        if got >= expect:
                            return

        tasks = [asyncio.create_task(watch()) for _ in range(count)]
        try:
            await asyncio.wait_for(all_open.wait(), 120)
        except TimeoutError:
            pass
        conn.send(("open", opened[0]))
        await asyncio.wait(tasks, timeout=max(1.0, deadline - time.time()))
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    conn.send(("done", received))
    conn.close()


def _watchers_entry(*args: Any) -> None:
    import uvloop

    uvloop.install()
    asyncio.run(_watchers_main(*args))


@dataclass
class WatchResult:
    watchers: int
    writes: int
    delays: list[float]
    missing: int
    open_seconds: float


def run_watch(base: str, tls: TLSFiles, client: SyncClient, processes: int, spacing: float,
              pyspy: str = "", server_pid: int = 0) -> WatchResult:
    import multiprocessing as mp

    rv = client.request("GET", "/api/v1/namespaces/bench-watch/configmaps")[1]["metadata"]["resourceVersion"]
    url = (f"{base}/api/v1/namespaces/bench-watch/configmaps?watch=1&resourceVersion={rv}"
           f"&timeoutSeconds=600")
    ctx = mp.get_context("spawn")
    per = [WATCHERS // processes + (1 if i < WATCHERS % processes else 0) for i in range(processes)]
    deadline = time.time() + 120 + WATCH_WRITES * spacing + 30
    procs, pipes = [], []
    t_open = time.perf_counter()
    for n in per:
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_watchers_entry, args=(url, tls, n, WATCH_WRITES, deadline, child),
                        daemon=True)
        p.start()
        child.close()
        procs.append(p)
        pipes.append(parent)
    opened = sum(pipe.recv()[1] for pipe in pipes)
    open_seconds = time.perf_counter() - t_open
    time.sleep(1.0)  # let the last watch handlers reach the cache
    sent: dict[str, float] = {}
    spy = _pyspy(pyspy, server_pid, "watch", WATCH_WRITES * spacing)
    for k in range(WATCH_WRITES):
        name = f"w-{k}"
        sent[name] = time.monotonic()
        client.request("POST", "/api/v1/namespaces/bench-watch/configmaps", configmap(name, "bench-watch"))
        time.sleep(spacing)
    if spy is not None:
        spy.wait(30)
    delays: list[float] = []
    for pipe in pipes:
        _, received = pipe.recv()
        delays.extend(t - sent[name] for name, t in received if name in sent)
    for p in procs:
        p.join(10)
    return WatchResult(opened, WATCH_WRITES, delays, opened * WATCH_WRITES - len(delays), open_seconds)


# ---- a small synchronous client for setup -------------------------------------------


class SyncClient:
    def __init__(self, base: str, tls: TLSFiles):
        import http.client

        self._http = http.client
        self.base = base
        self.ctx = tls.client_context()
        host, port = base.split("//", 1)[1].rsplit(":", 1)
        self.conn = http.client.HTTPSConnection(host, int(port), context=self.ctx)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any, bytes]:
        data = orjson.dumps(body) if body is not None else None
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json",
                                                            "Accept": "application/json"})
        resp = self.conn.getresponse()
        raw = resp.read()
        return resp.status, orjson.loads(raw) if raw else None, raw


# ---- orchestration -----------------------------------------------------------------------


def _start_bare(data_dir: str, get_file: str, list_file: str) -> tuple[subprocess.Popen[bytes], int]:
    from kplane.testing import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--bare-server", data_dir, str(port), get_file,
                             list_file],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if b"ready" not in line:
        raise RuntimeError("bare server did not start")
    return proc, port


def _pyspy(out_dir: str, pid: int, name: str, seconds: float) -> subprocess.Popen[bytes] | None:
    if not out_dir:
        return None
    os.makedirs(out_dir, exist_ok=True)
    return subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds + 0.99)),
                             "--format", "raw", "--rate", "200", "--gil", "-o", os.path.join(out_dir, f"{name}.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


@dataclass
class Row:
    op: str
    conc: int
    api: LoadResult
    server_cpu: float  # share of one core while the API was under load
    server_ms_per_req: float  # server CPU per request, warm-up requests included
    bare: LoadResult | None
    store: StoreResult | None


def _setup(client: SyncClient) -> tuple[bytes, bytes]:
    for ns in ("bench", "bench-list", "bench-create", "bench-watch"):
        client.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    client.request("POST", "/api/v1/namespaces/bench/configmaps", configmap("get", "bench"))
    for s in range(32):
        client.request("POST", "/api/v1/namespaces/bench/configmaps", configmap(f"upd-{s}", "bench"))
    for i in range(LIST_SIZE):
        client.request("POST", "/api/v1/namespaces/bench-list/configmaps",
                       configmap(f"cm-{i:04d}", "bench-list"))
    get_status, _, get_raw = client.request("GET", "/api/v1/namespaces/bench/configmaps/get")
    list_status, listed, list_raw = client.request("GET", "/api/v1/namespaces/bench-list/configmaps")
    assert get_status == 200 and list_status == 200 and len(listed["items"]) == LIST_SIZE, list_status
    return get_raw, list_raw


API_SPECS = {
    "get": RequestSpec("GET", "/api/v1/namespaces/bench/configmaps/get"),
    "list": RequestSpec("GET", "/api/v1/namespaces/bench-list/configmaps"),
    "create": RequestSpec("POST", "/api/v1/namespaces/bench-create/configmaps",
                          body_template("c-{n}", "bench-create")),
    "update": RequestSpec("PUT", "/api/v1/namespaces/bench/configmaps/upd-{slot}",
                          body_template("upd-{slot}", "bench", "{n}")),
}
BARE_SPECS = {
    "get": RequestSpec("GET", "/get"),
    "list": RequestSpec("GET", "/list"),
    "create": RequestSpec("POST", "/write", body_template("c-{n}", "bench-create")),
    "update": RequestSpec("PUT", "/write", body_template("upd-{slot}", "bench", "{n}")),
}


def _print_table(rows: list[Row]) -> None:
    print("| operation | conc | API req/s | API p50 ms | API p99 ms | bare req/s | bare p50 ms | API/bare "
          "| store op/s | store p50 ms | store p99 ms | API/store | gen CPU | server CPU "
          "| server CPU ms/req | store CPU ms/op |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        api, bare, st = r.api, r.bare, r.store
        bare_cols = (f"{bare.rps:.0f} | {_fmt_ms(bare.pct(50))} | {api.rps / bare.rps:.0%}"
                     if bare else "- | - | -")
        store_cols = (f"{st.rps:.0f} | {_fmt_ms(st.pct(50))} | {_fmt_ms(st.pct(99))} | {api.rps / st.rps:.0%}"
                      if st else "- | - | - | -")
        label = {"get": "GET one object", "list": f"LIST {LIST_SIZE}", "create": "create",
                 "update": "update"}[r.op]
        print(f"| {label} | {r.conc} | {api.rps:.0f} | {_fmt_ms(api.pct(50))} | {_fmt_ms(api.pct(99))} | "
              f"{bare_cols} | {store_cols} | {api.client_cpu_share:.0%} | {r.server_cpu:.0%} | "
              f"{r.server_ms_per_req:.2f} | {st.cpu / st.requests * 1000 if st else 0:.2f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=3.0, help="seconds measured per scenario and round")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=2,
                    help="API, bare and store windows alternate this many times per scenario (evens out "
                    "load from other processes on the machine)")
    ap.add_argument("--procs32", type=int, default=2, help="generator processes at concurrency 32")
    ap.add_argument("--watch-procs", type=int, default=4, help="processes holding the 1,000 watches")
    ap.add_argument("--watch-spacing", type=float, default=0.5, help="seconds between watched writes")
    ap.add_argument("--only", default="", help="comma list of get,list,create,update,watch")
    ap.add_argument("--client", choices=("aiohttp", "lean"), default="aiohttp",
                    help="load generator's HTTP client for the API and bare runs (bench/_load.py)")
    ap.add_argument("--pyspy", default="", help="directory: profile the server with py-spy per scenario "
                    "(collapsed stacks; slows the server, so figures from such a run are not comparable)")
    ap.add_argument("--bare-server", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_server:
        d, port, gf, lf = args.bare_server
        bare_server_main(d, int(port), gf, lf)
        return 0
    only = set(filter(None, args.only.split(","))) or {"get", "list", "create", "update", "watch"}

    from kplane.testing import KplaneProcess

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, load average {load[0]:.1f} at "
          f"start; server, baselines and generators share these cores", flush=True)
    rows: list[Row] = []
    watch = None
    with KplaneProcess() as kp, tempfile.TemporaryDirectory(prefix="kplane-bench-") as tmp:
        assert kp.proc is not None
        pki = kp.data_dir / "pki"
        tls = TLSFiles(str(pki / "ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))
        client = SyncClient(kp.url, tls)
        get_raw, list_raw = _setup(client)
        get_file, list_file = os.path.join(tmp, "get.json"), os.path.join(tmp, "list.json")
        Path(get_file).write_bytes(get_raw)
        Path(list_file).write_bytes(list_raw)
        bare, bare_port = _start_bare(str(kp.data_dir), get_file, list_file)
        bare_url = f"https://127.0.0.1:{bare_port}"
        store = StoreBench(os.path.join(tmp, "store.db"))
        print(f"GET body {len(get_raw)} B, LIST body {len(list_raw)} B ({LIST_SIZE} items); "
              f"server pid {kp.proc.pid}", flush=True)
        server_cpu = ProcCPU(kp.proc.pid)
        try:
            for op in ("get", "list", "create", "update"):
                if op not in only:
                    continue
                for conc in (1, 32):
                    procs = 1 if conc == 1 else args.procs32
                    apis, bares, stores, share, cpu_s, served = [], [], [], 0.0, 0.0, 0.0
                    for rnd in range(args.rounds):
                        c0 = server_cpu.seconds()
                        spy = _pyspy(args.pyspy if rnd == 0 else "", kp.proc.pid, f"{op}-c{conc}",
                                     args.duration + args.warmup)
                        apis.append(run_load(kp.url, tls, API_SPECS[op], concurrency=conc,
                                             duration=args.duration, warmup=args.warmup, processes=procs,
                                             client=args.client))
                        # The server's CPU over the whole call (idle while generators start, busy
                        # in warm-up and window); requests served estimated at the window's rate.
                        used = server_cpu.seconds() - c0
                        cpu_s += used
                        served += apis[-1].rps * (args.duration + args.warmup)
                        share += used / (args.duration + args.warmup)
                        if spy is not None:
                            spy.wait(30)
                        bares.append(run_load(bare_url, tls, BARE_SPECS[op], concurrency=conc,
                                              duration=args.duration, warmup=args.warmup, processes=procs,
                                              client=args.client))
                        stores.append(store.run(op, conc, args.duration, args.warmup))
                    row = Row(op, conc, merge_load(apis), share / args.rounds, cpu_s / served * 1000,
                              merge_load(bares), merge_store(stores))
                    rows.append(row)
                    print(f"  {op:6} c={conc:<2} API {row.api.rps:8.0f}/s  bare {row.bare.rps:8.0f}/s  "
                          f"store {row.store.rps:8.0f}/s  API errors {row.api.errors}", flush=True)
        finally:
            bare.terminate()
            bare.wait(10)
            store.close()
        if "watch" in only:
            watch = run_watch(kp.url, tls, client, args.watch_procs, args.watch_spacing, args.pyspy,
                              kp.proc.pid)

    print()
    if rows:
        _print_table(rows)
    if watch is not None:
        print()
        print(f"watch: {watch.watchers} watchers open (in {watch.open_seconds:.1f}s), {watch.writes} creates "
              f"{args.watch_spacing}s apart; delay from sending the write to each watcher reading the "
              f"event: p50 {_fmt_ms(percentile(watch.delays, 50))} ms, "
              f"p99 {_fmt_ms(percentile(watch.delays, 99))} ms, "
              f"max {_fmt_ms(max(watch.delays) if watch.delays else float('nan'))} ms; "
              f"{len(watch.delays)} delivered, {watch.missing} missing")
    targets = []
    for r in rows:
        if r.op == "get" and r.bare:
            ok = r.api.rps >= 0.4 * r.bare.rps
            targets.append(f"GET c={r.conc}: {r.api.rps / r.bare.rps:.0%} of bare "
                           f"(>= 40%: {'met' if ok else 'MISSED'})")
        if r.op == "create" and r.store:
            ok = r.api.rps >= 0.3 * r.store.rps
            targets.append(f"create c={r.conc}: {r.api.rps / r.store.rps:.0%} of store "
                           f"(>= 30%: {'met' if ok else 'MISSED'})")
    if watch is not None and watch.delays:
        p99 = percentile(watch.delays, 99)
        ok = p99 <= 1 and not watch.missing
        targets.append(f"watch p99 {p99:.3f}s (<= 1s: {'met' if ok else 'MISSED'})")
    if targets:
        print("targets: " + "; ".join(targets))
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
