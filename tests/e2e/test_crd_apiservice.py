"""A CRD whose group-version is already served by a remote APIService, as kube-apiserver handles it:
crdregistration asks autoregister for a Local APIService per served version, and autoregister leaves an
existing APIService without the automanaged label alone (case 3A-3C of its checkAPIService), so the
remote backend keeps answering that group-version; the CRD's other versions get Local APIServices,
and deleting the CRD removes only those."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from kplane.testing import KplaneProcess, Kubectl
from tests.e2e.tls_backend import GROUP, TLSBackend, wait_until

CRD_NAME = f"flunders.{GROUP}"
AUTOMANAGED = "kube-aggregator.kubernetes.io/automanaged"


@pytest.fixture(scope="module")
def backend(kp: KplaneProcess, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSBackend]:
    """tests/e2e/aggregator_backend.py registered as the remote APIService v1alpha1.wardle.example.com."""
    b = TLSBackend(kp, tmp_path_factory.mktemp("wardle")).start()
    try:
        kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                      "items": b.registration()}))
        kubectl("wait", "--for=condition=Available", f"apiservice/v1alpha1.{GROUP}", "--timeout=30s")
        yield b
    finally:
        b.stop()


def _crd() -> dict:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": CRD_NAME},
            "spec": {"group": GROUP, "scope": "Namespaced",
                     "names": {"plural": "flunders", "singular": "flunder", "kind": "Flunder"},
                     "versions": [{"name": "v1alpha1", "served": True, "storage": True, "schema": schema},
                                  {"name": "v1beta1", "served": True, "storage": False, "schema": schema}]}}


def _apiservice(kubectl: Kubectl, name: str) -> dict | None:
    proc = kubectl.run("get", "apiservice", name, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def test_remote_apiservice_wins_over_crd(kubectl: Kubectl, backend: TLSBackend) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(_crd()))
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=30s")
    # The CRD's other version is registered Local, automanaged, with crdregistration's priorities.
    local = wait_until(lambda: _apiservice(kubectl, f"v1beta1.{GROUP}"))
    assert local is not None and "service" not in local["spec"]
    assert local["metadata"]["labels"][AUTOMANAGED] == "true"
    assert (local["spec"]["groupPriorityMinimum"], local["spec"]["versionPriority"]) == (1000, 100)
    # The remote APIService is not taken over: same service, no automanaged label.
    remote = _apiservice(kubectl, f"v1alpha1.{GROUP}")
    assert remote is not None and remote["spec"]["service"] == {"namespace": "wardle", "name": "api", "port": 443}
    assert AUTOMANAGED not in (remote["metadata"].get("labels") or {})
    assert remote["spec"]["versionPriority"] == 15
    # Requests for the colliding group-version go to the remote backend (its echo flunder), not the CRD.
    listed = json.loads(kubectl("get", "--raw", f"/apis/{GROUP}/v1alpha1/namespaces/default/flunders"))
    assert [i["metadata"]["name"] for i in listed["items"]] == ["echo"]
    assert "caller" in listed["items"][0]["metadata"]["annotations"]
    # The CRD serves its other version locally.
    kubectl("create", "-f", "-", input=json.dumps({"apiVersion": f"{GROUP}/v1beta1", "kind": "Flunder",
                                                   "metadata": {"name": "local", "namespace": "default"}}))
    listed = json.loads(kubectl("get", "--raw", f"/apis/{GROUP}/v1beta1/namespaces/default/flunders"))
    assert listed["apiVersion"] == f"{GROUP}/v1beta1"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["local"]
    # Discovery merges both APIServices of the group, ordered by versionPriority (100 > 15).
    groups = json.loads(kubectl("get", "--raw", "/apis"))
    wardle = next(g for g in groups["groups"] if g["name"] == GROUP)
    assert [v["version"] for v in wardle["versions"]] == ["v1beta1", "v1alpha1"]
    # Deleting the CRD removes only the APIService it registered.
    kubectl("delete", "crd", CRD_NAME, "--timeout=60s")
    assert wait_until(lambda: _apiservice(kubectl, f"v1beta1.{GROUP}") is None)
    remote = _apiservice(kubectl, f"v1alpha1.{GROUP}")
    assert remote is not None and remote["spec"]["service"]["name"] == "api"
    listed = json.loads(kubectl("get", "--raw", f"/apis/{GROUP}/v1alpha1/namespaces/default/flunders"))
    assert [i["metadata"]["name"] for i in listed["items"]] == ["echo"]
