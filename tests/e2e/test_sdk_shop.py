"""The SDK end to end: examples/shop and examples/hostinfo as real extension servers behind a real
kplane, driven with the real kubectl through kplane's aggregator — CRUD, printer columns, watch,
the status subresource, admission, two versions, a custom subresource, computed resources, and a
user kplane does not authorize."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kplane.testing import ExtensionProcess, KplaneProcess, Kubectl

REPO = Path(__file__).resolve().parents[2]
ORDERS = "/apis/shop.example.com/v1/namespaces/default/orders"


@pytest.fixture(scope="module")
def shop(kp: KplaneProcess) -> Iterator[ExtensionProcess]:
    ext = ExtensionProcess(kp, "examples.shop", args=["--bind-address", "127.0.0.1"], cwd=REPO)
    try:
        ext.start(apiservices=["v1.shop.example.com", "v1beta1.shop.example.com"])
        yield ext
    finally:
        ext.cleanup()


def order(name: str, item: str, qty: int = 1) -> str:
    return json.dumps({"apiVersion": "shop.example.com/v1", "kind": "Order",
                       "metadata": {"name": name, "namespace": "default"}, "spec": {"item": item,
                                                                                    "qty": qty}})


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def test_discovery_short_names_and_categories(shop: ExtensionProcess, kubectl: Kubectl) -> None:
    out = kubectl("api-resources", "--api-group=shop.example.com", "--no-headers")
    assert sorted(rows(out)) == [["orders", "ord", "shop.example.com/v1", "true", "Order"],
                                 ["stocks", "shop.example.com/v1", "false", "Stock"]]
    versions = json.loads(kubectl("get", "--raw", "/apis/shop.example.com"))
    assert [v["version"] for v in versions["versions"]] == ["v1", "v1beta1"]
    assert versions["preferredVersion"]["version"] == "v1"
    explained = kubectl("explain", "orders.spec")
    assert "item\t<string> -required-" in explained and "how many" in explained


def test_crud_and_printer_columns(shop: ExtensionProcess, kubectl: Kubectl) -> None:
    assert kubectl("create", "-f", "-", input=order("o-crud", "apple", 3)).strip() == \
        "order.shop.example.com/o-crud created"
    table = rows(kubectl("get", "ord", "o-crud"))
    assert table[0] == ["NAME", "ITEM", "QTY", "PHASE", "AGE"]
    assert table[1][:4] == ["o-crud", "apple", "3", "Pending"]
    assert rows(kubectl("get", "orders", "o-crud", "-o", "wide"))[0] == [
        "NAME", "ITEM", "QTY", "PHASE", "APPROVED-BY", "AGE"]

    kubectl("patch", "order", "o-crud", "--type=merge", "-p", '{"spec": {"qty": 4}}')
    got = kubectl.json("get", "order", "o-crud")
    assert got["spec"] == {"item": "apple", "qty": 4}
    assert got["metadata"]["generation"] == 2
    assert got["status"] == {"phase": "Pending"}  # set by the mutating admission hook

    # kubectl apply (client-side) then server-side apply of the same object.
    kubectl("apply", "-f", "-", input=order("o-crud", "apple", 5))
    kubectl("apply", "--server-side", "--field-manager=test", "--force-conflicts", "-f", "-",
            input=order("o-crud", "apple", 6))
    assert kubectl.json("get", "order", "o-crud")["spec"]["qty"] == 6

    assert "deleted" in kubectl("delete", "order", "o-crud")
    r = kubectl.run("get", "order", "o-crud", check=False)
    assert r.returncode == 1
    assert 'orders.shop.example.com "o-crud" not found' in r.stderr


def test_watch_through_the_aggregator(shop: ExtensionProcess, kubectl: Kubectl) -> None:
    proc = subprocess.Popen(["kubectl", "--kubeconfig", kubectl.kubeconfig, "get", "orders", "-n", "default",
                             "--watch-only", "--output-watch-events", "-o",
                             "jsonpath={.type} {.object.metadata.name} {.object.spec.qty}{\"\\n\"}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in proc.stdout], daemon=True).start()
    try:
        time.sleep(1.0)  # let the watch be established
        kubectl("create", "-f", "-", input=order("o-watch", "banana", 2))
        kubectl("patch", "order", "o-watch", "--type=merge", "-p", '{"spec": {"qty": 3}}')
        kubectl("delete", "order", "o-watch")
        seen = [lines.get(timeout=10) for _ in range(3)]
    finally:
        proc.terminate()
        proc.wait(10)
    assert seen == ["ADDED o-watch 2", "MODIFIED o-watch 3", "DELETED o-watch 3"], proc.stderr.read()


def test_status_subresource(shop: ExtensionProcess, kubectl: Kubectl) -> None:
    kubectl("create", "-f", "-", input=order("o-status", "cherry"))
    # The main endpoint ignores status ...
    kubectl("patch", "order", "o-status", "--type=merge", "-p", '{"status": {"phase": "Approved"}}')
    assert kubectl.json("get", "order", "o-status")["status"]["phase"] == "Pending"
    # ... /status changes it and nothing else, and does not move the generation.
    kubectl("patch", "order", "o-status", "--subresource=status", "--type=merge", "-p",
            '{"status": {"phase": "Approved"}, "spec": {"qty": 9}}')
    got = kubectl.json("get", "order", "o-status")
    assert got["status"]["phase"] == "Approved"
    assert got["spec"]["qty"] == 1 and got["metadata"]["generation"] == 1
    r = kubectl.run("patch", "order", "o-status", "--subresource=status", "--type=merge", "-p",
                    '{"status": {"phase": "Shipped"}}', check=False)
    assert r.returncode == 1
    assert 'Unsupported value: "Shipped"' in r.stderr


def test_admission_rejections(shop: ExtensionProcess, kubectl: Kubectl) -> None:
    r = kubectl.run("create", "-f", "-", input=order("o-durian", "durian"), check=False)
    assert r.returncode == 1
    assert ('Error from server (Forbidden): error when creating "STDIN": orders.shop.example.com "o-durian" '
            'is forbidden: durians are not sold here') in r.stderr
    r = kubectl.run("create", "-f", "-", input=order("o-many", "apple", 60), check=False)
    assert r.returncode == 1
    # kubectl words 422s itself ("The <details.kind> <name> is invalid: <causes>").
    assert ('The Order "o-many" is invalid: spec.qty: Invalid value: 60: must not exceed 50 '
            '(unless you are a buyer)') in r.stderr
    r = kubectl.run("create", "-f", "-", input=order("o-zero", "apple", 0), check=False)
    assert "spec.qty: Invalid value: 0: spec.qty in body should be greater than or equal to 1" in r.stderr
    kubectl("create", "-f", "-", input=order("o-immutable", "apple"))
    r = kubectl.run("patch", "order", "o-immutable", "--type=merge", "-p", '{"spec": {"item": "banana"}}',
                    check=False)
    assert 'spec.item: Invalid value: "banana": field is immutable' in r.stderr


def test_second_version_is_converted(shop: ExtensionProcess, kubectl: Kubectl) -> None:
    kubectl("create", "-f", "-", input=order("o-v", "banana", 7))
    beta = kubectl.json("get", "orders.v1beta1.shop.example.com", "o-v")
    assert beta["apiVersion"] == "shop.example.com/v1beta1"
    assert beta["spec"] == {"product": "banana", "count": 7}
    kubectl("patch", "orders.v1beta1.shop.example.com", "o-v", "--type=merge", "-p", '{"spec": {"count": 8}}')
    assert kubectl.json("get", "orders.v1.shop.example.com", "o-v")["spec"] == {"item": "banana", "qty": 8}
    table = rows(kubectl("get", "orders.v1beta1.shop.example.com", "o-v"))
    assert table[0] == ["NAME", "PRODUCT", "COUNT", "AGE"] and table[1][:3] == ["o-v", "banana", "8"]


def test_custom_subresource_and_computed_resource(shop: ExtensionProcess, kubectl: Kubectl,
                                                  tmp_path: Path) -> None:
    before = {r[0]: r for r in rows(kubectl("get", "stocks", "--no-headers"))}
    assert sorted(before) == ["apple", "banana", "cherry"]
    assert before["cherry"][1] == "500"  # TOTAL

    kubectl("create", "-f", "-", input=order("o-approve", "cherry", 20))
    body = tmp_path / "approve.json"
    body.write_text('{"note": "rush"}')
    approved = json.loads(kubectl("create", "--raw", f"{ORDERS}/o-approve/approve", "-f", str(body)))
    assert approved["status"] == {"phase": "Approved", "approvedBy": "kplane-admin", "note": "rush"}
    assert kubectl.json("get", "order", "o-approve")["status"]["phase"] == "Approved"

    after = {r[0]: r for r in rows(kubectl("get", "stocks", "--no-headers"))}
    assert int(after["cherry"][2]) == int(before["cherry"][2]) + 20  # RESERVED
    assert int(after["cherry"][3]) == int(before["cherry"][3]) - 20  # AVAILABLE
    stock = kubectl.json("get", "stock", "cherry")
    assert stock["kind"] == "Stock" and stock["apiVersion"] == "shop.example.com/v1"
    r = kubectl.run("delete", "stock", "cherry", check=False)
    assert r.returncode == 1
    assert "(MethodNotAllowed)" in r.stderr, r.stderr

    # `kubectl get shop` lists the category: orders and stocks.
    out = kubectl("get", "shop", "-n", "default", "-o", "name")
    assert "order.shop.example.com/o-approve" in out and "stock.shop.example.com/cherry" in out


def _user_kubeconfig(kp: KplaneProcess, user: str, groups: list[str], tmp_path: Path) -> str:
    return kp.user_kubeconfig(user, groups, tmp_path)


def test_user_without_permission_is_forbidden(shop: ExtensionProcess, kp: KplaneProcess, kubectl: Kubectl,
                                              tmp_path: Path) -> None:
    """bob is authenticated (a client certificate from kplane's CA) and has no RBAC grant: kplane
    (or, before kplane authorizes itself, the extension through its SubjectAccessReview) says 403."""
    bob = Kubectl(_user_kubeconfig(kp, "bob", ["devs"], tmp_path))
    r = bob.run("get", "orders", "-n", "default", check=False)
    assert r.returncode == 1
    assert ('Error from server (Forbidden): orders.shop.example.com is forbidden: User "bob" cannot list '
            'resource "orders" in API group "shop.example.com" in the namespace "default"') in r.stderr
    r = bob.run("create", "--raw", f"{ORDERS}/o-approve/approve", "-f", "-", input="{}", check=False)
    assert r.returncode == 1 and "Forbidden" in r.stderr, r.stderr

    sar = kubectl.run("get", "--raw", "/apis/authorization.k8s.io/v1", check=False)
    if sar.returncode != 0 or "subjectaccessreviews" not in sar.stdout:
        return  # kplane without RBAC: the 403 above came from the extension (its SAR found no authorizer)
    # With RBAC: a Role for reading orders lets bob through kplane, and the extension's own
    # SubjectAccessReview (delegated to kplane, with the auth-delegator grant `register` made) agrees.
    kubectl("create", "role", "order-reader", "-n", "default", "--verb=get,list,watch",
            "--resource=orders.shop.example.com")
    kubectl("create", "rolebinding", "bob-reads-orders", "-n", "default", "--role=order-reader", "--user=bob")
    deadline = time.monotonic() + 15  # the extension caches the earlier denial for up to 10 s
    while True:
        r = bob.run("get", "orders", "-n", "default", "-o", "name", check=False)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.returncode == 0, r.stderr
    r = bob.run("create", "--raw", f"{ORDERS}/o-approve/approve", "-f", "-", input="{}", check=False)
    assert r.returncode == 1
    assert 'cannot create resource "orders/approve" in API group "shop.example.com"' in r.stderr, r.stderr


def test_hostinfo_computed_api(kp: KplaneProcess, kubectl: Kubectl) -> None:
    ext = ExtensionProcess(kp, "examples.hostinfo", args=["--bind-address", "127.0.0.1"], cwd=REPO)
    try:
        ext.start(apiservices=["v1.hostinfo.example.com"])
        pid = str(ext.proc.pid)
        got = kubectl.json("get", "process", pid)
        assert got["kind"] == "Process" and got["pid"] == ext.proc.pid and got["command"].startswith("python")
        table = rows(kubectl("get", "ps", pid))
        assert table[0] == ["NAME", "PID", "PPID", "STATE", "RSS", "COMMAND", "AGE"]
        assert table[1][:2] == [pid, pid]
        names = kubectl("get", "processes", "-o", "name").split()
        assert f"process.hostinfo.example.com/{pid}" in names and len(names) > 3
        selected = kubectl("get", "processes", "-o", "name", f"--field-selector=metadata.name={pid}").split()
        assert selected == [f"process.hostinfo.example.com/{pid}"]
        others = kubectl("get", "processes", "-o", "name", f"--field-selector=metadata.name!={pid}").split()
        assert f"process.hostinfo.example.com/{pid}" not in others and len(others) >= 3
        disks = kubectl.json("get", "disks")["items"]
        assert any(d["mountPoint"] == "/" and d["metadata"]["name"] == "root" for d in disks)
        r = kubectl.run("get", "process", "no-such-pid", check=False)
        assert 'processes.hostinfo.example.com "no-such-pid" not found' in r.stderr
    finally:
        ext.cleanup()
