"""Controllers that must run once among kplane replicas (leader election over the
kube-system/kplane-controllers Lease), and kplane on a 3-member etcd cluster with one
member down. The etcd binary is Debian's `etcd-server`; without it these tests skip,
except under CI.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from kplane.testing import KplaneProcess
from kplane.testing.etcd import EtcdCluster, EtcdProcess, require_etcd

LEASE = ("kplane-controllers", "kube-system")


def _client(kp: KplaneProcess) -> Any:
    return kubernetes.config.new_client_from_config(config_file=kp.kubeconfig)


def _v1(kp: KplaneProcess) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(_client(kp))


def _lease(kp: KplaneProcess) -> Any:
    return kubernetes.client.CoordinationV1Api(_client(kp)).read_namespaced_lease(*LEASE)


def _replica(servers: list[str], pki_from: KplaneProcess | None = None) -> KplaneProcess:
    data_dir = Path(tempfile.mkdtemp(prefix="kplane-replica-"))
    if pki_from is not None:
        shutil.copytree(pki_from.data_dir / "pki", data_dir / "pki")
    return KplaneProcess(data_dir=data_dir, extra_args=["--storage", "etcd", "--etcd-servers", ",".join(servers)])


def _eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except ApiException as e:
            last = e
        time.sleep(0.2)
    pytest.fail(f"{what} not within {timeout}s (last error: {last})")


def _gone(v1: kubernetes.client.CoreV1Api, namespace: str) -> bool:
    try:
        v1.read_namespace(namespace)
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def test_one_leader_and_failover_to_the_other_replica() -> None:
    require_etcd()
    with EtcdProcess() as etcd:
        a = _replica([etcd.url]).start()
        b = None
        try:
            # A lone replica leads at once: the Lease is A's when it reports ready.
            first = _lease(a)
            assert f":{a.port}_" in first.spec.holder_identity, first.spec
            assert first.spec.lease_duration_seconds == 15
            b = _replica([etcd.url], pki_from=a).start()
            b_started = time.monotonic()
            _crd_round_trip_on_follower(b)
            time.sleep(max(0.0, 4.5 - (time.monotonic() - b_started)))  # B tries every 2-4.4 s
            held = _lease(b)
            assert held.spec.holder_identity == first.spec.holder_identity
            assert held.spec.renew_time > first.spec.renew_time  # A renews
            assert held.spec.acquire_time == first.spec.acquire_time
            assert held.spec.lease_transitions == first.spec.lease_transitions
            assert "became leader" not in b.log()

            # The holder dies without releasing the Lease. Work queued on B meanwhile is done
            # once B takes over: namespace deletion, the default ServiceAccount.
            assert a.proc is not None
            a.proc.kill()
            a.proc.wait()
            killed = time.monotonic()
            v1 = _v1(b)
            v1.create_namespace({"metadata": {"name": "failover"}})
            for i in range(3):
                v1.create_namespaced_config_map("failover", {"metadata": {"name": f"c{i}"}})
            v1.delete_namespace("failover")
            v1.create_namespace({"metadata": {"name": "failover-sa"}})
            taken = _eventually(lambda: f":{b.port}_" in (_lease(b).spec.holder_identity or ""), 30,
                                "B holding the lease")
            took = time.monotonic() - killed
            assert taken and took < 26, took  # 15 s lease + up to two jittered 2-4.4 s tries
            lease = _lease(b)
            assert lease.spec.lease_transitions == first.spec.lease_transitions + 1
            assert lease.spec.acquire_time > first.spec.acquire_time
            _eventually(lambda: _gone(v1, "failover"), 10, "namespace finalized by the new leader")
            _eventually(lambda: v1.read_namespaced_service_account("default", "failover-sa"), 10,
                        "default ServiceAccount from the new leader")
            # The ClusterRole aggregation controller runs on B now too.
            rbac = kubernetes.client.RbacAuthorizationV1Api(_client(b))
            rbac.create_cluster_role({"metadata": {"name": "failover-view", "labels": {
                "rbac.authorization.k8s.io/aggregate-to-view": "true"}},
                "rules": [{"apiGroups": ["failover.example.com"], "resources": ["widgets"], "verbs": ["get"]}]})
            _eventually(lambda: any("failover.example.com" in (r.api_groups or [])
                                    for r in rbac.read_cluster_role("view").rules), 10, "view aggregated")
        finally:
            for kp in (a, b):
                if kp is not None:
                    kp.stop()
                    shutil.rmtree(kp.data_dir, ignore_errors=True)


def _crd_round_trip_on_follower(b: KplaneProcess) -> None:
    """A CRD created on the follower is served there at once and Established by the leader's
    writes; deleted on the follower, the leader finalizes it (its objects go first)."""
    ext = kubernetes.client.ApiextensionsV1Api(_client(b))
    custom = kubernetes.client.CustomObjectsApi(_client(b))
    group = "le.example.com"
    ext.create_custom_resource_definition({"metadata": {"name": f"widgets.{group}"}, "spec": {
        "group": group, "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}})

    def established() -> bool:
        conds = ext.read_custom_resource_definition(f"widgets.{group}").status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    _eventually(established, 10, "CRD Established")
    _eventually(lambda: custom.create_namespaced_custom_object(group, "v1", "default", "widgets", {
        "apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w1"}}), 10, "custom resource")
    ext.delete_custom_resource_definition(f"widgets.{group}")

    def crd_gone() -> bool:
        try:
            ext.read_custom_resource_definition(f"widgets.{group}")
        except ApiException as e:
            return e.status == 404
        return False

    _eventually(crd_gone, 15, "CRD finalized")


def _status(url: str) -> dict:
    req = urllib.request.Request(url + "/v3/maintenance/status", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _make_leader(cluster: EtcdCluster, member: EtcdProcess) -> None:
    """Move raft leadership to `member`, so killing it takes kplane's endpoint and the leader at once."""
    target = _status(member.url)["header"]["member_id"]
    leader = _status(member.url)["leader"]
    if leader == target:
        return
    current = next(m for m in cluster.members if _status(m.url)["header"]["member_id"] == leader)
    req = urllib.request.Request(current.url + "/v3/maintenance/transfer-leadership",
                                 data=json.dumps({"targetID": target}).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass
    _eventually(lambda: _status(member.url)["leader"] == target, 10, "leadership moved")


def test_three_member_etcd_cluster_with_one_member_killed() -> None:
    require_etcd()
    with EtcdCluster(3) as cluster:
        kp = _replica(cluster.urls).start()
        try:
            v1 = _v1(kp)
            v1.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
            first = cluster.members[0]  # the endpoint kplane talks to, made raft leader too
            _make_leader(cluster, first)
            first.kill()
            start = time.monotonic()
            _eventually(lambda: v1.create_namespaced_config_map("default", {"metadata": {"name": "after-0"}}),
                        15, "a write after the member died")
            recovered = time.monotonic() - start
            for i in range(1, 10):  # and then every write succeeds at once
                v1.create_namespaced_config_map("default", {"metadata": {"name": f"after-{i}"}})
            got = v1.read_namespaced_config_map("after-9", "default")  # a consistent read: the watch resumed
            names = {c.metadata.name for c in v1.list_namespaced_config_map("default").items}
            assert {"before", *(f"after-{i}" for i in range(10))} <= names
            patched = v1.patch_namespaced_config_map("after-9", "default", {"data": {"k": "v"}})
            assert int(patched.metadata.resource_version) > int(got.metadata.resource_version)
            assert recovered < 15, recovered
            # A graceful stop releases the Lease: restarted (with the dead member still listed), the
            # lone replica leads at once instead of waiting out the 15 s lease duration.
            held = _lease(kp).spec
            kp.stop()
            kp.start()
            restarted_at = time.monotonic()

            def new_holder() -> Any:
                spec = _lease(kp).spec
                return spec if spec.holder_identity not in ("", held.holder_identity) else None

            # Well inside the 15 s lease duration the old holder's lease would have to run out.
            lease = _eventually(new_holder, 8, "the restarted replica taking the released Lease")
            assert time.monotonic() - restarted_at < 8
            assert f":{kp.port}_" in lease.holder_identity
            assert lease.lease_transitions == held.lease_transitions + 1
            v1 = _v1(kp)
            v1.create_namespace({"metadata": {"name": "after-restart"}})
            _eventually(lambda: v1.read_namespaced_service_account("default", "after-restart"), 5,
                        "the controllers of the restarted leader")
        finally:
            kp.stop()
            shutil.rmtree(kp.data_dir, ignore_errors=True)
