"""Run a real etcd (the `etcd` binary, Debian package `etcd-server`) for tests and benchmarks.

    with EtcdProcess() as etcd:          # one member on free loopback ports, in a temp dir
        etcd.url                         # http://127.0.0.1:<port>
        etcd.stop(); etcd.start()        # restart on the same data dir and ports

    cluster = EtcdCluster(3).start()     # three members; cluster.urls, cluster.members[i].kill()

`require_etcd()` skips the calling test when the binary is missing, except under CI
(the CI environment variable set), where a missing etcd is an error.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

INSTALL_HINT = "apt-get install -y etcd-server etcd-client"


def etcd_binary() -> str | None:
    return shutil.which("etcd")


def require_etcd() -> str:
    import pytest

    binary = etcd_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"etcd binary not found; CI must install it ({INSTALL_HINT})")
        pytest.skip(f"etcd binary not found (install it: {INSTALL_HINT})")
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdProcess:
    def __init__(self, name: str = "default", data_dir: str | Path | None = None,
                 client_port: int | None = None, peer_port: int | None = None,
                 initial_cluster: str | None = None, cluster_state: str = "new",
                 extra_args: list[str] | None = None):
        self.name = name
        self._own_dir = data_dir is None
        self.base_dir = Path(data_dir or tempfile.mkdtemp(prefix="kplane-etcd-"))
        self.client_port = client_port or _free_port()
        self.peer_port = peer_port or _free_port()
        self.initial_cluster = initial_cluster or f"{name}={self.peer_url}"
        self.cluster_state = cluster_state
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, timeout: float = 20.0, wait: bool = True) -> EtcdProcess:
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError(f"etcd binary not found ({INSTALL_HINT})")
        cmd = [binary, "--name", self.name, "--data-dir", str(self.base_dir / "data"),
               "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
               "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
               "--initial-cluster", self.initial_cluster, "--initial-cluster-state", self.cluster_state,
               "--initial-cluster-token", "kplane-test", "--log-level", "warn", *self.extra_args]
        log = open(self.base_dir / "etcd.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                    if b'"true"' in resp.read():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"etcd did not become healthy in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return (self.base_dir / "etcd.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> EtcdProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()


class EtcdCluster:
    """`size` members on loopback, each in its own temp dir."""

    def __init__(self, size: int = 3, extra_args: list[str] | None = None):
        names = [f"m{i}" for i in range(size)]
        peers = [_free_port() for _ in names]
        initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(names, peers, strict=True))
        # Fast failure detection on loopback (defaults: 100 ms heartbeat, 1 s election timeout).
        fast = ["--heartbeat-interval", "50", "--election-timeout", "500"]
        args = extra_args if extra_args is not None else fast
        self.members = [EtcdProcess(n, peer_port=p, initial_cluster=initial, extra_args=args)
                        for n, p in zip(names, peers, strict=True)]

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.members]

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for m in self.members:
            m.start(wait=False)
        for m in self.members:
            m.wait_ready(timeout)
        return self

    def cleanup(self) -> None:
        for m in self.members:
            m.cleanup()

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()
