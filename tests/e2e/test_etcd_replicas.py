"""Several `kplane serve --storage etcd` replicas on one etcd, and etcd faults.

Replica B starts from a copy of replica A's pki/ (the shared PKI), so one kubeconfig
works against both. The etcd binary is Debian's `etcd-server`; without it these tests
skip, except under CI.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from kplane.testing import KplaneProcess
from kplane.testing.etcd import EtcdProcess, require_etcd


def _api(kp: KplaneProcess) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(config_file=kp.kubeconfig))


def _kubectl(kp: KplaneProcess, *args: str) -> str:
    r = subprocess.run(["kubectl", "--kubeconfig", kp.kubeconfig, *args], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _replica(etcd: EtcdProcess, pki_from: KplaneProcess | None = None, **kw) -> KplaneProcess:
    data_dir = Path(tempfile.mkdtemp(prefix="kplane-replica-"))
    if pki_from is not None:
        shutil.copytree(pki_from.data_dir / "pki", data_dir / "pki")
    args = ["--storage", "etcd", "--etcd-servers", etcd.url]
    return KplaneProcess(data_dir=data_dir, extra_args=args, **kw)


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdProcess]:
    require_etcd()
    with EtcdProcess() as proc:
        yield proc


@pytest.fixture(scope="module")
def replicas(etcd: EtcdProcess) -> Iterator[tuple[KplaneProcess, KplaneProcess]]:
    a = _replica(etcd).start()
    b = _replica(etcd, pki_from=a).start()
    try:
        yield a, b
    finally:
        for kp in (a, b):
            kp.stop()
            shutil.rmtree(kp.data_dir, ignore_errors=True)


def test_shared_pki_and_defaults_once(replicas: tuple[KplaneProcess, KplaneProcess]) -> None:
    a, b = replicas
    # A's kubeconfig (its CA and admin cert) is accepted by B: one PKI.
    assert _api(a).read_namespace("default").metadata.uid == _api(b).read_namespace("default").metadata.uid
    # Both ran the default-namespace and `kubernetes` service bootstrap; each exists once.
    names = [ns.metadata.name for ns in _api(b).list_namespace().items]
    assert sorted(names) == sorted(set(names)) and "kube-system" in names
    svc = _api(b).read_namespaced_service("kubernetes", "default")
    assert svc.spec.cluster_ip == "10.96.0.1"


def test_write_on_a_visible_and_watched_on_b(replicas: tuple[KplaneProcess, KplaneProcess]) -> None:
    a, b = replicas
    ns = "rep-watch"
    _api(a).create_namespace({"metadata": {"name": ns}})
    v1b = _api(b)
    start_rv = v1b.list_namespaced_config_map(ns).metadata.resource_version
    got: list[tuple[str, str]] = []

    def watch() -> None:
        w = kubernetes.watch.Watch()
        for ev in w.stream(v1b.list_namespaced_config_map, ns, resource_version=start_rv, timeout_seconds=20):
            got.append((ev["type"], ev["object"].metadata.name))
            if len(got) == 2:
                w.stop()

    t = threading.Thread(target=watch)
    t.start()
    created = _api(a).create_namespaced_config_map(ns, {"metadata": {"name": "c1"}, "data": {"k": "v"}})
    # Visible on B at once, at the latest resourceVersion (a consistent read).
    on_b = v1b.read_namespaced_config_map("c1", ns)
    assert on_b.metadata.resource_version == created.metadata.resource_version
    assert [c.metadata.name for c in v1b.list_namespaced_config_map(ns).items] == ["c1"]
    _api(a).patch_namespaced_config_map("c1", ns, {"data": {"k": "v2"}})
    t.join(25)
    assert got == [("ADDED", "c1"), ("MODIFIED", "c1")]
    # The real kubectl on B sees A's write too.
    assert _kubectl(b, "get", "configmap", "c1", "-n", ns, "-o", "jsonpath={.data.k}") == "v2"


def test_concurrent_increments_through_both_replicas(replicas: tuple[KplaneProcess, KplaneProcess]) -> None:
    a, b = replicas
    ns = "default"
    _api(a).create_namespaced_config_map(ns, {"metadata": {"name": "counter"}, "data": {"n": "0"}})
    per_worker, conflicts = 10, []

    def worker(kp: KplaneProcess) -> None:
        v1 = _api(kp)
        for _ in range(per_worker):
            while True:  # read-modify-write with retry on conflict, as client-go's RetryOnConflict
                cm = v1.read_namespaced_config_map("counter", ns)
                cm.data["n"] = str(int(cm.data["n"]) + 1)
                try:
                    v1.replace_namespaced_config_map("counter", ns, cm)
                    break
                except ApiException as e:
                    assert e.status == 409, e
                    conflicts.append(1)

    workers = [a, b, a, b]
    with concurrent.futures.ThreadPoolExecutor(len(workers)) as pool:
        list(pool.map(worker, workers))
    final = _api(b).read_namespaced_config_map("counter", ns)
    assert final.data["n"] == str(per_worker * len(workers))
    assert conflicts, "the workers never raced; the test proves nothing"


def test_cluster_ips_unique_across_replicas(replicas: tuple[KplaneProcess, KplaneProcess]) -> None:
    a, b = replicas
    ns = "rep-svc"
    _api(a).create_namespace({"metadata": {"name": ns}})

    def create(i: int) -> str:
        kp = (a, b)[i % 2]
        svc = _api(kp).create_namespaced_service(ns, {"metadata": {"name": f"s{i}"}, "spec": {
            "ports": [{"port": 80}]}})
        return svc.spec.cluster_ip

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ips = list(pool.map(create, range(24)))
    assert len(set(ips)) == len(ips)
    listed = {s.spec.cluster_ip for s in _api(b).list_namespaced_service(ns).items}
    assert listed == set(ips)


def test_namespace_deletion_with_two_controllers(replicas: tuple[KplaneProcess, KplaneProcess]) -> None:
    a, b = replicas
    ns = "rep-delete"
    _api(a).create_namespace({"metadata": {"name": ns}})
    for i in range(5):
        _api(b).create_namespaced_config_map(ns, {"metadata": {"name": f"c{i}"}})
    _api(a).delete_namespace(ns)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            _api(b).read_namespace(ns)
        except ApiException as e:
            assert e.status == 404
            break
        time.sleep(0.2)
    else:
        pytest.fail("namespace was not finalized")
    assert _api(a).list_namespaced_config_map(ns).items == []


def _readyz(kp: KplaneProcess) -> tuple[int, str]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"{kp.url}/readyz?verbose", context=ctx, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_etcd_restart_during_watch() -> None:
    """etcd down: /readyz fails on its etcd check and requests get 503; back up: the watch
    continues from the last revision it delivered (nothing lost, nothing repeated)."""
    require_etcd()
    with EtcdProcess() as etcd:
        kp = _replica(etcd).start()
        try:
            v1 = _api(kp)
            rv = v1.list_namespaced_config_map("default").metadata.resource_version
            v1.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
            events: list[tuple[str, str]] = []
            done = threading.Event()

            def watch() -> None:
                w = kubernetes.watch.Watch()
                for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=rv,
                                   timeout_seconds=40):
                    if ev["type"] == "ERROR":
                        events.append(("ERROR", str(ev["raw_object"].get("code"))))
                        break
                    events.append((ev["type"], ev["object"].metadata.name))
                    if ev["object"].metadata.name == "after":
                        break
                done.set()

            t = threading.Thread(target=watch, daemon=True)
            t.start()
            deadline = time.monotonic() + 10
            while ("ADDED", "before") not in events and time.monotonic() < deadline:
                time.sleep(0.05)
            etcd.stop()
            status, body = _readyz(kp)
            assert status == 500 and "[-]etcd failed" in body and "[-]etcd-readiness failed" in body, body
            with pytest.raises(ApiException) as e:
                v1.create_namespaced_config_map("default", {"metadata": {"name": "during"}})
            assert e.value.status in (503, 504), e.value
            etcd.start()
            deadline = time.monotonic() + 20
            while _readyz(kp)[0] != 200:
                assert time.monotonic() < deadline, _readyz(kp)
                time.sleep(0.2)
            v1.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
            assert done.wait(20), events
            assert events == [("ADDED", "before"), ("ADDED", "after")]
        finally:
            kp.stop()
            shutil.rmtree(kp.data_dir, ignore_errors=True)


def test_etcdctl_sees_kube_layout(replicas: tuple[KplaneProcess, KplaneProcess], etcd: EtcdProcess) -> None:
    a, _ = replicas
    _api(a).create_namespaced_config_map("default", {"metadata": {"name": "layout"}, "data": {"x": "y"}})
    if shutil.which("etcdctl") is None:
        pytest.skip("etcdctl not installed (apt-get install -y etcd-client)")
    def etcdctl(*args: str) -> str:
        return subprocess.run(["etcdctl", "--endpoints", etcd.url, *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout

    obj = json.loads(etcdctl("get", "/registry/configmaps/default/layout", "--print-value-only"))
    assert obj["data"] == {"x": "y"} and "resourceVersion" not in obj["metadata"]
    keys = etcdctl("get", "--prefix", "/registry/apiregistration.k8s.io/", "--keys-only")
    assert "/registry/apiregistration.k8s.io/apiservices/v1." in keys


def test_migrate_sqlite_to_etcd(etcd: EtcdProcess) -> None:
    """`kplane migrate --from sqlite:DIR --to etcd:URL`, run twice (resumable), then serve from etcd."""
    import sys

    src = KplaneProcess().start()
    try:
        v1 = _api(src)
        v1.create_namespace({"metadata": {"name": "migrated"}})
        for i in range(30):
            body = {"metadata": {"name": f"m{i}"}, "data": {"i": str(i)}}
            v1.create_namespaced_config_map("migrated", body)
        uid = v1.read_namespaced_config_map("m7", "migrated").metadata.uid
    finally:
        src.stop()
    cmd = [sys.executable, "-m", "kplane", "migrate", "--from", f"sqlite:{src.data_dir}", "--to",
           f"etcd:{etcd.url}", "--etcd-prefix", "/migrated"]
    # Into an etcd that holds other objects: refused, and nothing written (merging two stores
    # could give two Services one ClusterIP).
    import asyncio
    import base64

    from kplane.storage.etcd_http import EtcdHTTP

    async def put_foreign() -> None:
        client = EtcdHTTP([etcd.url])
        await client.call("/v3/kv/put", {"key": base64.b64encode(b"/other/ipaddresses/10.96.0.7").decode(),
                                         "value": base64.b64encode(b'{"kind":"IPAddress"}').decode()})
        await client.close()

    asyncio.run(put_foreign())
    other = [*cmd[:-1], "/other"]
    refused = subprocess.run(other, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "refused" in refused.stderr, refused.stdout + refused.stderr
    assert "/registry/ipaddresses/10.96.0.7" in refused.stderr
    args_other = ["--storage", "etcd", "--etcd-servers", etcd.url, "--etcd-prefix", "/other"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and "verified:" in first.stdout, first.stdout + first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "copied 0," in again.stdout, again.stdout + again.stderr
    args = ["--storage", "etcd", "--etcd-servers", etcd.url, "--etcd-prefix", "/migrated"]
    dst = KplaneProcess(data_dir=src.data_dir, extra_args=args).start()
    try:
        items = _api(dst).list_namespaced_config_map("migrated").items
        assert sorted(int(c.data["i"]) for c in items) == list(range(30))
        assert _api(dst).read_namespaced_config_map("m7", "migrated").metadata.uid == uid
        # The old store's resourceVersions are history here: a watch from one is told to relist.
        with pytest.raises(ApiException) as e:
            _api(dst).list_namespaced_config_map("migrated", resource_version="2", resource_version_match="Exact")
        assert e.value.status == 410
    finally:
        dst.stop()
    nothing = KplaneProcess(data_dir=src.data_dir, extra_args=args_other).start()
    try:
        with pytest.raises(ApiException) as e:
            _api(nothing).read_namespace("migrated")
        assert e.value.status == 404
    finally:
        nothing.stop()
        shutil.rmtree(src.data_dir, ignore_errors=True)
