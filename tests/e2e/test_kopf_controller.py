"""examples/wardle/controller.py — a kopf operator — against kplane + wardle, all real processes:
kopf lists and watches flunders and fischers through kplane's aggregator proxy and writes each
Flunder's status from the Fischer it references."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kplane.testing import ExtensionProcess, KplaneProcess, Kubectl

pytest.importorskip("kopf")

REPO = Path(__file__).resolve().parents[2]
WARDLE = "v1alpha1.wardle.example.com"


@pytest.fixture(scope="module")
def wardle(kp: KplaneProcess) -> Iterator[ExtensionProcess]:
    ext = ExtensionProcess(kp, "examples.wardle", args=["--bind-address", "127.0.0.1"], cwd=REPO)
    try:
        ext.start(apiservices=[WARDLE])
        yield ext
    finally:
        ext.cleanup()


@pytest.fixture(scope="module")
def controller(kp: KplaneProcess, wardle: ExtensionProcess, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Callable[[], str]]:
    log_path = tmp_path_factory.mktemp("kopf") / "controller.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "examples.wardle.controller", "--kubeconfig",
                                 kp.kubeconfig,
                                 "--verbose"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    def read_log() -> str:
        return log_path.read_text(errors="replace")[-6000:] + "\n--- wardle ---\n" + wardle.log()

    try:
        yield read_log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(what: Callable[[], Any], expected: Any, timeout: float, log: Callable[[], str]) -> float:
    start = time.monotonic()
    value = None
    while time.monotonic() - start < timeout:
        value = what()
        if value == expected:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"expected {expected!r}, still {value!r} after {timeout}s\n{log()}")


def test_kopf_sets_and_follows_flunder_status(kubectl: Kubectl, controller: Callable[[], str]) -> None:
    def status() -> Any:
        return json.loads(kubectl("get", "flunder", "-n", "default", "f-kopf", "-o", "json")).get("status")

    kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "wardle.example.com/v1alpha1", "kind": "Fischer", "metadata": {"name": "fi-kopf"},
        "disallowedFlunders": ["someone-else"]}))
    kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder",
        "metadata": {"name": "f-kopf", "namespace": "default"},
        "spec": {"reference": "fi-kopf", "referenceType": "Fischer"}}))
    took = wait_for(status, {"fischer": "fi-kopf", "disallowed": False}, 15, controller)
    assert took < 15

    # The Fischer changes: kopf sees it on its watch (through the aggregator) and updates the Flunder.
    kubectl("patch", "fischer", "fi-kopf", "--type=merge", "-p", '{"disallowedFlunders": ["f-kopf"]}')
    assert wait_for(status, {"fischer": "fi-kopf", "disallowed": True}, 5, controller) < 5

    # The Fischer goes away: the reference is no longer satisfied.
    kubectl("delete", "fischer", "fi-kopf")
    wait_for(status, {}, 5, controller)

    # The Flunder's own spec changes: kopf's update handler writes the status through /status.
    kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "wardle.example.com/v1alpha1", "kind": "Fischer", "metadata": {"name": "fi-other"}}))
    kubectl("patch", "flunder", "-n", "default", "f-kopf", "--type=merge", "-p",
            '{"spec": {"reference": "fi-other"}}')
    wait_for(status, {"fischer": "fi-other", "disallowed": False}, 5, controller)

    # kopf's bookkeeping lives in annotations, and the status was written through /status,
    # so the spec's generation moved only for the spec change.
    flunder = json.loads(kubectl("get", "flunder", "-n", "default", "f-kopf", "-o", "json"))
    assert flunder["metadata"]["generation"] == 2
    assert "wardle.example.com/last-handled-configuration" in flunder["metadata"]["annotations"]
