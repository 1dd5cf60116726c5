"""Test against a real kplane instead of a mock or a kind cluster.

A context manager starts `kplane serve` on a free loopback port with a temporary SQLite store
and hands back its kubeconfig path and ready clients:

    from kplane.testing import kplane_server

    with kplane_server() as kp:                         # a subprocess; in_process=True: a thread
        kp.kubectl("get", "namespaces")                 # the real kubectl, --kubeconfig set
        v1 = kubernetes.client.CoreV1Api(kp.api_client())   # the official python client
        async with kp.client() as c: ...                # kplane.client.Client (async)

As a pytest plugin (``-p kplane.testing.plugin``, or ``pytest_plugins = ["kplane.testing.plugin"]``
in a conftest) it gives the fixtures ``kplane`` (one server per session), ``kplane_client``
(a kubernetes ApiClient for it), ``kubeconfig`` (the path) and ``kubectl``.

An extension server (an SDK app or any module taking --kubeconfig/--secure-port/--data-dir)
runs beside it with ``ExtensionProcess(kp, "examples.wardle").start()``, which returns once its
APIService is Available.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Kubectl:
    """The real kubectl with --kubeconfig set. `kubectl("get", "ns")` returns stdout and raises
    AssertionError (with stderr) on failure; `.run(...)` returns the CompletedProcess; `.json(...)`
    parses `-o json`."""

    def __init__(self, kubeconfig: str):
        self.kubeconfig = kubeconfig

    def run(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args], input=input,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def __call__(self, *args: str, **kw: Any) -> str:
        return self.run(*args, **kw).stdout

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.run(*args, "-o", "json", **kw).stdout)


class _Clients:
    """Clients for a running kplane: what KplaneProcess and KplaneThread share."""

    kubeconfig: str
    url: str
    data_dir: Path

    def kubectl(self, *args: str, **kw: Any) -> str:
        return Kubectl(self.kubeconfig)(*args, **kw)

    def api_client(self) -> Any:
        """A kubernetes.client.ApiClient (the official python client) for this server."""
        import kubernetes

        return kubernetes.config.new_client_from_config(config_file=self.kubeconfig)

    def user_kubeconfig(self, name: str, groups: Sequence[str] = (), directory: Path | None = None) -> str:
        """A kubeconfig for user `name` in `groups`: a client certificate signed by this server's CA
        (CN name, O groups), written to `directory` (default: the server's data dir)."""
        from kplane.controlplane.pki import issue_client_cert, write_kubeconfig

        pki = Path(self.data_dir) / "pki"
        cert, key = issue_client_cert(pki / "ca.crt", pki / "ca.key", name, tuple(groups))
        path = Path(directory or self.data_dir) / f"{name}.kubeconfig"
        write_kubeconfig(path, self.url, (pki / "ca.crt").read_bytes(), cert, key, user=name)
        return str(path)

    def client(self, **kw: Any) -> Any:
        """kplane's small async client (kplane.client.Client); use it as `async with`."""
        from kplane.client import Client

        return Client.from_kubeconfig(self.kubeconfig, **kw)


class _ServerProcess:
    """A server subprocess with a log file in its data dir: SIGTERM on stop, SIGKILL if it hangs."""

    proc: subprocess.Popen | None
    log_path: Path
    data_dir: Path
    _own_dir: bool

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

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class KplaneProcess(_ServerProcess, _Clients):
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
        env = _importable(dict(os.environ, **(self.env or {})))
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        def exited() -> str | None:
            if self.proc is not None and self.proc.poll() is not None:
                return f"kplane exited with {self.proc.returncode}:\n{self.log()}"
            return None
        _wait_ready(self.url, self.kubeconfig, timeout, exited, self.log)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> KplaneProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _importable(env: dict[str, str]) -> dict[str, str]:
    """`python -m kplane` works in the child even when kplane is not installed (a checkout)."""
    root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([*paths, root, os.getcwd()])
    return env


def _wait_ready(url: str, kubeconfig: str, timeout: float, failed: Any, log: Any) -> None:
    deadline = time.monotonic() + timeout
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    while time.monotonic() < deadline:
        problem = failed()
        if problem:
            raise RuntimeError(problem)
        try:
            with urllib.request.urlopen(f"{url}/readyz", context=ctx, timeout=2) as resp:
                if resp.status == 200 and Path(kubeconfig).exists():
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"kplane did not become ready in {timeout}s:\n{log()}")


