"""A terminating namespace's content on remote APIServices (kplane/aggregator/namespaces.py)."""

from __future__ import annotations

from types import SimpleNamespace

import orjson

from kplane.aggregator.namespaces import delete_remote_content

DISCOVERY = {"resources": [
    {"name": "flunders", "namespaced": True, "verbs": ["create", "delete", "deletecollection", "get", "list"]},
    {"name": "flunders/status", "namespaced": True, "verbs": ["get", "update"]},
    {"name": "fischers", "namespaced": False, "verbs": ["delete", "list"]},
    {"name": "reports", "namespaced": True, "verbs": ["get", "list"]},  # computed: not deletable, skipped
    {"name": "notes", "namespaced": True, "verbs": ["delete", "list"]},  # no deletecollection: one by one
]}


class FakeProxy:
    def __init__(self, held: dict[str, list[str]]):
        self.held = held  # resource -> names in the namespace
        self.calls: list[tuple[str, str]] = []

    async def fetch(self, target, path, headers, user=None, method="GET"):
        self.calls.append((method, path))
        if path == "/apis/wardle.example.com/v1alpha1":
            return 200, {}, orjson.dumps(DISCOVERY)
        parts = path.split("/")  # /apis/g/v/namespaces/ns/resource[/name]
        resource = parts[6]
        if method == "DELETE":
            if len(parts) == 8:
                self.held[resource].remove(parts[7])
            elif resource == "flunders":
                self.held[resource] = ["finalized-one"]  # one held back by a finalizer
            return 200, {}, b"{}"
        items = [{"metadata": {"name": n}} for n in self.held.get(resource, [])]
        return 200, {}, orjson.dumps({"items": items})


def apiservice(name: str, group: str, version: str) -> dict:
    return {"metadata": {"name": name}, "spec": {"group": group, "version": version,
                                                 "service": {"namespace": "wardle", "name": "api"}}}


async def test_deletes_what_it_can_and_reports_what_is_left_and_who_could_not_be_asked() -> None:
    proxy = FakeProxy({"flunders": ["a", "b"], "notes": ["n1"], "reports": ["r1"]})
    targets = {"v1alpha1.wardle.example.com": SimpleNamespace(available=True),
               "v1.down.example.com": SimpleNamespace(available=False)}
    local = {"metadata": {"name": "v1."}, "spec": {"version": "v1"}}
    out = await delete_remote_content("doomed", [local, apiservice("v1alpha1.wardle.example.com",
                                                                   "wardle.example.com", "v1alpha1"),
                                                 apiservice("v1.down.example.com", "down.example.com", "v1")],
                                      targets.get, proxy)
    assert out.remaining == {"flunders.wardle.example.com": 1}
    assert out.failed == ["down.example.com/v1"]
    assert ("DELETE", "/apis/wardle.example.com/v1alpha1/namespaces/doomed/flunders") in proxy.calls
    assert ("DELETE", "/apis/wardle.example.com/v1alpha1/namespaces/doomed/notes/n1") in proxy.calls
    assert not [c for c in proxy.calls if "reports" in c[1] or "fischers" in c[1]]
