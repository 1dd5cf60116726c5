"""Availability condition reasons and messages (kube-aggregator 1.32) with fake stores and probes."""

from __future__ import annotations

from kplane.aggregator import apiservice as apis
from kplane.aggregator.availability import AvailabilityController
from kplane.aggregator.endpoints import EndpointResolver
from kplane.aggregator.metrics import AggregatorMetrics


class FakeProber:
    def __init__(self, error=None):
        self.error = error
        self.calls = []

    async def probe(self, host, port, path):
        self.calls.append((host, port, path))
        return self.error


def remote(port=443):
    return {"metadata": {"name": "v1alpha1.wardle.example.com"},
            "spec": {"group": "wardle.example.com", "version": "v1alpha1", "groupPriorityMinimum": 1000,
                     "versionPriority": 15, "service": {"namespace": "wardle", "name": "api", "port": port}}}


def controller(objects, prober=None):
    store = {"v1alpha1.wardle.example.com": remote(), "v1.local.io": {
        "metadata": {"name": "v1.local.io"}, "spec": {"group": "local.io", "version": "v1",
                                                       "groupPriorityMinimum": 1, "versionPriority": 1}}}
    written = {}

    def lookup(g, v, plural, ns, name):
        return objects.get((plural, ns, name))

    async def write_status(name, status):
        written[name] = status
        store[name] = dict(store[name], status=status)

    c = AvailabilityController(get=store.get, names=lambda: list(store), lookup=lookup,
                               resolver=EndpointResolver(lookup), write_status=write_status,
                               prober=prober or FakeProber(), metrics=AggregatorMetrics(), now=lambda: "T")
    return c, store, written


SVC = {"spec": {"type": "ClusterIP", "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}
EPS = {"subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": 8443}]}]}


async def cond_for(objects, prober=None):
    c, store, _written = controller(objects, prober)
    ok = await c.sync("v1alpha1.wardle.example.com")
    cond = apis.get_condition(store["v1alpha1.wardle.example.com"])
    return ok, cond, c


async def test_local():
    c, _store, written = controller({})
    assert await c.sync("v1.local.io")
    assert written["v1.local.io"]["conditions"] == [
        {"type": "Available", "status": "True", "lastTransitionTime": "T", "reason": "Local",
         "message": "Local APIServices are always available"}]


async def test_service_not_found():
    _, cond, _ = await cond_for({})
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False", "ServiceNotFound", 'service/api in "wardle" is not present')


async def test_service_port_error():
    svc = {"spec": {"ports": [{"name": "https", "port": 444}]}}
    _, cond, _ = await cond_for({("services", "wardle", "api"): svc})
    assert (cond["reason"], cond["message"]) == (
        "ServicePortError", 'service/api in "wardle" is not listening on port 443')


async def test_endpoints_not_found_and_missing():
    _, cond, _ = await cond_for({("services", "wardle", "api"): SVC})
    assert (cond["reason"], cond["message"]) == (
        "EndpointsNotFound", 'cannot find endpoints for service/api in "wardle"')
    empty = {"subsets": [{"notReadyAddresses": [{"ip": "1.2.3.4"}], "ports": [{"name": "https", "port": 8443}]}]}
    _, cond, _ = await cond_for({("services", "wardle", "api"): SVC, ("endpoints", "wardle", "api"): empty})
    assert (cond["reason"], cond["message"]) == (
        "MissingEndpoints", 'endpoints for service/api in "wardle" have no addresses with port name "https"')


async def test_failed_discovery_check_and_passed():
    objs = {("services", "wardle", "api"): SVC, ("endpoints", "wardle", "api"): EPS}
    msg = ('failing or missing response from https://127.0.0.1:8443/apis/wardle.example.com/v1alpha1: Get '
           '"https://127.0.0.1:8443/apis/wardle.example.com/v1alpha1": dial tcp 127.0.0.1:8443: connect: '
           'connection refused')
    ok, cond, c = await cond_for(objs, FakeProber(msg))
    assert not ok  # requeued with backoff
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "FailedDiscoveryCheck", msg)
    assert c.prober.calls[0] == ("127.0.0.1", 8443, "/apis/wardle.example.com/v1alpha1")
    assert c.metrics.availability == {"v1alpha1.wardle.example.com": False}
    # Upstream counts only transitions from Available to unavailable (no condition is not Available).
    assert c.metrics.unavailable_total == {}
    assert 'aggregator_unavailable_apiservice{name="v1alpha1.wardle.example.com"} 1' in c.metrics.render()
    c.prober.error = None
    assert await c.sync("v1alpha1.wardle.example.com")
    cond = apis.get_condition(c.get("v1alpha1.wardle.example.com"))
    assert (cond["status"], cond["reason"], cond["message"]) == ("True", "Passed", "all checks passed")
    c.prober.error = msg
    await c.sync("v1alpha1.wardle.example.com")
    assert c.metrics.unavailable_total == {("v1alpha1.wardle.example.com", "FailedDiscoveryCheck"): 1}


async def test_no_write_when_nothing_changed():
    objs = {("services", "wardle", "api"): SVC, ("endpoints", "wardle", "api"): EPS}
    c, _store, written = controller(objs)
    await c.sync("v1alpha1.wardle.example.com")
    written.clear()
    await c.sync("v1alpha1.wardle.example.com")
    assert written == {}