class KplaneThread(_Clients):
    """kplane in this process, on its own event loop in a daemon thread: starts in well under a
    second and needs no subprocess. The server shares the process (and its logging config)."""

    def __init__(self, data_dir: str | Path | None = None, port: int | None = None, **options: Any):
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="kplane-"))
        self.port = port or free_port()
        self.options = options
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def kubeconfig(self) -> str:
        return str(self.data_dir / "admin.kubeconfig")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _run(self) -> None:
        from kplane.controlplane.controlplane import Options, serve

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            opts = Options(data_dir=self.data_dir, bind_address="127.0.0.1", secure_port=self.port,
                           **self.options)
            await serve(opts, stop=self._stop)

        try:
            asyncio.run(main())
        except BaseException as e:  # reported by start()
            self._error = e

    def start(self, timeout: float = 30.0) -> KplaneThread:
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"kplane-{self.port}", daemon=True)
        self._thread.start()
        _wait_ready(self.url, self.kubeconfig, timeout,
                    lambda: f"kplane failed: {self._error!r}" if self._error else None, lambda: "")
        return self

    def stop(self, timeout: float = 15.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> KplaneThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


@contextlib.contextmanager
def kplane_server(*, in_process: bool = False, data_dir: str | Path | None = None,
                  **kw: Any) -> Iterator[KplaneProcess | KplaneThread]:
    """A started kplane on a free loopback port and a temporary store, cleaned up on exit.

    The default is a subprocess (`kplane serve`, isolated, what users run); `in_process=True`
    runs it on a thread of this process. Either has `.kubeconfig`, `.url`, `.kubectl(...)`,
    `.api_client()` and `.client()`."""
    kp: KplaneProcess | KplaneThread
    kp = KplaneThread(data_dir, **kw) if in_process else KplaneProcess(data_dir, **kw)
    kp.start()
    try:
        yield kp
    finally:
        kp.cleanup()


class ExtensionProcess(_ServerProcess):
    """An extension API server run as `python -m <module> --kubeconfig K --secure-port P --data-dir D`
    (what an SDK app's `app.run()` takes), started beside a kplane and waited for until its
    APIServices are Available through kplane."""

    def __init__(self, kp: Any, module: str, *, args: list[str] | None = None,
                 apiservices: list[str] | None = None, port: int | None = None,
                 data_dir: str | Path | None = None, cwd: str | Path | None = None,
                 env: dict[str, str] | None = None):
        self.kp = kp
        self.apiservices = apiservices or []
        self.module = module
        self.args = args or []
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="kplane-ext-"))
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / "server.log"

    def start(self, apiservices: list[str] | None = None, timeout: float = 30.0) -> ExtensionProcess:
        """Start; wait for `apiservices` (names like v1.shop.example.com; default: the ones given
        to the constructor) to be Available through kplane."""
        apiservices = self.apiservices if apiservices is None else apiservices
        cmd = [sys.executable, "-m", self.module, "--kubeconfig", self.kp.kubeconfig, "--secure-port",
               str(self.port), "--data-dir", str(self.data_dir), *self.args]
        self.data_dir.mkdir(parents=True, exist_ok=True)  # a given data dir need not exist yet
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                         env=_importable(dict(os.environ, **(self.env or {}))))
        deadline = time.monotonic() + timeout
        for name in apiservices:
            while not self._available(name):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.log()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"apiservice {name} not Available in {timeout}s:\n{self.log()}")
                time.sleep(0.1)
        return self

    def _available(self, name: str) -> bool:
        proc = Kubectl(self.kp.kubeconfig).run("get", "apiservice", name, "-o",
                                               'jsonpath={.status.conditions[?(@.type=="Available")].status}',
                                               check=False, timeout=10)
        return proc.stdout.strip() == "True"

    def __enter__(self) -> ExtensionProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
