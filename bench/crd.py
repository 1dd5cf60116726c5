"""Custom resource throughput vs ConfigMaps (issue 6): create, get and list of a CR whose schema has 30
spec fields and two CEL rules, against the same operations on a ConfigMap with 30 data keys, in the same
run on the same server. Target: the CR reaches >= 60% of the ConfigMap throughput.

    python -m bench.crd [--duration 4] [--concurrency 16] [--procs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from typing import Any

from bench._load import RequestSpec, TLSFiles, run_load

GROUP = "bench.example.com"
FIELDS = 30
LIST_SIZE = 200


def crd() -> dict[str, Any]:
    props: dict[str, Any] = {}
    for i in range(FIELDS):
        kind = ("string", "integer", "boolean")[i % 3]
        props[f"field{i:02d}"] = {"type": kind} | ({"maxLength": 64} if kind == "string" else {}) | (
            {"minimum": 0, "maximum": 1_000_000} if kind == "integer" else {})
    schema = {"type": "object", "properties": {"spec": {
        "type": "object", "properties": props, "required": ["field00", "field01"],
        "x-kubernetes-validations": [
            {"rule": "self.field01 <= self.field04", "message": "field01 must not exceed field04"},
            {"rule": "self.field00.startsWith('v-')", "message": "field00 must start with v-"}]}}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"widgets.{GROUP}"},
            "spec": {"group": GROUP, "scope": "Namespaced",
                     "names": {"plural": "widgets", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": schema}}]}}


def spec_values() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for i in range(FIELDS):
        values[f"field{i:02d}"] = (f"v-{i}-value", i * 10, i % 2 == 0)[i % 3]
    return values


def widget(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec_values()}


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {k: str(v) for k, v in spec_values().items()}}


class Client:
    def __init__(self, url: str, tls: TLSFiles):
        self.url = url
        self.ctx = tls.client_context()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")


def _template(obj: dict[str, Any]) -> str:
    # {n} makes each created name unique.
    return json.dumps(obj).replace('"NAME"', '"c-{n}"')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--procs", type=int, default=2, help="load generator processes")
    args = ap.parse_args()

    from kplane.testing import KplaneProcess

    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; server and generators share them",
          flush=True)
    with KplaneProcess() as kp:
        pki = kp.data_dir / "pki"
        tls = TLSFiles(str(pki / "ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))
        client = Client(kp.url, tls)
        status, _ = client.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd())
        assert status == 201, status
        deadline = time.monotonic() + 30
        while client.request("GET", f"/apis/{GROUP}/v1/namespaces/default/widgets")[0] != 200:
            if time.monotonic() > deadline:
                raise SystemExit("CRD not established in 30 s")
            time.sleep(0.1)
        for ns in ("bench-cm", "bench-cr", "bench-list-cm", "bench-list-cr"):
            client.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        bad = widget("bad")
        bad["spec"]["field01"] = 10**6
        status, err = client.request("POST", f"/apis/{GROUP}/v1/namespaces/bench-cr/widgets", bad)
        assert status == 422, (status, err)  # the CEL rules really run
        paths = {"cm": "/api/v1/namespaces/{ns}/configmaps", "cr": f"/apis/{GROUP}/v1/namespaces/{{ns}}/widgets"}
        makers = {"cm": configmap, "cr": widget}
        for kind in ("cm", "cr"):
            base = paths[kind]
            assert client.request("POST", base.format(ns=f"bench-{kind}"), makers[kind]("get"))[0] == 201
            for i in range(LIST_SIZE):
                client.request("POST", base.format(ns=f"bench-list-{kind}"), makers[kind](f"item-{i:04d}"))

        rows = []
        for op in ("create", "get", "list"):
            result = {}
            for kind in ("cm", "cr"):
                base = paths[kind]
                if op == "create":
                    spec = RequestSpec("POST", base.format(ns=f"bench-{kind}"), _template(makers[kind]("NAME")),
                                       headers=(("Accept", "application/json"),
                                                ("Content-Type", "application/json")), expect=(201,))
                elif op == "get":
                    spec = RequestSpec("GET", base.format(ns=f"bench-{kind}") + "/get")
                else:
                    spec = RequestSpec("GET", base.format(ns=f"bench-list-{kind}"))
                concurrency = args.concurrency if op != "list" else max(1, args.concurrency // 4)
                result[kind] = run_load(kp.url, tls, spec, concurrency=concurrency, duration=args.duration,
                                        warmup=args.warmup, processes=args.procs)
            cm, cr = result["cm"], result["cr"]
            label = op if op != "list" else f"list ({LIST_SIZE} items)"
            rows.append((label, cm.rps, cr.rps, cr.rps / cm.rps if cm.rps else 0.0, cm.pct(50), cr.pct(50),
                         cm.errors + cr.errors))
            print(f"  {label}: configmap {cm.rps:.0f}/s, custom resource {cr.rps:.0f}/s", flush=True)

    print()
    print("| operation | ConfigMap req/s | CR req/s | CR / ConfigMap | p50 ConfigMap | p50 CR | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, cm_rps, cr_rps, ratio, p50_cm, p50_cr, errs in rows:
        print(f"| {label} | {cm_rps:.0f} | {cr_rps:.0f} | {ratio:.0%} | {p50_cm * 1000:.1f} ms | "
              f"{p50_cr * 1000:.1f} ms | {errs} |")
    worst = min(r[3] for r in rows)
    print(f"\nworst ratio {worst:.0%} (target >= 60%): {'met' if worst >= 0.6 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
