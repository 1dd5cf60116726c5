"""CustomResourceDefinitions end to end: the real kubectl, the official python client and a real kopf
operator against a `kplane serve` subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from kplane.testing import KplaneProcess, Kubectl

GROUP = "stable.example.com"
CRD_NAME = f"crontabs.{GROUP}"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP, "scope": "Namespaced",
        "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
        "versions": [
            {"name": "v1", "served": True, "storage": True,
             "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                      "statusReplicasPath": ".status.replicas",
                                                      "labelSelectorPath": ".status.selector"}},
             "additionalPrinterColumns": [
                 {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                 {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                 {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                 {"name": "Image", "type": "string", "priority": 1, "jsonPath": ".spec.image"}],
             "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                 "spec": {"type": "object", "description": "The desired cron job.",
                          "x-kubernetes-validations": [{"rule": "self.replicas <= self.maxReplicas",
                                                        "message": "replicas must not exceed maxReplicas"}],
                          "properties": {
                              "cronSpec": {"type": "string", "description": "Cron schedule.",
                                           "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"},
                              "image": {"type": "string"},
                              "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                              "maxReplicas": {"type": "integer", "default": 5},
                              "ports": {"type": "array", "x-kubernetes-list-type": "map",
                                        "x-kubernetes-list-map-keys": ["name"],
                                        "items": {"type": "object", "required": ["name"], "properties": {
                                            "name": {"type": "string"}, "port": {"type": "integer"}}}}}},
                 "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {
                     "replicas": {"type": "integer"}, "selector": {"type": "string"}}}}}}},
            {"name": "v1beta1", "served": True, "storage": False,
             "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
        ],
    },
}


def crontab(name: str, ns: str = "default", **spec: Any) -> dict:
    body = {"cronSpec": "* * * * */5", "image": "my-awesome-cron-image", **spec}
    return {"apiVersion": f"{GROUP}/v1", "kind": "CronTab", "metadata": {"name": name, "namespace": ns},
            "spec": body}


@pytest.fixture(scope="module")
def crd(kubectl: Kubectl) -> str:
    kubectl("apply", "-f", "-", input=json.dumps(CRD))
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=30s")
    return CRD_NAME


@pytest.fixture(scope="module")
def api(kp: KplaneProcess) -> Any:
    import kubernetes

    return kubernetes.client.CustomObjectsApi(kp.api_client())


def _status_error(exc: Any) -> dict:
    return json.loads(exc.body)


def test_crd_status_and_conditions(kubectl: Kubectl, crd: str) -> None:
    obj = kubectl.json("get", "crd", crd)
    conds = {c["type"]: c for c in obj["status"]["conditions"]}
    assert conds["NamesAccepted"]["status"] == "True" and conds["NamesAccepted"]["reason"] == "NoConflicts"
    assert conds["Established"]["status"] == "True"
    assert conds["Established"]["reason"] == "InitialNamesAccepted"
    assert obj["status"]["storedVersions"] == ["v1"]
    assert obj["status"]["acceptedNames"]["shortNames"] == ["ct"]
    assert obj["spec"]["names"]["listKind"] == "CronTabList"
    out = kubectl("get", "apiservice", f"v1.{GROUP}")
    assert "Local" in out and "True" in out
    resources = kubectl("api-resources", f"--api-group={GROUP}")
    assert "crontabs" in resources and "ct" in resources and "CronTab" in resources


def test_reapplying_an_unchanged_crd_changes_nothing(kubectl: Kubectl, crd: str) -> None:
    # Nothing defaulted into the stored spec that the manifest leaves out (a printer column's
    # priority 0 was): kubectl apply then finds nothing to change.
    out = kubectl("apply", "-f", "-", input=json.dumps(CRD))
    assert "unchanged" in out, out
    columns = kubectl.json("get", "crd", crd)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c.get("priority") for c in columns] == [None, None, None, 1]


def test_invalid_crd_rejected(kubectl: Kubectl) -> None:
    bad = json.loads(json.dumps(CRD))
    bad["metadata"]["name"] = "wrong.stable.example.com"
    proc = kubectl.run("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0
    assert 'metadata.name: Invalid value: "wrong.stable.example.com": must be spec.names.plural+"."+spec.group' \
        in proc.stderr


def test_name_conflict_with_another_crd(kubectl: Kubectl, crd: str) -> None:
    other = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
             "metadata": {"name": f"crontabz.{GROUP}"},
             "spec": {"group": GROUP, "scope": "Namespaced",
                      "names": {"plural": "crontabz", "kind": "CronTabz", "shortNames": ["ct"]},
                      "versions": [{"name": "v1", "served": True, "storage": True,
                                    "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    kubectl("apply", "-f", "-", input=json.dumps(other))
    deadline = time.monotonic() + 15
    cond: dict = {}
    while time.monotonic() < deadline:
        got = kubectl.json("get", "crd", f"crontabz.{GROUP}")
        cond = {c["type"]: c for c in (got.get("status") or {}).get("conditions") or []}
        if "NamesAccepted" in cond:
            break
        time.sleep(0.2)
    assert cond["NamesAccepted"]["status"] == "False"
    assert cond["NamesAccepted"]["reason"] == "ShortNamesConflict"
    assert cond["NamesAccepted"]["message"] == '"ct" is already in use'
    kubectl("delete", "crd", f"crontabz.{GROUP}")


def test_kubectl_crud_columns_and_validation(kubectl: Kubectl, crd: str) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(crontab("kc1")))
    got = kubectl.json("get", "ct", "kc1")
    assert got["spec"]["replicas"] == 1 and got["spec"]["maxReplicas"] == 5  # defaults
    assert got["metadata"]["generation"] == 1
    wide = kubectl("get", "crontabs", "-o", "wide").splitlines()
    assert wide[0].split() == ["NAME", "SPEC", "REPLICAS", "AGE", "IMAGE"]
    narrow = kubectl("get", "crontabs").splitlines()
    assert narrow[0].split() == ["NAME", "SPEC", "REPLICAS", "AGE"]
    assert any(line.startswith("kc1") and "my-awesome-cron-image" in line for line in wide)
    # Strict field validation (kubectl's default) rejects unknown fields; Ignore prunes them.
    body = crontab("kc2", unknownField=1)
    proc = kubectl.run("apply", "-f", "-", input=json.dumps(body), check=False)
    assert proc.returncode != 0 and 'unknown field "spec.unknownField"' in proc.stderr
    kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(body))
    assert "unknownField" not in kubectl.json("get", "ct", "kc2")["spec"]
    # Schema and CEL errors are 422 with upstream field paths.
    proc = kubectl.run("apply", "-f", "-", input=json.dumps(crontab("kc3", cronSpec="* * * *", replicas=15)),
                       check=False)
    assert "spec.cronSpec: Invalid value: \"* * * *\": spec.cronSpec in body should match" in proc.stderr
    assert "spec.replicas: Invalid value: 15: spec.replicas in body should be less than or equal to 10" \
        in proc.stderr
    # Those failures leave the CEL rules to run (hasBlockingErr); a wrong type stops them.
    assert "replicas must not exceed maxReplicas" in proc.stderr
    proc = kubectl.run("apply", "-f", "-", input=json.dumps(crontab("kc4", replicas="many")), check=False)
    assert 'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer' in proc.stderr
    assert '<nil>: Invalid value: "null": some validation rules were not checked because the object was ' \
           "invalid; correct the existing errors to complete validation" in proc.stderr
    proc = kubectl.run("patch", "ct", "kc1", "--type=merge", "-p", '{"spec":{"replicas":7,"maxReplicas":6}}',
                       check=False)
    assert 'spec: Invalid value: "object": replicas must not exceed maxReplicas' in proc.stderr
    # Strategic merge patch is 415 for custom resources.
    proc = kubectl.run("patch", "ct", "kc1", "-p", '{"spec":{"replicas":2}}', check=False)
    assert proc.returncode != 0 and "application/strategic-merge-patch+json is not supported" in proc.stderr
    kubectl("patch", "ct", "kc1", "--type=json", "-p", '[{"op":"replace","path":"/spec/replicas","value":2}]')
    got = kubectl.json("get", "ct", "kc1")
    assert got["spec"]["replicas"] == 2 and got["metadata"]["generation"] == 2


def test_explain(kubectl: Kubectl, crd: str) -> None:
    out = kubectl("explain", "crontab.spec")
    assert "The desired cron job." in out and "cronSpec" in out and "Cron schedule." in out
    assert "KIND:       CronTab" in out


def test_status_and_scale_subresources(kubectl: Kubectl, crd: str, api: Any) -> None:
    import kubernetes

    api.create_namespaced_custom_object(GROUP, "v1", "default", "crontabs", crontab("sub1"))
    # The main endpoint ignores status; /status ignores everything else.
    api.patch_namespaced_custom_object(GROUP, "v1", "default", "crontabs", "sub1",
                                       {"status": {"replicas": 9}, "metadata": {"labels": {"a": "b"}}})
    got = api.get_namespaced_custom_object(GROUP, "v1", "default", "crontabs", "sub1")
    assert "status" not in got and got["metadata"]["labels"] == {"a": "b"}
    api.patch_namespaced_custom_object_status(GROUP, "v1", "default", "crontabs", "sub1",
                                              {"status": {"replicas": 1, "selector": "app=x"},
                                               "spec": {"image": "ignored"}})
    got = api.get_namespaced_custom_object(GROUP, "v1", "default", "crontabs", "sub1")
    assert got["status"] == {"replicas": 1, "selector": "app=x"}
    assert got["spec"]["image"] == "my-awesome-cron-image" and got["metadata"]["generation"] == 1
    kubectl("scale", "crontab/sub1", "--replicas=4")
    scale = api.get_namespaced_custom_object_scale(GROUP, "v1", "default", "crontabs", "sub1")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 4} and scale["status"] == {"replicas": 1, "selector": "app=x"}
    got = api.get_namespaced_custom_object(GROUP, "v1", "default", "crontabs", "sub1")
    assert got["spec"]["replicas"] == 4 and got["metadata"]["generation"] == 2
    proc = kubectl.run("scale", "crontab/sub1", "--replicas=11", check=False)
    assert "should be less than or equal to 10" in proc.stderr
    with pytest.raises(kubernetes.client.ApiException) as e:
        api.create_namespaced_custom_object(GROUP, "v1", "default", "crontabs",
                                            crontab("bad", replicas=8, maxReplicas=3))
    assert e.value.status == 422 and _status_error(e.value)["reason"] == "Invalid"


def test_list_watch_selectors_chunking(crd: str, api: Any) -> None:
    import kubernetes

    for i in range(5):
        body = crontab(f"lw{i}")
        body["metadata"]["labels"] = {"batch": "lw", "parity": str(i % 2)}
        api.create_namespaced_custom_object(GROUP, "v1", "default", "crontabs", body)
    listed = api.list_namespaced_custom_object(GROUP, "v1", "default", "crontabs", label_selector="batch=lw,parity=0")
    assert sorted(o["metadata"]["name"] for o in listed["items"]) == ["lw0", "lw2", "lw4"]
    assert listed["kind"] == "CronTabList"
    one = api.list_namespaced_custom_object(GROUP, "v1", "default", "crontabs", field_selector="metadata.name=lw3")
    assert [o["metadata"]["name"] for o in one["items"]] == ["lw3"]
    names, token = [], None
    while True:
        page = api.list_namespaced_custom_object(GROUP, "v1", "default", "crontabs", label_selector="batch=lw",
                                                 limit=2, _continue=token)
        names += [o["metadata"]["name"] for o in page["items"]]
        token = page["metadata"].get("continue")
        assert len(page["items"]) <= 2
        if not token:
            break
    assert names == [f"lw{i}" for i in range(5)]
    rv = listed["metadata"]["resourceVersion"]
    w = kubernetes.watch.Watch()
    api.patch_namespaced_custom_object(GROUP, "v1", "default", "crontabs", "lw1", {"spec": {"image": "new"}})
    api.delete_namespaced_custom_object(GROUP, "v1", "default", "crontabs", "lw2")
    events = []
    for ev in w.stream(api.list_namespaced_custom_object, GROUP, "v1", "default", "crontabs",
                       label_selector="batch=lw", resource_version=rv, timeout_seconds=3):
        events.append((ev["type"], ev["object"]["metadata"]["name"]))
        if len(events) == 2:
            w.stop()
    assert events == [("MODIFIED", "lw1"), ("DELETED", "lw2")]


def test_server_side_apply(kubectl: Kubectl, crd: str) -> None:
    body = crontab("ssa1", ports=[{"name": "http", "port": 80}])
    kubectl("apply", "--server-side", "--field-manager=alice", "-f", "-", input=json.dumps(body))
    body2 = {"apiVersion": f"{GROUP}/v1", "kind": "CronTab", "metadata": {"name": "ssa1", "namespace": "default"},
             "spec": {"ports": [{"name": "https", "port": 443}]}}
    kubectl("apply", "--server-side", "--field-manager=bob", "-f", "-", input=json.dumps(body2))
    got = kubectl.json("get", "ct", "ssa1", "--show-managed-fields")
    assert {p["name"] for p in got["spec"]["ports"]} == {"http", "https"}  # list-type map merges by key
    managers = {m["manager"] for m in got["metadata"]["managedFields"]}
    assert {"alice", "bob"} <= managers
    conflict = {"apiVersion": f"{GROUP}/v1", "kind": "CronTab",
                "metadata": {"name": "ssa1", "namespace": "default"}, "spec": {"image": "other"}}
    proc = kubectl.run("apply", "--server-side", "--field-manager=bob", "-f", "-", input=json.dumps(conflict),
                       check=False)
    assert proc.returncode != 0 and "conflict" in proc.stderr.lower()


def test_multiple_versions_conversion_none(crd: str, api: Any) -> None:
    api.create_namespaced_custom_object(GROUP, "v1", "default", "crontabs", crontab("mv1"))
    old = api.get_namespaced_custom_object(GROUP, "v1beta1", "default", "crontabs", "mv1")
    assert old["apiVersion"] == f"{GROUP}/v1beta1" and old["spec"]["image"] == "my-awesome-cron-image"
    body = {"apiVersion": f"{GROUP}/v1beta1", "kind": "CronTab", "metadata": {"name": "mv2"},
            "spec": {"cronSpec": "* * * * */5", "anything": True}}
    api.create_namespaced_custom_object(GROUP, "v1beta1", "default", "crontabs", body)
    new = api.get_namespaced_custom_object(GROUP, "v1", "default", "crontabs", "mv2")
    # Stored as the storage version has it (apiextensions' schema-coercing converter): the field
    # v1 does not know pruned, v1's defaults applied.
    assert new["apiVersion"] == f"{GROUP}/v1" and "anything" not in new["spec"]
    assert new["spec"]["replicas"] == 1 and new["spec"]["maxReplicas"] == 5

def test_explain_describes_type_meta(kubectl: Kubectl, crd: str) -> None:
    assert "APIVersion defines the versioned schema" in kubectl("explain", "crontabs.apiVersion")


def test_namespace_deletion_removes_crs(kubectl: Kubectl, crd: str, api: Any) -> None:
    kubectl("create", "namespace", "doomed")
    api.create_namespaced_custom_object(GROUP, "v1", "doomed", "crontabs", crontab("inside", ns="doomed"))
    kubectl("delete", "namespace", "doomed", "--timeout=30s")
    out = kubectl.run("get", "ns", "doomed", check=False)
    assert out.returncode != 0 and "NotFound" in out.stderr
    listed = api.list_cluster_custom_object(GROUP, "v1", "crontabs")
    assert not [o for o in listed["items"] if o["metadata"]["namespace"] == "doomed"]


KOPF_OPERATOR = textwrap.dedent('''
    import kopf

    @kopf.on.create("stable.example.com", "v1", "crontabs")
    def created(spec, name, patch, logger, **_):
        patch.status["replicas"] = spec.get("replicas", 0)
        return {"message": f"hello {name}"}

    @kopf.on.delete("stable.example.com", "v1", "crontabs")
    def deleted(name, logger, **_):
        logger.info(f"DELETED-HANDLER {name}")
''')


def _wait(predicate: Any, timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_kopf_operator(kp: KplaneProcess, kubectl: Kubectl, crd: str, api: Any, tmp_path: Path) -> None:
    import kubernetes

    pytest.importorskip("kopf")
    kubectl("create", "namespace", "kopf-e2e")
    operator = tmp_path / "operator.py"
    operator.write_text(KOPF_OPERATOR)
    log_path = tmp_path / "kopf.log"
    env = dict(os.environ, KUBECONFIG=kp.kubeconfig)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "kopf", "run", str(operator), "--namespace", "kopf-e2e",
                                 "--verbose"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        api.create_namespaced_custom_object(GROUP, "v1", "kopf-e2e", "crontabs", crontab("op1", ns="kopf-e2e",
                                                                                          replicas=3))

        def handled() -> Any:
            obj = api.get_namespaced_custom_object(GROUP, "v1", "kopf-e2e", "crontabs", "op1")
            status = obj.get("status") or {}
            return obj if status.get("created") and "replicas" in status else None

        try:
            obj = _wait(handled, what="kopf create handler")
        except AssertionError:
            raise AssertionError(log_path.read_text()[-5000:]) from None
        assert obj["status"]["created"] == {"message": "hello op1"}
        assert obj["status"]["replicas"] == 3
        assert obj["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
        api.delete_namespaced_custom_object(GROUP, "v1", "kopf-e2e", "crontabs", "op1")

        def gone() -> bool:
            try:
                api.get_namespaced_custom_object(GROUP, "v1", "kopf-e2e", "crontabs", "op1")
                return False
            except kubernetes.client.ApiException as e:
                return e.status == 404

        try:
            _wait(gone, what="finalizer removal")
        except AssertionError:
            raise AssertionError(log_path.read_text()[-5000:]) from None
        assert "DELETED-HANDLER op1" in log_path.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_crd_deletion_removes_crs(kubectl: Kubectl, crd: str, api: Any) -> None:
    import kubernetes

    for i in range(3):
        api.create_namespaced_custom_object(GROUP, "v1", "default", "crontabs", crontab(f"del{i}"))
    kubectl("delete", "crd", crd, "--timeout=60s")
    assert kubectl.run("get", "crd", crd, check=False).returncode != 0
    assert kubectl.run("get", "apiservice", f"v1.{GROUP}", check=False).returncode != 0
    with pytest.raises(kubernetes.client.ApiException) as e:
        api.list_namespaced_custom_object(GROUP, "v1", "default", "crontabs")
    assert e.value.status == 404
    # Re-creating the CRD serves an empty collection: the objects were deleted, not hidden.
    kubectl("apply", "-f", "-", input=json.dumps(CRD))
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=30s")
    assert _wait(lambda: _list_or_none(api) is not None, what="serving again") is True
    assert _list_or_none(api) == []


def _list_or_none(api: Any) -> Any:
    import kubernetes

    try:
        return api.list_namespaced_custom_object(GROUP, "v1", "default", "crontabs")["items"]
    except kubernetes.client.ApiException:
        return None
