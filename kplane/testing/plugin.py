"""pytest fixtures for testing against a real kplane.

    pytest -p kplane.testing.plugin        # or, in a conftest: pytest_plugins = ["kplane.testing.plugin"]

- ``kplane``: one `kplane serve` subprocess per test session (a KplaneProcess: .kubeconfig, .url,
  .kubectl(...), .api_client(), .client()); ``--kplane-in-process`` runs it on a thread instead.
- ``kubeconfig``: its admin kubeconfig path.
- ``kplane_client``: a ready kubernetes.client.ApiClient for it.
- ``kubectl``: the real kubectl bound to it (``kubectl("get", "ns")``, ``kubectl.json(...)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kplane.testing import KplaneProcess, KplaneThread, Kubectl

__all__ = ["Kubectl", "kplane", "kplane_client", "kubeconfig", "kubectl"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kplane-in-process", action="store_true",
                     help="run the kplane fixture's server on a thread of the test process")


@pytest.fixture(scope="session")
def kplane(request: pytest.FixtureRequest) -> Iterator[KplaneProcess | KplaneThread]:
    in_process = False
    try:
        in_process = bool(request.config.getoption("--kplane-in-process"))
    except ValueError:  # the plugin's options are not registered (fixture imported directly)
        pass
    kp = KplaneThread() if in_process else KplaneProcess()
    kp.start()
    try:
        yield kp
    finally:
        kp.cleanup()


@pytest.fixture(scope="session")
def kubeconfig(kplane: KplaneProcess | KplaneThread) -> str:
    return kplane.kubeconfig


@pytest.fixture(scope="session")
def kplane_client(kplane: KplaneProcess | KplaneThread) -> Iterator[Any]:
    client = kplane.api_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def kubectl(kplane: KplaneProcess | KplaneThread) -> Kubectl:
    return Kubectl(kplane.kubeconfig)
