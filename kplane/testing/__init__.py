"""Test against a real kplane: a context manager and pytest fixtures that
start `kplane serve` as a subprocess on a free loopback port with a
temporary data directory, and hand back its kubeconfig.

    from kplane.testing import KplaneProcess

    with KplaneProcess() as kp:
        subprocess.run(["kubectl", "--kubeconfig", kp.kubeconfig, "get", "ns"])

As a pytest plugin (``pytest -p kplane.testing.plugin``, or import the
``kplane`` fixture from ``kplane.testing.plugin`` in a conftest) the
``kplane`` fixture gives one server per test session.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KplaneProcess:
    """A `kplane serve` subprocess. Restartable on the same data dir and port."""

    def __init__(self, data_dir: str | Path | None = None, port: int | None = None,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None):
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="kplane-"))
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / "kplane.log"

    @property
    def kubeconfig(self) -> str:
        return str(self.data_dir / "admin.kubeconfig")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> KplaneProcess:
        cmd = [sys.executable, "-m", "kplane", "serve", "--data-dir", str(self.data_dir),
               "--secure-port", str(self.port), "--bind-address", "127.0.0.1", *self.extra_args]
        log = open(self.log_path, "ab")
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"kplane exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=ctx, timeout=2) as resp:
                    if resp.status == 200 and Path(self.kubeconfig).exists():
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"kplane did not become ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> KplaneProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
