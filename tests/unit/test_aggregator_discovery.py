"""Merged discovery: legacy ordering from APIServices, aggregated v2 with Stale on failure and the 5 s bound."""

from __future__ import annotations

import asyncio
import time

import orjson

from kplane.aggregator.discovery import (
    DISCOVERY_TIMEOUT,
    REQUEST_TIMEOUT,
    MergedDiscovery,
    convert_resource_list,
)
from kplane.apiserver import discovery as disco


class FakeLocal:
    def local_groups(self):
        return {"": {"v1": []}, "apps": {"v1": []}, "apiregistration.k8s.io": {"v1": []},
                "example.kplane.io": {"v1": []}}

    async def group(self, name):
        return disco.api_group(name, ["v1"]) if name in self.local_groups() else None

    async def resource_list(self, group, version):
        return None

    async def aggregated(self, prefix):
        return disco.aggregated_list([disco.aggregated_group(g, [disco.aggregated_version("v1", [])])
                                      for g in ("apps", "apiregistration.k8s.io", "example.kplane.io")])


def remote(version="v1alpha1", gpm=1000, vp=15):
    return {"metadata": {"name": f"{version}.wardle.example.com"},
            "spec": {"group": "wardle.example.com", "version": version, "groupPriorityMinimum": gpm,
                     "versionPriority": vp, "service": {"namespace": "wardle", "name": "api", "port": 443}}}


def local(group, version, gpm, vp):
    return {"metadata": {"name": f"{version}.{group}"},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": gpm, "versionPriority": vp}}


async def test_legacy_group_list_order_without_calling_backends():
    services = [local("apps", "v1", 17800, 15), remote("v1alpha1", 1000, 15), remote("v1beta1", 1000, 10),
                local("", "v1", 18000, 1)]
    called = []

    async def fetch(*a):
        called.append(a)
        raise AssertionError("legacy discovery must not call a backend")

    d = MergedDiscovery(FakeLocal(), lambda: services, fetch, group_priority={"example.kplane.io": 500})
    doc = await d.group_list()
    assert [g["name"] for g in doc["groups"]] == ["apiregistration.k8s.io", "apps", "wardle.example.com",
                                                  "example.kplane.io"]
    wardle = doc["groups"][2]
    assert [v["version"] for v in wardle["versions"]] == ["v1alpha1", "v1beta1"]  # versionPriority wins
    assert wardle["preferredVersion"] == {"groupVersion": "wardle.example.com/v1alpha1", "version": "v1alpha1"}
    assert (await d.group("wardle.example.com"))["versions"][0]["version"] == "v1alpha1"
    assert called == []


V2 = {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "items": [
    {"metadata": {"name": "wardle.example.com"}, "versions": [{"version": "v1alpha1", "resources": [
        {"resource": "flunders", "responseKind": {"group": "", "version": "", "kind": "Flunder"},
         "scope": "Namespaced", "singularResource": "flunder", "verbs": ["get", "list"]}]}]}]}


async def test_aggregated_fetch_etag_then_stale_keeps_last_good():
    state = {"mode": "ok", "calls": []}

    async def fetch(st, path, headers):
        state["calls"].append((path, dict(headers)))
        if state["mode"] == "fail":
            raise OSError("connection refused")
        if headers.get("If-None-Match") == '"e1"':
            return 304, {}, b""
        return 200, {"Content-Type": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
                     "ETag": '"e1"'}, orjson.dumps(V2)

    d = MergedDiscovery(FakeLocal(), lambda: [remote()], fetch)
    d.set_apiservices([remote()])
    st = d.remote["v1alpha1.wardle.example.com"]
    assert await d.sync(st)
    doc = await d.aggregated("apis")
    groups = [(g["metadata"]["name"], [(v["version"], v["freshness"]) for v in g["versions"]]) for g in doc["items"]]
    assert groups[0][0] == "apiregistration.k8s.io"
    assert ("wardle.example.com", [("v1alpha1", "Current")]) in groups
    assert state["calls"][0][1]["Accept"].startswith("application/json;g=apidiscovery.k8s.io;v=v2;as=")
    d.mark_dirty(st.name)
    await asyncio.sleep(0.001)
    assert await d.sync(st)
    assert state["calls"][-1][1]["If-None-Match"] == '"e1"'
    state["mode"] = "fail"
    d.mark_dirty(st.name)
    await asyncio.sleep(0.001)
    assert not await d.sync(st)
    entry = st.entry
    assert entry["freshness"] == "Stale" and entry["resources"][0]["resource"] == "flunders"


async def test_legacy_fallback_when_backend_has_no_v2():
    async def fetch(st, path, headers):
        if path == "/apis":
            return 404, {}, b"not found"
        return 200, {}, orjson.dumps({"kind": "APIResourceList", "groupVersion": "wardle.example.com/v1alpha1",
                                      "resources": [{"name": "flunders", "singularName": "flunder",
                                                     "namespaced": True, "kind": "Flunder", "verbs": ["get"]},
                                                    {"name": "flunders/status", "singularName": "",
                                                     "namespaced": True, "kind": "Flunder", "verbs": ["get"]}]})

    d = MergedDiscovery(FakeLocal(), lambda: [remote()], fetch)
    d.set_apiservices([remote()])
    st = d.remote["v1alpha1.wardle.example.com"]
    assert await d.sync(st)
    assert st.entry["resources"][0]["subresources"][0]["subresource"] == "status"
    assert st.entry["freshness"] == "Current"


async def test_hanging_backend_is_stale_within_the_bound_and_others_still_served():
    async def fetch(st, path, headers):
        await asyncio.sleep(3600)

    d = MergedDiscovery(FakeLocal(), lambda: [remote()], fetch)
    assert d.timeout == DISCOVERY_TIMEOUT == 5.0
    d.timeout = 0.3  # the same code path, shortened for a fast unit test
    d.set_apiservices([remote()])
    d.start()
    try:
        t0 = time.monotonic()
        doc = await d.aggregated("apis")
        elapsed = time.monotonic() - t0
    finally:
        await d.stop()
    assert elapsed < 2.0
    names = {g["metadata"]["name"]: g for g in doc["items"]}
    assert names["wardle.example.com"]["versions"][0]["freshness"] == "Stale"
    assert "apps" in names and names["apps"]["versions"][0]["freshness"] == "Current"


def test_feature_gate_off_lifts_the_5s_bound():
    d = MergedDiscovery(FakeLocal(), list, None, timeout_enabled=False)
    assert d.timeout == REQUEST_TIMEOUT > 7


def test_convert_resource_list():
    out = convert_resource_list([{"name": "a", "singularName": "a", "namespaced": False, "kind": "A",
                                  "verbs": ["get"], "shortNames": ["aa"]}])
    assert out == [{"resource": "a", "responseKind": {"group": "", "version": "", "kind": "A"}, "scope": "Cluster",
                    "singularResource": "a", "verbs": ["get"], "shortNames": ["aa"]}]
