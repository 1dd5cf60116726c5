"""The aggregator's proxy against the same extension server reached directly and through nginx.

    python bench/proxy.py [--duration 4] [--watches 2000] [--events 200]

One run starts a kplane (`kplane serve`), examples/wardle registered behind it and
nginx (Debian nginx-light, its own config in a temp dir, loopback ports) as a TLS
reverse proxy to the same wardle, then measures:

  * GET one flunder and LIST 20 flunders at concurrency 1 and 32: wardle directly
    (front-proxy client certificate + X-Remote-User, as the aggregator calls it),
    through kplane's proxy (admin client certificate) and through nginx (TLS in,
    mutual TLS with the front-proxy certificate out, identity headers set by nginx,
    upstream keep-alive) -- throughput and p50/p99 latency; "added" is the proxy's
    figure minus the direct one at the same percentile and concurrency; concurrency 1
    is measured twice: in timed windows, one target after another, and interleaved
    request by request across the targets (the latency verdict uses the latter);
  * watch latency: one watch direct, one through kplane and one through nginx see
    the same events; added delay = arrival through the proxy - arrival direct;
  * N concurrent watches through kplane to the one wardle, each of which must
    receive every one of a few events.

Prints tables and exits; results go to docs/performance.md. The load generator is
a lean HTTP/1.1 client (asyncio protocols on uvloop, one keep-alive connection per
concurrent worker), in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._load import LeanConnection  # noqa: E402
from kplane.testing import ExtensionProcess, KplaneProcess, free_port  # noqa: E402

GV = "/apis/wardle.example.com/v1alpha1"
GET_PATH = f"{GV}/namespaces/default/flunders/bench-0"
LIST_PATH = f"{GV}/namespaces/default/flunders"
LIST_SIZE = 20
WATCH_NS = "watch"
MARK = b'{"type":"'


# ---- processes -------------------------------------------------------------------------------------


NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    upstream wardle {{
        server 127.0.0.1:{backend};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass https://wardle;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host api.wardle.svc;
            proxy_set_header X-Remote-User kplane-admin;
            proxy_set_header X-Remote-Group system:masters;
            proxy_ssl_certificate {proxy_cert};
            proxy_ssl_certificate_key {proxy_key};
            proxy_ssl_trusted_certificate {backend_ca};
            proxy_ssl_verify on;
            proxy_ssl_name api.wardle.svc;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
            proxy_buffering off;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, tmp: Path, kp: KplaneProcess, wardle: ExtensionProcess, workers: int):
        self.port = free_port()
        pki = kp.data_dir / "pki"
        d = tmp / "nginx"
        d.mkdir()
        conf = NGINX_CONF.format(
            workers=workers, tmp=d, backend=wardle.port, port=self.port, cert=pki / "apiserver.crt",
            key=pki / "apiserver.key", proxy_cert=pki / "front-proxy-client.crt",
            proxy_key=pki / "front-proxy-client.key", backend_ca=wardle.data_dir / "pki" / "ca.crt")
        (d / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)],
                                     stdout=subprocess.DEVNULL, stderr=open(d / "stderr.log", "ab"))
        self.dir = d

    def pids(self) -> list[int]:
        children = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True,
                                  check=False).stdout.split()
        return [self.proc.pid, *map(int, children)]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- a lean HTTP/1.1 client --------------------------------------------------------------------------


@dataclass
class Endpoint:
    name: str
    host: str
    port: int
    ctx: ssl.SSLContext
    server_hostname: str
    extra_headers: str = ""

    def request(self, method: str, path: str, body: bytes = b"") -> bytes:
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.server_hostname}\r\nUser-Agent: kplane-bench\r\n"
                f"Accept: application/json\r\n{self.extra_headers}")
        if body or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode() + body


# One keep-alive request/response connection (Content-Length answers only), shared with bench/_load.py.
Conn = LeanConnection


async def connect(ep: Endpoint) -> Conn:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(Conn, ep.host, ep.port, ssl=ep.ctx,
                                            server_hostname=ep.server_hostname)
    return proto


async def call(ep: Endpoint, method: str, path: str, body: object = None) -> tuple[int, dict]:
    conn = await connect(ep)
    try:
        raw = ep.request(method, path, json.dumps(body).encode() if body is not None else b"")
        _, status, data = await conn.send(raw)
        return status, json.loads(data) if data else {}
    finally:
        assert conn.transport is not None
        conn.transport.close()


@dataclass
class Result:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")


async def load(ep: Endpoint, path: str, concurrency: int, duration: float, warmup: float = 0.5) -> Result:
    raw = ep.request("GET", path)
    conns = [await connect(ep) for _ in range(concurrency)]
    res = Result()
    start = time.perf_counter()
    t_measure = start + warmup
    t_end = t_measure + duration

    async def worker(conn: Conn) -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end:
                return
            t1, status, _ = await conn.send(raw)
            if t0 >= t_measure:
                res.latencies.append(t1 - t0)
                res.requests += 1
                if status != 200:
                    res.errors += 1

    await asyncio.gather(*(worker(c) for c in conns))
    res.seconds = time.perf_counter() - t_measure
    for c in conns:
        assert c.transport is not None
        c.transport.close()
    return res


async def interleaved(targets: list[Endpoint], path: str, duration: float, warmup: float = 0.5) -> dict[str, Result]:
    """Concurrency 1 on every target at once, request by request: one keep-alive connection per
    target, and one GET to each in turn (direct, kplane, nginx, ...) until `duration` is over.
    Every target is measured in the same moments, so a slow stretch of this shared machine lands
    on all of them alike instead of on whichever target had the window (the timed windows of
    `load` run one target after another)."""
    conns = {ep.name: (await connect(ep), ep.request("GET", path)) for ep in targets}
    results = {ep.name: Result() for ep in targets}
    start = time.perf_counter()
    t_measure, t_end = start + warmup, start + warmup + duration
    while time.perf_counter() < t_end:
        for name, (conn, raw) in conns.items():
            t0 = time.perf_counter()
            t1, status, _ = await conn.send(raw)
            if t0 >= t_measure:
                res = results[name]
                res.latencies.append(t1 - t0)
                res.requests += 1
                res.errors += status != 200
    for res in results.values():
        res.seconds = duration
    for conn, _ in conns.values():
        assert conn.transport is not None
        conn.transport.close()
    return results


# ---- watches ---------------------------------------------------------------------------------------------


class WatchConn(asyncio.Protocol):
    """A watch stream; counts events (newline-delimited JSON) and notes each arrival time."""

    def __init__(self, on_event: object = None) -> None:
        self.tail = b""
        self.events = 0
        self.arrivals: list[float] = []
        self.head_seen = asyncio.get_running_loop().create_future()
        self.on_event = on_event
        self.pending = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.head_seen.done():
            self.head_seen.set_exception(ConnectionError("watch connection lost"))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.head_seen.done():
            self.pending += data
            end = self.pending.find(b"\r\n\r\n")
            if end < 0:
                return
            status = int(self.pending[9:12])
            if status != 200:
                self.head_seen.set_exception(RuntimeError(f"watch answered {bytes(self.pending[:200])!r}"))
                return
            self.head_seen.set_result(None)
            data = bytes(self.pending[end + 4:])
            self.pending.clear()
        buf = self.tail + data
        n = buf.count(MARK)
        self.tail = buf[-(len(MARK) - 1):]
        if n:
            self.events += n
            self.arrivals.extend([now] * n)
            if self.on_event is not None:
                self.on_event(self, data)


async def open_watch(ep: Endpoint, path: str, factory: object = WatchConn) -> WatchConn:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(factory, ep.host, ep.port, ssl=ep.ctx,  # type: ignore[arg-type]
                                            server_hostname=ep.server_hostname)
    assert proto.transport is not None
    proto.transport.write(ep.request("GET", path))
    await asyncio.wait_for(proto.head_seen, 30)
    return proto


def flunder(name: str, ns: str) -> dict:
    return {"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder",
            "metadata": {"name": name, "namespace": ns}, "spec": {"reference": "bench"}}


async def watch_latency(direct: Endpoint, proxies: list[Endpoint], events: int) -> dict[str, list[float]]:
    """Added delay of each event through each proxy relative to the direct watch of the same events."""
    _, listed = await call(direct, "GET", f"{GV}/namespaces/{WATCH_NS}/flunders")
    rv = listed["metadata"]["resourceVersion"]
    path = f"{GV}/namespaces/{WATCH_NS}/flunders?watch=1&resourceVersion={rv}&allowWatchBookmarks=false"
    watches = {ep.name: await open_watch(ep, path) for ep in [direct, *proxies]}
    writer = await connect(direct)
    for i in range(events):
        raw = direct.request("POST", f"{GV}/namespaces/{WATCH_NS}/flunders",
                             json.dumps(flunder(f"w-{i}", WATCH_NS)).encode())
        _, status, _ = await writer.send(raw)
        assert status == 201, status
        await asyncio.sleep(0.01)
    deadline = time.monotonic() + 10
    while any(w.events < events for w in watches.values()) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    out: dict[str, list[float]] = {}
    base = watches[direct.name]
    for ep in proxies:
        w = watches[ep.name]
        n = min(len(w.arrivals), len(base.arrivals))
        out[ep.name] = [(w.arrivals[i] - base.arrivals[i]) * 1000 for i in range(n)]
        if n < events:
            print(f"  !! {ep.name} watch saw {w.events}/{events} events", flush=True)
    for w in watches.values():
        assert w.transport is not None
        w.transport.close()
    assert writer.transport is not None
    writer.transport.close()
    return out


async def many_watches(kplane: Endpoint, direct: Endpoint, n: int, events: int) -> dict[str, float]:
    ns = "many"
    _, listed = await call(direct, "GET", f"{GV}/namespaces/{ns}/flunders")
    rv = listed["metadata"]["resourceVersion"]
    path = f"{GV}/namespaces/{ns}/flunders?watch=1&resourceVersion={rv}&allowWatchBookmarks=false"
    t0 = time.perf_counter()
    watches: list[WatchConn] = []
    sem = asyncio.Semaphore(64)

    async def one() -> None:
        async with sem:
            watches.append(await open_watch(kplane, path))

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    opened = time.perf_counter() - t0
    created: list[float] = []
    for i in range(events):
        created.append(time.perf_counter())
        status, _ = await call(direct, "POST", f"{GV}/namespaces/{ns}/flunders", flunder(f"m-{i}", ns))
        assert status == 201
        await asyncio.sleep(1.0)
    deadline = time.monotonic() + 30
    while sum(w.events >= events for w in watches) < len(watches) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    delays = sorted((w.arrivals[i] - created[i]) * 1000
                    for w in watches for i in range(min(events, len(w.arrivals))))
    complete = sum(w.events >= events for w in watches)
    open_at_end = sum(not w.closed for w in watches)
    inflight = [line for line in (await call_raw_metrics(kplane)).splitlines()
                if line.startswith("kplane_aggregator_proxy_inflight_requests{")]
    print("while the watches are open, kplane /metrics says:", *inflight, sep="\n  ")
    for w in watches:
        assert w.transport is not None
        w.transport.close()
    return {"requested": n, "opened": len(watches), "failed": len(failures), "open_seconds": opened,
            "complete": complete, "still_open": open_at_end,
            "p50": delays[len(delays) // 2] if delays else float("nan"),
            "p99": delays[int(len(delays) * 0.99)] if delays else float("nan"),
            "max": delays[-1] if delays else float("nan")}


# ---- setup --------------------------------------------------------------------------------------------


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes, from /proc."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def client_ctx(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def fmt_table(rows: list[list[str]], header: list[str]) -> str:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


class Relay:
    """bench/_relay.py: the floor of a Python proxy on this path (see its docstring)."""

    def __init__(self, kp: KplaneProcess, wardle: ExtensionProcess):
        self.port = free_port()
        pki = kp.data_dir / "pki"
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "_relay.py"), str(self.port), str(wardle.port),
             str(pki / "apiserver.crt"), str(pki / "apiserver.key"), str(pki / "front-proxy-client.crt"),
             str(pki / "front-proxy-client.key"), str(wardle.data_dir / "pki" / "ca.crt")])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def run(args: argparse.Namespace, kp: KplaneProcess, wardle: ExtensionProcess, nginx: Nginx | None,
              relay: Relay | None = None) -> None:
    pki = kp.data_dir / "pki"
    wardle_ca = wardle.data_dir / "pki" / "ca.crt"
    direct = Endpoint("direct", "127.0.0.1", wardle.port,
                      client_ctx(wardle_ca, pki / "front-proxy-client.crt", pki / "front-proxy-client.key"),
                      "api.wardle.svc", "X-Remote-User: kplane-admin\r\nX-Remote-Group: system:masters\r\n")
    kplane = Endpoint("kplane", "127.0.0.1", kp.port, client_ctx(pki / "ca.crt", pki / "admin.crt",
                                                                 pki / "admin.key"), "127.0.0.1")
    targets = [direct, kplane]
    pids = {"direct": [wardle.proc.pid], "kplane": [kp.proc.pid]}
    if nginx is not None:
        targets.append(Endpoint("nginx", "127.0.0.1", nginx.port, client_ctx(pki / "ca.crt"), "127.0.0.1"))
        pids["nginx"] = nginx.pids()
    if relay is not None:
        targets.append(Endpoint("relay", "127.0.0.1", relay.port, client_ctx(pki / "ca.crt"), "127.0.0.1"))
        pids["relay"] = [relay.proc.pid]

    for ns in ("default", WATCH_NS, "many"):
        await call(kplane, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                          "metadata": {"name": ns}})
    for i in range(LIST_SIZE):
        status, body = await call(direct, "POST", LIST_PATH, flunder(f"bench-{i}", "default"))
        assert status in (201, 409), body
    for ep in targets:
        status, body = await call(ep, "GET", GET_PATH)
        assert status == 200, (ep.name, status, body)
    _, body = await call(direct, "GET", LIST_PATH)
    list_bytes = len(json.dumps(body, separators=(",", ":")))

    rows: list[list[str]] = []
    summary: dict[tuple[str, str, int], Result] = {}
    list_label = f"LIST ({LIST_SIZE} items, {list_bytes // 1024} KiB)"
    for label, path in (("GET", GET_PATH), (list_label, LIST_PATH)):
        for c in (1, 32):
            # Rounds interleave the targets so a burst of outside load hits all of them alike;
            # req/s is the median round, latencies are pooled over the rounds.
            rounds: dict[str, list[Result]] = {ep.name: [] for ep in targets}
            cpu: dict[str, float] = {ep.name: 0.0 for ep in targets}
            for _ in range(args.rounds):
                for ep in targets:
                    before = cpu_seconds(pids[ep.name])
                    rounds[ep.name].append(await load(ep, path, c, args.duration))
                    cpu[ep.name] += cpu_seconds(pids[ep.name]) - before
            for ep in targets:
                res = Result(latencies=[x for r in rounds[ep.name] for x in r.latencies],
                             requests=sum(r.requests for r in rounds[ep.name]),
                             errors=sum(r.errors for r in rounds[ep.name]))
                res.seconds = res.requests / statistics.median(r.rps for r in rounds[ep.name])
                summary[(label, ep.name, c)] = res
                base = summary[(label, "direct", c)]
                added50 = "" if ep is direct else f"{res.pct(0.5) - base.pct(0.5):+.2f}"
                added99 = "" if ep is direct else f"{res.pct(0.99) - base.pct(0.99):+.2f}"
                ratio = "" if ep is direct else f"{res.rps / base.rps:.0%}"
                per_req = f"{1e6 * cpu[ep.name] / res.requests:.0f}" if res.requests else ""
                rows.append([label, str(c), ep.name, f"{res.rps:,.0f}", ratio, f"{res.pct(0.5):.2f}",
                             f"{res.pct(0.99):.2f}", added50, added99, per_req, str(res.errors)])
                print(" | ".join(rows[-1]), flush=True)
    # Concurrency 1 once more, request by request across the targets (see `interleaved`).
    paired: dict[str, dict[str, Result]] = {}
    prows: list[list[str]] = []
    for label, path in (("GET", GET_PATH), (list_label, LIST_PATH)):
        paired[label] = res1 = await interleaved(targets, path, args.rounds * args.duration)
        base = res1["direct"]
        for ep in targets:
            r = res1[ep.name]
            added = ["", ""] if ep is direct else [f"{r.pct(q) - base.pct(q):+.2f}" for q in (0.5, 0.99)]
            prows.append([label, ep.name, str(r.requests), f"{r.pct(0.5):.2f}", f"{r.pct(0.99):.2f}", *added,
                          str(r.errors)])
    print()
    print(fmt_table(rows, ["request", "c", "via", "req/s", "of direct", "p50 ms", "p99 ms", "added p50 ms",
                           "added p99 ms", "CPU µs/req*", "errors"]))
    print("* CPU time per request of the process on the path: wardle (direct), kplane, nginx (all workers)")
    print()
    print("Concurrency 1, interleaved request by request across the targets:")
    print(fmt_table(prows, ["request", "via", "requests", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms",
                            "errors"]))
    if nginx is not None:
        print()
        verdict = []
        for label in sorted({k[0] for k in summary}):
            d1, k1, n1 = (summary[(label, t, 1)] for t in ("direct", "kplane", "nginx"))
            windowed = _ratio(k1.pct(0.5) - d1.pct(0.5), n1.pct(0.5) - d1.pct(0.5))
            p = paired[label]
            k_add, n_add = p["kplane"].pct(0.5) - p["direct"].pct(0.5), p["nginx"].pct(0.5) - p["direct"].pct(0.5)
            k32, n32 = summary[(label, "kplane", 32)], summary[(label, "nginx", 32)]
            verdict.append([label, windowed, _ratio(k_add, n_add),
                            "yes" if n_add > 0 and k_add <= 2.5 * n_add else "NO",
                            f"{k32.rps:,.0f} / {n32.rps:,.0f} = {k32.rps / n32.rps:.0%}",
                            "yes" if k32.rps >= 0.5 * n32.rps else "NO"])
        print(fmt_table(verdict, ["request", "added p50 at c=1, kplane / nginx: windows",
                                  "interleaved", "<= 2.5x (interleaved)", "req/s at c=32, kplane / nginx",
                                  ">= 50%"]))
        if relay is not None:
            floor = []
            for label in sorted({k[0] for k in summary}):
                d1, r1, n1 = (summary[(label, t, 1)] for t in ("direct", "relay", "nginx"))
                p = paired[label]
                floor.append([label, _ratio(r1.pct(0.5) - d1.pct(0.5), n1.pct(0.5) - d1.pct(0.5)),
                              _ratio(p["relay"].pct(0.5) - p["direct"].pct(0.5),
                                     p["nginx"].pct(0.5) - p["direct"].pct(0.5))])
            print()
            print(fmt_table(floor, ["request", "added p50 at c=1, relay floor / nginx: windows", "interleaved"]))

    print()
    lat = await watch_latency(direct, [ep for ep in targets if ep is not direct], args.events)
    wrows = []
    for name, added in lat.items():
        s = sorted(added)
        wrows.append([name, str(len(s)), f"{statistics.median(s):.2f}", f"{s[int(len(s) * 0.99)]:.2f}",
                      f"{s[-1]:.2f}"])
    print(fmt_table(wrows, ["watch via", "events", "added p50 ms", "added p99 ms", "added max ms"]))

    if args.watches:
        print()
        m = await many_watches(kplane, direct, args.watches, 3)
        print(fmt_table([[str(m["requested"]), str(m["opened"]), str(m["failed"]), f"{m['open_seconds']:.1f}",
                          str(m["complete"]), str(m["still_open"]), f"{m['p50']:.0f}", f"{m['p99']:.0f}",
                          f"{m['max']:.0f}"]],
                        ["watches", "opened", "failed", "open s", "got all 3 events", "open at end",
                         "delivery p50 ms", "p99 ms", "max ms"]))

    metrics = await call_raw_metrics(kplane)
    shown = [line for line in metrics.splitlines()
             if line.startswith("kplane_aggregator_proxy_requests_total")]
    print()
    print("kplane /metrics (per APIService):")
    print("\n".join(shown))


def _ratio(added: float, baseline: float) -> str:
    text = f"{added:.2f} / {baseline:.2f}"
    return f"{text} = {added / baseline:.2f}x" if baseline > 0 else text


async def call_raw_metrics(ep: Endpoint) -> str:
    conn = await connect(ep)
    _, _, body = await conn.send(ep.request("GET", "/metrics"))
    assert conn.transport is not None
    conn.transport.close()
    return body.decode()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=2.0, help="seconds per measurement and round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measurement")
    p.add_argument("--watches", type=int, default=2000, help="concurrent proxied watches (0: skip)")
    p.add_argument("--events", type=int, default=200, help="events for the watch latency measurement")
    p.add_argument("--nginx-workers", type=int, default=1)
    p.add_argument("--no-nginx", action="store_true")
    p.add_argument("--relay", action="store_true",
                   help="also measure bench/_relay.py, the floor of a Python proxy on this path")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    (tmp / "kplane").mkdir()
    kp = KplaneProcess(data_dir=tmp / "kplane")
    kp.start()
    wardle = nginx = relay = None
    try:
        wardle = ExtensionProcess(kp, "examples.wardle", apiservices=["v1alpha1.wardle.example.com"],
                                  data_dir=tmp / "wardle", cwd=REPO).start(timeout=60)
        if not args.no_nginx:
            if shutil.which("nginx") is None:
                raise SystemExit("nginx not found: apt-get install -y nginx-light (or pass --no-nginx)")
            nginx = Nginx(tmp, kp, wardle, args.nginx_workers)
            wait_port(nginx.port)
        if args.relay:
            relay = Relay(kp, wardle)
            wait_port(relay.port)
        via_nginx = f", nginx :{nginx.port} ({args.nginx_workers} worker)" if nginx else ""
        print(f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; kplane :{kp.port}, "
              f"wardle :{wardle.port}{via_nginx}; {args.rounds} rounds x {args.duration:g} s per figure",
              flush=True)
        asyncio.run(run(args, kp, wardle, nginx, relay))
    finally:
        if relay is not None:
            relay.stop()
        if nginx is not None:
            nginx.stop()
        if wardle is not None:
            wardle.stop()
        kp.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
