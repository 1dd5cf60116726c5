"""The aggregator's Prometheus metrics, rendered in the text exposition format.

Upstream's availability metrics (aggregator_unavailable_apiservice gauge and
aggregator_unavailable_apiservice_total counter) plus per-APIService proxy
request count and latency, which upstream lacks. Kept dependency-free: the hot
path only bumps a few integers.
"""

from __future__ import annotations

from kplane.apiserver.metrics import Histogram
from kplane.apiserver.metrics import labels as label_text

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class AggregatorMetrics:
    def __init__(self) -> None:
        self.availability: dict[str, bool] = {}
        self.unavailable_total: dict[tuple[str, str], int] = {}
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.inflight: dict[str, int] = {}
        self.express: dict[str, int] = {}  # requests the express lane relayed (express.py), by APIService
        self.discovery_stale: dict[str, bool] = {}

    # ---- availability (status/metrics) -------------------------------------------------------------

    def set_available(self, name: str, available: bool) -> None:
        self.availability[name] = available

    def forget(self, name: str) -> None:
        self.availability.pop(name, None)

    def count_unavailable(self, name: str, reason: str) -> None:
        key = (name, reason or "UnknownReason")
        self.unavailable_total[key] = self.unavailable_total.get(key, 0) + 1

    # ---- proxy ---------------------------------------------------------------------------------------

    def started(self, apiservice: str) -> None:
        self.inflight[apiservice] = self.inflight.get(apiservice, 0) + 1

    def observe(self, apiservice: str, method: str, code: int, seconds: float) -> None:
        """A proxied request ended (after started())."""
        self.inflight[apiservice] = self.inflight.get(apiservice, 1) - 1
        key = (apiservice, method, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        h = self.latency.get(apiservice)
        if h is None:
            h = self.latency[apiservice] = Histogram(BUCKETS)
        h.observe(seconds)

    # ---- exposition ----------------------------------------------------------------------------------

    def render(self) -> str:
        out: list[str] = []
        out.append("# HELP aggregator_unavailable_apiservice [ALPHA] Gauge of APIServices which are marked "
                   "as unavailable broken down by APIService name.")
        out.append("# TYPE aggregator_unavailable_apiservice gauge")
        for name in sorted(self.availability):
            out.append(f"aggregator_unavailable_apiservice{label_text([('name', name)])} "
                       f"{0 if self.availability[name] else 1}")
        out.append("# HELP aggregator_unavailable_apiservice_total [ALPHA] Counter of APIServices which are "
                   "marked as unavailable broken down by APIService name and reason.")
        out.append("# TYPE aggregator_unavailable_apiservice_total counter")
        for (name, reason), n in sorted(self.unavailable_total.items()):
            labels = label_text([("name", name), ("reason", reason)])
            out.append(f"aggregator_unavailable_apiservice_total{labels} {n}")
        out.append("# HELP kplane_aggregator_proxy_requests_total Requests proxied to remote APIServices, by "
                   "APIService, HTTP method and response code (0: the client went away).")
        out.append("# TYPE kplane_aggregator_proxy_requests_total counter")
        for (svc, method, code), n in sorted(self.requests.items()):
            labels = label_text([("apiservice", svc), ("method", method), ("code", str(code))])
            out.append(f"kplane_aggregator_proxy_requests_total{labels} {n}")
        out.append("# HELP kplane_aggregator_proxy_express_requests_total Proxied requests relayed by the express "
                   "lane (from the connections' callbacks), by APIService.")
        out.append("# TYPE kplane_aggregator_proxy_express_requests_total counter")
        for svc in sorted(self.express):
            out.append(f"kplane_aggregator_proxy_express_requests_total{label_text([('apiservice', svc)])} "
                       f"{self.express[svc]}")
        out.append("# HELP kplane_aggregator_proxy_inflight_requests Proxied requests in progress (watches "
                   "included), by APIService.")
        out.append("# TYPE kplane_aggregator_proxy_inflight_requests gauge")
        for svc in sorted(self.inflight):
            out.append(f"kplane_aggregator_proxy_inflight_requests{label_text([('apiservice', svc)])} "
                       f"{self.inflight[svc]}")
        out.append("# HELP kplane_aggregator_proxy_request_duration_seconds Time to answer a proxied request "
                   "(for streaming responses: until the stream ended), by APIService.")
        out.append("# TYPE kplane_aggregator_proxy_request_duration_seconds histogram")
        for svc in sorted(self.latency):
            out += self.latency[svc].render("kplane_aggregator_proxy_request_duration_seconds", [("apiservice", svc)])
        return "\n".join(out) + "\n"
