"""ownerReferences cascade with the real kubectl: background (the default), foreground, orphan,
and dependents whose owner never existed."""

from __future__ import annotations

import json
import time

import pytest

NS = "gc"


@pytest.fixture(scope="module", autouse=True)
def namespace(kubectl):
    kubectl("create", "namespace", NS)


def _configmap(kubectl, name: str, owner: dict | None = None, block: bool = False) -> dict:
    meta: dict = {"name": name, "namespace": NS}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"], "blockOwnerDeletion": block}]
    kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                                                   "data": {"k": "v"}}))
    return kubectl.json("get", "configmap", name, "-n", NS, "-o", "json")


def _exists(kubectl, name: str) -> bool:
    return kubectl.run("get", "configmap", name, "-n", NS, check=False).returncode == 0


def _wait_gone(kubectl, *names: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_exists(kubectl, n) for n in names):
            return True
        time.sleep(0.3)
    return False


def test_background_cascade_deletes_dependents(kubectl):
    owner = _configmap(kubectl, "bg-owner")
    _configmap(kubectl, "bg-dep-1", owner)
    _configmap(kubectl, "bg-dep-2", owner, block=True)
    kubectl("delete", "configmap", "bg-owner", "-n", NS)  # --cascade=background is kubectl's default
    assert _wait_gone(kubectl, "bg-owner", "bg-dep-1", "bg-dep-2")


def test_foreground_deletes_dependents_before_the_owner(kubectl):
    owner = _configmap(kubectl, "fg-owner")
    _configmap(kubectl, "fg-dep", owner, block=True)
    out = kubectl("delete", "configmap", "fg-owner", "-n", NS, "--cascade=foreground", "--timeout=30s")
    assert 'configmap "fg-owner" deleted' in out
    assert not _exists(kubectl, "fg-owner") and not _exists(kubectl, "fg-dep")


def test_orphan_keeps_dependents_without_the_reference(kubectl):
    owner = _configmap(kubectl, "or-owner")
    other = _configmap(kubectl, "or-other")
    dep = _configmap(kubectl, "or-dep", owner)
    patch = {"metadata": {"ownerReferences": [*dep["metadata"]["ownerReferences"],
                                              {"apiVersion": "v1", "kind": "ConfigMap", "name": "or-other",
                                               "uid": other["metadata"]["uid"]}]}}
    kubectl("patch", "configmap", "or-dep", "-n", NS, "--type=merge", "-p", json.dumps(patch))
    kubectl("delete", "configmap", "or-owner", "-n", NS, "--cascade=orphan", "--timeout=30s")
    assert _wait_gone(kubectl, "or-owner")
    refs = kubectl.json("get", "configmap", "or-dep", "-n", NS, "-o", "json")["metadata"]["ownerReferences"]
    assert [r["name"] for r in refs] == ["or-other"]  # only the deleted owner's reference went


def test_dependent_of_an_owner_that_does_not_exist_is_collected(kubectl):
    ghost = {"metadata": {"name": "never-created", "uid": "00000000-0000-4000-8000-000000000000"}}
    _configmap(kubectl, "orphaned-dep", ghost)
    assert _wait_gone(kubectl, "orphaned-dep")


def test_an_owner_of_an_unserved_kind_keeps_its_dependent(kubectl):
    meta = {"name": "foreign-dep", "namespace": NS,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                 "uid": "11111111-1111-4111-8111-111111111111"}]}
    kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}))
    # A deletion elsewhere wakes a sweep; the dependent must survive it.
    _configmap(kubectl, "wake")
    kubectl("delete", "configmap", "wake", "-n", NS)
    time.sleep(1.5)
    assert _exists(kubectl, "foreign-dep")
