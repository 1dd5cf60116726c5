"""Fixtures the end-to-end modules share: one real `kplane serve` per test module
(module scope, so modules stay independent) and kubectl pointed at it. A module
that needs other flags defines its own `kp`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kplane.testing import KplaneProcess, Kubectl


@pytest.fixture(scope="module")
def kp() -> Iterator[KplaneProcess]:
    with KplaneProcess() as proc:
        yield proc


@pytest.fixture(scope="module")
def kubectl(kp: KplaneProcess) -> Kubectl:
    return Kubectl(kp.kubeconfig)
