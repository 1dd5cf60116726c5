"""pytest fixtures: `kplane` (one server per session) and `kubectl`."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from kplane.testing import KplaneProcess


@pytest.fixture(scope="session")
def kplane() -> Iterator[KplaneProcess]:
    kp = KplaneProcess().start()
    try:
        yield kp
    finally:
        kp.cleanup()


class Kubectl:
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

    def __call__(self, *args: str, **kw) -> str:  # type: ignore[no-untyped-def]
        return self.run(*args, **kw).stdout


@pytest.fixture(scope="session")
def kubectl(kplane: KplaneProcess) -> Kubectl:
    return Kubectl(kplane.kubeconfig)
