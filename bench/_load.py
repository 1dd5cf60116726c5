"""Shared HTTP load generator for the benchmarks in bench/.

Closed-loop load: `concurrency` workers, each on its own keep-alive TLS
connection (aiohttp client, client certificate), send the next request as soon
as the previous answer has been read in full. A run may be split over several
generator processes (`processes=`) when one client process would be the
bottleneck; every process connects and warms up first, then all start on one
barrier, so the measured window contains only steady-state load.

Per request the latency is recorded; a run returns throughput, p50/p99, the
error count and the CPU the generator processes used in the window (so a
report can show how much of the machine the client itself took).

Two clients: "aiohttp" (the default, what the recorded runs used) and "lean",
which writes each request in one transport write and reads the answer with a
minimal HTTP/1.1 parser (Content-Length bodies, which the servers measured here
always send). aiohttp's client costs about 0.5 ms of CPU per request on the
2-core benchmark machine, the lean one about 0.15 ms; at concurrency 1 the
client's own time is part of every round trip. Both speak HTTP/1.1 over
keep-alive TLS with the client certificate; one comparison uses one client for
all its targets.

Request templates are plain data (picklable): in ``path`` and ``body`` the
tokens ``{slot}`` (the worker's index across all processes, stable for the
run) and ``{n}`` (unique per request in the run) are substituted.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import re
import ssl
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class TLSFiles:
    ca: str
    cert: str
    key: str

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.check_hostname = False  # same for every target; the chain is still verified
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


@dataclass(frozen=True)
class RequestSpec:
    method: str
    path: str
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = (("Accept", "application/json"),)
    expect: tuple[int, ...] = (200, 201)


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float] = field(repr=False)
    client_cpu: float  # CPU seconds used by the generator processes in the window

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        return percentile(self.latencies, p)

    @property
    def client_cpu_share(self) -> float:
        """Generator CPU as a fraction of one core over the window."""
        return self.client_cpu / self.seconds if self.seconds else 0.0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _fill(template: str, slot: int, n: str) -> str:
    return template.replace("{slot}", str(slot)).replace("{n}", n)


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


class LeanConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request in flight, Content-Length answers only.
    `send(raw)` resolves to (arrival time of the whole answer, status, body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need = -1  # bytes of head + body of the answer being read, once its head is in
        self.body_at = 0
        self.status = 0
        self.waiter: asyncio.Future[tuple[float, int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            match = _CONTENT_LENGTH.search(head)
            if match is None:
                self._fail(RuntimeError(f"lean client needs Content-Length: {head[:200]!r}"))
                return
            self.status = int(head[9:12])
            self.body_at = end + 4
            self.need = self.body_at + int(match.group(1))
        if len(self.buf) >= self.need:
            body = bytes(self.buf[self.body_at:self.need])
            del self.buf[:self.need]
            self.need = -1
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result((time.perf_counter(), self.status, body))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def send(self, raw: bytes) -> asyncio.Future[tuple[float, int, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter


def _lean_request(spec: RequestSpec, host: str, path: str, body: bytes | None) -> bytes:
    lines = [f"{spec.method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in spec.headers]
    if body is not None:
        if not any(k.lower() == "content-type" for k, _ in spec.headers):
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


# send(slot, path, body) -> HTTP status of the answer, read in full
Send = Callable[[int, str, "bytes | None"], Awaitable[int]]


async def _closed_loop(send: Send, failures: tuple[type[BaseException], ...], spec: RequestSpec, slots: list[int],
                       warmup: float, duration: float, ready: Any, go: Any) -> tuple[int, int, list[float], float]:
    """Each slot sends its next request as soon as the previous answer is in; only the window
    between the barriers is recorded. Returns (ok, errors, latencies, generator CPU seconds)."""
    latencies: list[float] = []
    counts = [0, 0]  # ok, errors
    state = {"record": False, "stop": False}
    seq = 0

    async def one(slot: int) -> None:
        nonlocal seq
        seq += 1
        n = f"{os.getpid()}-{seq}"  # unique across processes and runs
        body = _fill(spec.body, slot, n).encode() if spec.body is not None else None
        t0 = time.perf_counter()
        status = await send(slot, _fill(spec.path, slot, n), body)
        dt = time.perf_counter() - t0
        if state["record"]:
            if status in spec.expect:
                counts[0] += 1
                latencies.append(dt)
            else:
                counts[1] += 1

    async def run(slot: int) -> None:
        while not state["stop"]:
            try:
                await one(slot)
            except failures:
                if state["record"]:
                    counts[1] += 1

    await asyncio.gather(*(one(s) for s in slots))  # every connection opened before the window
    tasks = [asyncio.create_task(run(s)) for s in slots]
    await asyncio.sleep(warmup)
    ready.wait()
    go.wait()
    cpu0 = _cpu_seconds()
    state["record"] = True
    await asyncio.sleep(duration)
    state["record"] = False
    cpu = _cpu_seconds() - cpu0
    state["stop"] = True
    await asyncio.gather(*tasks, return_exceptions=True)
    return counts[0], counts[1], latencies, cpu


async def _lean_worker_main(base_url: str, tls: TLSFiles, spec: RequestSpec, slots: list[int], warmup: float,
                            duration: float, ready: Any, go: Any) -> tuple[int, int, list[float], float]:
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 443
    ctx = tls.client_context()
    loop = asyncio.get_running_loop()
    conns: dict[int, LeanConnection] = {}

    async def send(slot: int, path: str, body: bytes | None) -> int:
        conn = conns.get(slot)
        if conn is None or conn.transport is None or conn.transport.is_closing():
            _, conn = await loop.create_connection(LeanConnection, host, port, ssl=ctx, server_hostname=host)
            conns[slot] = conn
        _, status, _ = await conn.send(_lean_request(spec, url.netloc, path, body))
        return status

    try:
        return await _closed_loop(send, (OSError, RuntimeError), spec, slots, warmup, duration, ready, go)
    finally:
        for conn in conns.values():
            if conn.transport is not None:
                conn.transport.close()


async def _aiohttp_worker_main(base_url: str, tls: TLSFiles, spec: RequestSpec, slots: list[int], warmup: float,
                               duration: float, ready: Any, go: Any) -> tuple[int, int, list[float], float]:
    import aiohttp

    conn = aiohttp.TCPConnector(ssl=tls.client_context(), limit=len(slots), force_close=False,
                                enable_cleanup_closed=True)
    headers = dict(spec.headers)
    if spec.body is not None:
        headers.setdefault("Content-Type", "application/json")
    async with aiohttp.ClientSession(connector=conn, headers=headers) as session:
        async def send(slot: int, path: str, body: bytes | None) -> int:
            async with session.request(spec.method, base_url + path, data=body) as resp:
                await resp.read()
                return resp.status

        return await _closed_loop(send, (TimeoutError, aiohttp.ClientError), spec, slots, warmup, duration,
                                  ready, go)


async def _worker_main(base_url: str, tls: TLSFiles, spec: RequestSpec, slots: list[int], warmup: float,
                       duration: float, ready: Any, go: Any, client: str) -> tuple[int, int, list[float], float]:
    main = _lean_worker_main if client == "lean" else _aiohttp_worker_main
    return await main(base_url, tls, spec, slots, warmup, duration, ready, go)


def _process_entry(args: tuple[Any, ...], out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        out.send(("ok", asyncio.run(_worker_main(*args))))
    except BaseException as e:  # noqa: BLE001 - report any failure to the parent
        out.send(("error", repr(e)))
    finally:
        out.close()


def run_load(base_url: str, tls: TLSFiles, spec: RequestSpec, *, concurrency: int, duration: float = 4.0,
             warmup: float = 1.0, processes: int = 1, client: str = "aiohttp") -> LoadResult:
    """Run closed-loop load in `processes` generator processes; blocks until done.
    `client`: "lean" or "aiohttp" (see the module docstring)."""
    if client not in ("lean", "aiohttp"):
        raise ValueError(f"unknown load client {client!r}")
    processes = max(1, min(processes, concurrency))
    ctx = mp.get_context("spawn")
    ready = ctx.Barrier(processes + 1)
    go = ctx.Barrier(processes + 1)
    procs, pipes = [], []
    slots_all = list(range(concurrency))
    for i in range(processes):
        slots = slots_all[i::processes]
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_process_entry,
                        args=((base_url, tls, spec, slots, warmup, duration, ready, go, client), child),
                        daemon=True)
        p.start()
        child.close()
        procs.append(p)
        pipes.append(parent)
    ready.wait(timeout=120)
    go.wait(timeout=10)
    t0 = time.perf_counter()
    results = [pipe.recv() for pipe in pipes]
    for p in procs:
        p.join(10)
    elapsed = min(time.perf_counter() - t0, duration + 0.05)
    ok = errs = 0
    lat: list[float] = []
    cpu = 0.0
    for status, value in results:
        if status != "ok":
            raise RuntimeError(f"load generator failed: {value}")
        o, e, ls, c = value
        ok += o
        errs += e
        lat.extend(ls)
        cpu += c
    return LoadResult(ok, errs, duration if elapsed >= duration else elapsed, lat, cpu)


class ProcCPU:
    """CPU seconds of another process (e.g. the server under test), from /proc."""

    def __init__(self, pid: int):
        self.pid = pid
        self._tick = os.sysconf("SC_CLK_TCK")

    def seconds(self) -> float:
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / self._tick  # utime + stime
