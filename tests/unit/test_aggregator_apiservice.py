"""APIService validation, defaults, Table cells and discovery ordering (upstream kube-aggregator)."""

from __future__ import annotations

import base64

from kplane.aggregator import apiservice as apis
from kplane.aggregator.autoregister import PRIORITIES, local_apiservice


def svc(name="v1alpha1.wardle.example.com", group="wardle.example.com", version="v1alpha1", gpm=1000, vp=15,
        service=None, **spec):
    s = {"group": group, "version": version, "groupPriorityMinimum": gpm, "versionPriority": vp, **spec}
    if service is not None:
        s["service"] = service
    return {"metadata": {"name": name}, "spec": s}


def messages(obj):
    return [(c.field, c.message) for c in apis.validate(obj)]


def test_valid_remote_and_local():
    assert messages(svc(service={"namespace": "wardle", "name": "api", "port": 443})) == []
    assert messages(svc()) == []


def test_name_must_be_version_dot_group():
    got = messages(svc(name="v1.wrong"))
    assert got == [("metadata.name", ('Invalid value: "v1.wrong": must be `spec.version+"."+spec.group`: '
                                     '"v1alpha1.wardle.example.com"'))]


def test_priorities_in_range():
    got = dict(messages(svc(gpm=0, vp=1001)))
    assert got["spec.groupPriorityMinimum"] == "Invalid value: 0: must be positive and less than 20000"
    assert got["spec.versionPriority"] == "Invalid value: 1001: must be positive and less than 1000"
    assert messages(svc(gpm=20000, vp=1000)) == []


def test_ca_bundle_and_insecure_are_exclusive():
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n").decode()
    got = messages(svc(service={"namespace": "w", "name": "api"}, caBundle=ca, insecureSkipTLSVerify=True))
    assert got == [("spec.insecureSkipTLSVerify", "Invalid value: true: may not be true if caBundle is present")]


def test_local_may_not_have_ca_or_insecure():
    ca = base64.b64encode(b"0123456789").decode()
    got = messages(svc(caBundle=ca, insecureSkipTLSVerify=True))
    assert got == [("spec.caBundle", 'Invalid value: "10 bytes": local APIServices may not have a caBundle'),
                   ("spec.insecureSkipTLSVerify",
                    "Invalid value: true: local APIServices may not have insecureSkipTLSVerify")]


def test_empty_group_only_for_v1_and_service_fields_required():
    got = dict(messages(svc(name="v2.", group="", version="v2")))
    assert got["spec.group"] == "Required value: only v1 may have an empty group and it better be legacy kube"
    got = dict(messages(svc(service={})))
    assert got["spec.service.namespace"] == "Required value"
    assert got["spec.service.name"] == "Required value"


def test_port_defaults_to_443():
    obj = svc(service={"namespace": "w", "name": "api"})
    apis.prepare_create(obj)
    assert obj["spec"]["service"]["port"] == 443


def test_table_cells():
    cols = {c.name: c for c in apis.COLUMNS}
    assert [c.name for c in apis.COLUMNS] == ["Name", "Service", "Available", "Age"]
    remote = svc(service={"namespace": "wardle", "name": "api"})
    assert cols["Service"].value(remote) == "wardle/api"
    assert cols["Service"].value(svc()) == "Local"
    assert cols["Available"].value(remote) == "Unknown"
    remote["status"] = {"conditions": [apis.condition("False", "MissingEndpoints", "m", "t")]}
    assert cols["Available"].value(remote) == "False (MissingEndpoints)"
    remote["status"] = {"conditions": [apis.condition("True", "Passed", "all checks passed", "t")]}
    assert cols["Available"].value(remote) == "True"


def test_set_condition_moves_transition_time_only_on_status_change():
    obj = svc()
    apis.set_condition(obj, apis.condition("False", "A", "a", "t1"))
    apis.set_condition(obj, apis.condition("False", "B", "b", "t2"))
    c = apis.get_condition(obj)
    assert (c["reason"], c["message"], c["lastTransitionTime"]) == ("B", "b", "t1")
    apis.set_condition(obj, apis.condition("True", "Passed", "all checks passed", "t3"))
    assert apis.get_condition(obj)["lastTransitionTime"] == "t3"


def test_sorted_by_group_and_version():
    items = [
        svc("v1.foo", "foo", "v1", gpm=100, vp=10),
        svc("v1.bar", "bar", "v1", gpm=100, vp=10),
        svc("v2beta1.foo", "foo", "v2beta1", gpm=100, vp=10),
        svc("v1alpha1.foo", "foo", "v1alpha1", gpm=300, vp=1),
        svc("v1.top", "top", "v1", gpm=200, vp=5),
        svc("v3.bar", "bar", "v3", gpm=50, vp=20),
    ]
    groups = apis.sorted_by_group_and_version(items)
    # foo has the highest groupPriorityMinimum (300, on v1alpha1) so it comes first; in a group,
    # versionPriority wins over the version string, then kube-aware order (v1 before v2beta1).
    assert [[m["metadata"]["name"] for m in g] for g in groups] == [
        ["v1.foo", "v2beta1.foo", "v1alpha1.foo"], ["v1.top"], ["v3.bar", "v1.bar"]]


def test_builtin_ordering_matches_a_real_cluster():
    items = [local_apiservice(g, v, p) for (g, v), p in PRIORITIES.items()
             if (g, v) in {("apps", "v1"), ("", "v1"), ("events.k8s.io", "v1"), ("autoscaling", "v2"),
                           ("autoscaling", "v1"), ("apiextensions.k8s.io", "v1"),
                           ("admissionregistration.k8s.io", "v1")}]
    groups = [(apis.spec(g[0])["group"], [apis.spec(m)["version"] for m in g])
              for g in apis.sorted_by_group_and_version(items)]
    assert groups == [("", ["v1"]), ("apps", ["v1"]), ("events.k8s.io", ["v1"]), ("autoscaling", ["v2", "v1"]),
                      ("admissionregistration.k8s.io", ["v1"]), ("apiextensions.k8s.io", ["v1"])]
