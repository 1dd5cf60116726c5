"""kube-apiserver's request metrics: labels computed as upstream's endpoints/metrics does."""

from __future__ import annotations

from multidict import MultiDict

from kplane.apiserver.metrics import RequestMetrics, request_key, storage_objects_text
from kplane.apiserver.requestinfo import resolve


def key(method: str, path: str, query: str = "", content_type: str = "") -> tuple[str, ...]:
    q = MultiDict(pair.split("=", 1) for pair in query.split("&") if pair)
    return request_key(resolve(method, path, q), q, content_type)


def test_verbs_and_scopes_as_upstream() -> None:
    ns = "/api/v1/namespaces/demo/configmaps"
    assert key("GET", f"{ns}/a") == ("GET", "", "", "v1", "configmaps", "", "resource")
    assert key("GET", ns) == ("LIST", "", "", "v1", "configmaps", "", "namespace")
    assert key("GET", "/api/v1/configmaps") == ("LIST", "", "", "v1", "configmaps", "", "cluster")
    assert key("GET", ns, "watch=1")[0] == "WATCH"
    # A create is "resource" scoped upstream (CleanScope), though it names no object.
    assert key("POST", ns) == ("POST", "", "", "v1", "configmaps", "", "resource")
    assert key("PUT", f"{ns}/a")[0] == "PUT"
    assert key("PATCH", f"{ns}/a", content_type="application/merge-patch+json")[0] == "PATCH"
    assert key("PATCH", f"{ns}/a", content_type="application/apply-patch+yaml")[0] == "APPLY"
    assert key("DELETE", f"{ns}/a")[:1] == ("DELETE",) and key("DELETE", ns)[6] == "namespace"
    assert key("PUT", "/apis/apiregistration.k8s.io/v1/apiservices/v1.x/status") == (
        "PUT", "", "apiregistration.k8s.io", "v1", "apiservices", "status", "resource")
    assert key("POST", ns, "dryRun=All")[1] == "All"
    assert key("POST", ns, "dryRun=Bogus")[1] == "invalid"


def test_exposition() -> None:
    metrics = RequestMetrics()
    get = key("GET", "/api/v1/namespaces/demo/configmaps/a")
    metrics.observe(get, 200, 0.003)
    metrics.observe(get, 200, 0.03)
    metrics.observe(get, 404, 0.001)
    watch = key("GET", "/api/v1/namespaces/demo/configmaps", "watch=1")
    metrics.started_longrunning(watch)
    text = metrics.render()
    common = ('verb="GET",dry_run="",group="",version="v1",resource="configmaps",subresource="",'
              'scope="resource",component="apiserver"')
    assert f"apiserver_request_total{{{common},code=\"200\"}} 2" in text
    assert f"apiserver_request_total{{{common},code=\"404\"}} 1" in text
    assert f'apiserver_request_duration_seconds_bucket{{{common},le="0.005"}} 2' in text
    assert f'apiserver_request_duration_seconds_bucket{{{common},le="0.05"}} 3' in text
    assert f'apiserver_request_duration_seconds_bucket{{{common},le="+Inf"}} 3' in text
    assert f"apiserver_request_duration_seconds_count{{{common}}} 3" in text
    assert ('apiserver_longrunning_requests{verb="WATCH",group="",version="v1",resource="configmaps",'
            'subresource="",scope="namespace",component="apiserver"} 1') in text
    metrics.ended_longrunning(watch)
    assert 'scope="namespace",component="apiserver"} 0' in metrics.render()


def test_storage_objects_exposition() -> None:
    text = storage_objects_text({"configmaps": 3, "apiservices.apiregistration.k8s.io": 12})
    assert "# TYPE apiserver_storage_objects gauge" in text
    assert 'apiserver_storage_objects{resource="configmaps"} 3' in text
    assert 'apiserver_storage_objects{resource="apiservices.apiregistration.k8s.io"} 12' in text
