"""Prometheus metrics in the text exposition format, and kube-apiserver's request metrics.

`RequestMetrics` keeps upstream's stable request metrics (k8s.io/apiserver/pkg/endpoints/
metrics) for the resource requests a server answers itself:

- `apiserver_request_total{verb, dry_run, group, version, resource, subresource, scope,
  component, code}`;
- `apiserver_request_duration_seconds` (same labels without code, upstream's buckets; a watch
  counts until it ends);
- `apiserver_longrunning_requests` (open watches);

and `apiserver_storage_objects{resource}` (objects stored per resource, "configmaps",
"apiservices.apiregistration.k8s.io"), read from the watch caches when scraped.

Labels as upstream computes them: the verb is the HTTP method's (GET or LIST by scope, WATCH,
POST, PUT, PATCH, APPLY for a server-side apply, DELETE); the scope is "resource" for a named
object or a create, else "namespace" or "cluster". Requests a server passes on (the aggregator's
proxy) are not counted: the server behind it counts them. Dependency-free and cheap: a request
costs a label tuple and a few integer bumps.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import Any

COMPONENT = "apiserver"
DURATION_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
                    10.0, 15.0, 20.0, 30.0, 45.0, 60.0)
_APPLY_PATCH = "application/apply-patch+yaml"
_VERBS = {"get": "GET", "list": "LIST", "watch": "WATCH", "create": "POST", "update": "PUT", "patch": "PATCH",
          "delete": "DELETE", "deletecollection": "DELETE"}
_LABELS = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component")

Key = tuple[str, str, str, str, str, str, str]  # verb, dry_run, group, version, resource, subresource, scope


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in pairs) + "}"


def number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


class Histogram:
    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: Sequence[float]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self, name: str, pairs: list[tuple[str, str]]) -> list[str]:
        out = []
        cumulative = 0
        for bound, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
            cumulative += n
            out.append(f"{name}_bucket{labels([*pairs, ('le', number(bound))])} {cumulative}")
        out.append(f"{name}_sum{labels(pairs)} {self.sum!r}")
        out.append(f"{name}_count{labels(pairs)} {self.count}")
        return out


def request_key(info: Any, query: Any, content_type: str) -> Key:
    """The labels (without component and code) of a resource request described by `info`."""
    scope = "resource" if info.name or info.verb == "create" else "namespace" if info.namespace else "cluster"
    verb = _VERBS.get(info.verb, "other")
    if verb == "PATCH" and content_type.split(";", 1)[0].strip() == _APPLY_PATCH:
        verb = "APPLY"
    dry_run = ""
    values = query.getall("dryRun", ()) if "dryRun" in query else ()
    if values:
        dry_run = ",".join(sorted(set(values))) if all(v == "All" for v in values) else "invalid"
    return verb, dry_run, info.api_group, info.api_version, info.resource, info.subresource, scope


class RequestMetrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[Key, int], int] = {}
        self.durations: dict[Key, Histogram] = {}
        self.longrunning: dict[Key, int] = {}

    def started_longrunning(self, key: Key) -> None:
        self.longrunning[key] = self.longrunning.get(key, 0) + 1

    def ended_longrunning(self, key: Key) -> None:
        self.longrunning[key] = self.longrunning.get(key, 1) - 1

    def observe(self, key: Key, code: int, seconds: float) -> None:
        counted = (key, code)
        self.requests[counted] = self.requests.get(counted, 0) + 1
        histogram = self.durations.get(key)
        if histogram is None:
            histogram = self.durations[key] = Histogram(DURATION_BUCKETS)
        histogram.observe(seconds)

    def render(self) -> str:
        out = ["# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, "
               "dry run value, group, version, resource, scope, component, and HTTP response code.",
               "# TYPE apiserver_request_total counter"]
        for (key, code), n in sorted(self.requests.items()):
            out.append(f"apiserver_request_total{labels([*self._pairs(key), ('code', str(code))])} {n}")
        out += ["# HELP apiserver_request_duration_seconds [STABLE] Response latency distribution in seconds for "
                "each verb, dry run value, group, version, resource, subresource, scope and component.",
                "# TYPE apiserver_request_duration_seconds histogram"]
        for key, histogram in sorted(self.durations.items()):
            out += histogram.render("apiserver_request_duration_seconds", self._pairs(key))
        out += ["# HELP apiserver_longrunning_requests [STABLE] Gauge of all active long-running apiserver "
                "requests broken out by verb, group, version, resource, scope and component. Not all requests "
                "are tracked this way.",
                "# TYPE apiserver_longrunning_requests gauge"]
        for key, n in sorted(self.longrunning.items()):
            pairs = [p for p in self._pairs(key) if p[0] != "dry_run"]
            out.append(f"apiserver_longrunning_requests{labels(pairs)} {n}")
        return "\n".join(out) + "\n"

    @staticmethod
    def _pairs(key: Key) -> list[tuple[str, str]]:
        return list(zip(_LABELS, (*key, COMPONENT), strict=True))


def storage_objects_text(counts: dict[str, int]) -> str:
    """apiserver_storage_objects: `counts` maps "<resource>[.<group>]" to its number of objects."""
    out = ["# HELP apiserver_storage_objects [STABLE] Number of stored objects at the time of last check "
           "split by kind. In case of a fetching error, the value will be -1.",
           "# TYPE apiserver_storage_objects gauge"]
    out += [f"apiserver_storage_objects{labels([('resource', name)])} {n}" for name, n in sorted(counts.items())]
    return "\n".join(out) + "\n"
