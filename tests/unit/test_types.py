"""Defaulting, validation, printing and conversion of the built-in types."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from kplane.apimachinery.errors import StatusError
from kplane.apimachinery.table import build_table
from kplane.apiserver.resource import ResourceDef
from kplane.controlplane.types import builtin_resources, events, secrets, services


def rdef(kind: str, group: str = "") -> ResourceDef:
    return next(d for d in builtin_resources() if d.kind == kind and d.group == group)


def fields(causes: list) -> list[str]:
    return [c.field for c in causes]


def cells(kind: str, obj: dict, group: str = "") -> dict:
    d = rdef(kind, group)
    row = build_table(d.columns, [obj])["rows"][0]["cells"]
    return {c.name: v for c, v in zip(d.columns, row, strict=True)}


def svc(**spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
            "spec": spec}


# ---- builtin_resources ------------------------------------------------------------------------

def test_builtin_resources_names_and_schemas() -> None:
    defs = builtin_resources()
    by_key = {(d.group, d.plural) for d in defs}
    assert {("", "namespaces"), ("", "configmaps"), ("", "secrets"), ("", "services"), ("", "endpoints"),
            ("", "serviceaccounts"), ("", "events"), ("events.k8s.io", "events"),
            ("discovery.k8s.io", "endpointslices"), ("coordination.k8s.io", "leases")} <= by_key
    for d in defs:
        assert d.schema["type"] == "object" and "metadata" in d.schema["properties"], d.kind
        assert d.openapi_name.endswith("." + d.kind)
        assert d.columns[0].name in ("Name", "Last Seen")
    ns = rdef("Namespace")
    assert not ns.namespaced and ns.name_validation == "label" and "finalize" in ns.subresources
    assert rdef("Service").name_validation == "dns1035"
    ev2 = rdef("Event", "events.k8s.io")
    assert ev2.storage_resource == "events" and ev2.key("default", "x") == rdef("Event").key("default", "x")


def test_schema_extensions_match_upstream() -> None:
    spec = rdef("Service").schema["properties"]["spec"]["properties"]
    ports = spec["ports"]
    assert ports["x-kubernetes-patch-merge-key"] == "port"
    assert ports["x-kubernetes-patch-strategy"] == "merge"
    assert ports["x-kubernetes-list-type"] == "map"
    assert ports["x-kubernetes-list-map-keys"] == ["port", "protocol"]
    port = ports["items"]["properties"]
    assert port["targetPort"] == {**port["targetPort"], "x-kubernetes-int-or-string": True}
    assert port["port"]["format"] == "int32"
    assert spec["selector"]["x-kubernetes-map-type"] == "atomic"
    meta = rdef("ConfigMap").schema["properties"]["metadata"]["properties"]
    assert meta["ownerReferences"]["x-kubernetes-patch-merge-key"] == "uid"
    assert meta["finalizers"]["x-kubernetes-patch-strategy"] == "merge"
    assert meta["creationTimestamp"]["format"] == "date-time"
    assert rdef("Secret").schema["properties"]["data"]["additionalProperties"]["format"] == "byte"
    subsets = rdef("Endpoints").schema["properties"]["subsets"]
    assert subsets["x-kubernetes-list-type"] == "atomic"
    assert subsets["items"]["properties"]["addresses"]["items"]["x-kubernetes-map-type"] == "atomic"
    sa_secrets = rdef("ServiceAccount").schema["properties"]["secrets"]
    assert sa_secrets["x-kubernetes-list-map-keys"] == ["name"]


# ---- services ---------------------------------------------------------------------------------

def test_service_defaults() -> None:
    obj = svc(ports=[{"port": 80}], selector={"app": "web"})
    rdef("Service").prepare_create(obj)
    spec = obj["spec"]
    assert spec["type"] == "ClusterIP" and spec["sessionAffinity"] == "None"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert spec["ipFamilyPolicy"] == "SingleStack" and spec["ipFamilies"] == ["IPv4"]
    assert "externalTrafficPolicy" not in spec
    lb = svc(type="LoadBalancer", ports=[{"port": 80, "targetPort": "http"}])
    services.prepare_create(lb)
    assert lb["spec"]["externalTrafficPolicy"] == "Cluster"
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert lb["spec"]["ports"][0]["targetPort"] == "http"


def test_service_two_unnamed_ports() -> None:
    obj = svc(ports=[{"port": 80}, {"port": 443}])
    services.prepare_create(obj)
    causes = services.validate(obj)
    assert fields(causes) == ["spec.ports[0].name", "spec.ports[1].name"]
    assert all(c.type == "FieldValueRequired" and c.message == "Required value" for c in causes)


def test_service_port_checks() -> None:
    obj = svc(ports=[{"name": "a", "port": 0, "protocol": "HTTP", "targetPort": "Bad_Name"},
                     {"name": "a", "port": 80, "protocol": "TCP", "targetPort": 8080}],
              type="Bogus", sessionAffinity="None")
    causes = {c.field: c for c in services.validate(obj)}
    assert causes["spec.ports[0].port"].message == "Invalid value: 0: must be between 1 and 65535, inclusive"
    assert causes["spec.ports[0].protocol"].message == (
        'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"')
    assert causes["spec.ports[0].targetPort"].type == "FieldValueInvalid"
    assert causes["spec.ports[1].name"].message == 'Duplicate value: "a"'
    assert causes["spec.type"].message == (
        'Unsupported value: "Bogus": supported values: '
        '"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"')


def test_service_duplicate_port_reports_go_struct() -> None:
    obj = svc(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}])
    services.prepare_create(obj)
    dup = [c for c in services.validate(obj) if c.type == "FieldValueDuplicate"]
    assert fields(dup) == ["spec.ports[1]"]
    assert dup[0].message.startswith('Duplicate value: core.ServicePort{Name:"", Protocol:"TCP"')


def test_service_cluster_ip_immutable() -> None:
    old = svc(ports=[{"port": 80}], clusterIP="10.96.0.10")
    services.prepare_create(old)
    assert old["spec"]["clusterIPs"] == ["10.96.0.10"]
    new = svc(ports=[{"port": 80}], clusterIP="10.96.0.11")
    services.prepare_update(new, old)
    causes = services.validate_update(new, old)
    assert [(c.field, c.message) for c in causes] == [
        ("spec.clusterIPs[0]", 'Invalid value: []string{"10.96.0.11"}: may not change once set')]
    # An update that omits the allocated address keeps it (kubectl apply / replace).
    kept = svc(ports=[{"port": 80}])
    services.prepare_update(kept, old)
    assert kept["spec"]["clusterIP"] == "10.96.0.10" and services.validate_update(kept, old) == []


def test_service_external_name() -> None:
    obj = svc(type="ExternalName", externalName="example.com.")
    services.prepare_create(obj)
    assert "ipFamilies" not in obj["spec"] and services.validate(obj) == []
    bad = svc(type="ExternalName")
    services.prepare_create(bad)
    assert fields(services.validate(bad)) == ["spec.externalName"]


def test_service_columns_and_selectors() -> None:
    obj = svc(type="NodePort", clusterIPs=["10.0.0.1"], selector={"b": "2", "a": "1"},
              ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}])
    row = cells("Service", obj)
    assert row["Type"] == "NodePort" and row["Cluster-IP"] == "10.0.0.1" and row["External-IP"] == "<none>"
    assert row["Port(s)"] == "80:30080/TCP,53/UDP" and row["Selector"] == "a=1,b=2"
    assert row["Age"] == "<unknown>"
    lb = svc(type="LoadBalancer", ports=[])
    lb["status"] = {"loadBalancer": {"ingress": [{"hostname": "lb.example"}, {"ip": "1.2.3.4"}]}}
    assert cells("Service", lb)["External-IP"] == "1.2.3.4,lb.example"
    assert cells("Service", svc(type="LoadBalancer"))["External-IP"] == "<pending>"
    assert [c.priority for c in rdef("Service").columns][-1] == 1
    assert rdef("Service").field_selectors["spec.type"](obj) == "NodePort"


# ---- configmaps and secrets -------------------------------------------------------------------

def test_configmap_keys() -> None:
    cm = rdef("ConfigMap")
    causes = cm.validate_create({"data": {"bad key": "x", "ok": "y"}, "binaryData": {"ok": "eQ=="}})
    assert fields(causes) == ["data[bad key]", "data[ok]", "binaryData[ok]"]
    assert causes[0].message == (
        "Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or "
        "'.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', "
        "regex used for validation is '[-._a-zA-Z0-9]+')")
    assert cm.validate_create({"data": {"..x": "1"}})[0].message.endswith("must not start with '..'")


def test_configmap_immutable_and_columns() -> None:
    cm = rdef("ConfigMap")
    old = {"immutable": True, "data": {"a": "1"}}
    assert fields(cm.validate_update({"immutable": True, "data": {"a": "2"}}, old)) == ["data"]
    assert fields(cm.validate_update({"data": {"a": "1"}}, old)) == ["immutable"]
    assert cm.validate_update({"immutable": True, "data": {"a": "1"}}, old) == []
    obj = {"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": "eQ=="}}
    assert cells("ConfigMap", obj) == {"Name": "c", "Data": 2, "Age": "<unknown>"}


def test_secret_string_data_folded_and_type_defaulted() -> None:
    obj = {"metadata": {"name": "s"}, "data": {"a": base64.b64encode(b"old").decode()},
           "stringData": {"a": "new", "b": "two"}}
    rdef("Secret").prepare_create(obj)
    assert "stringData" not in obj and obj["type"] == "Opaque"
    assert {k: base64.b64decode(v) for k, v in obj["data"].items()} == {"a": b"new", "b": b"two"}
    assert cells("Secret", {**obj, "metadata": {"name": "s"}})["Data"] == 2
    assert rdef("Secret").field_selectors["type"](obj) == "Opaque"


def test_secret_bad_base64_is_bad_request() -> None:
    with pytest.raises(StatusError) as e:
        secrets.prepare({"data": {"a": "ab!d"}})
    assert e.value.code == 400
    assert e.value.message == ('Secret in version "v1" cannot be handled as a Secret: '
                               'illegal base64 data at input byte 2')


def test_secret_type_rules() -> None:
    s = rdef("Secret")
    tls = s.validate_create({"type": "kubernetes.io/tls", "data": {}})
    assert fields(tls) == ["data[tls.crt]", "data[tls.key]"]
    causes = s.validate_update({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}},
                               {"type": "Opaque"})
    assert [(c.field, c.message) for c in causes] == [
        ("type", 'Invalid value: "kubernetes.io/tls": field is immutable')]
    big = {"a": base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()}
    assert [(c.field, c.type) for c in s.validate_create({"data": big})] == [("data", "FieldValueTooLong")]


# ---- namespaces, endpoints, endpointslices, leases, serviceaccounts ---------------------------

def test_namespace_create_and_update() -> None:
    ns = rdef("Namespace")
    obj = {"metadata": {"name": "team-a"}}
    ns.prepare_create(obj)
    assert obj["spec"]["finalizers"] == ["kubernetes"] and obj["status"] == {"phase": "Active"}
    assert obj["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    new = {"metadata": {"name": "team-a", "labels": {"x": "y"}}, "spec": {"finalizers": []}}
    ns.prepare_update(new, obj)
    assert new["spec"]["finalizers"] == ["kubernetes"]  # only /finalize changes them
    assert new["metadata"]["labels"]["kubernetes.io/metadata.name"] == "team-a"
    assert ns.field_selectors["status.phase"](obj) == "Active"
    assert cells("Namespace", obj)["Status"] == "Active"
    bad = ns.validate_create({"spec": {"finalizers": ["custom"]}})
    assert [c.field for c in bad] == ["spec.finalizers[0]"]


def test_endpoints() -> None:
    ep = rdef("Endpoints")
    obj = {"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.1.0.1"}, {"ip": "10.1.0.2"}],
                                                     "ports": [{"port": 80}]}]}
    ep.prepare_create(obj)
    assert obj["subsets"][0]["ports"][0]["protocol"] == "TCP"
    assert ep.validate_create(obj) == []
    assert cells("Endpoints", obj)["Endpoints"] == "10.1.0.1:80,10.1.0.2:80"
    assert cells("Endpoints", {"metadata": {"name": "x"}})["Endpoints"] == "<none>"
    many = {"subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)], "ports": [{"port": 8}]}]}
    assert cells("Endpoints", {**many, "metadata": {"name": "m"}})["Endpoints"] == (
        "10.0.0.1:8,10.0.0.2:8,10.0.0.3:8 + 2 more...")
    bad = ep.validate_create({"subsets": [{"addresses": [{"ip": "169.254.1.1"}, {"ip": "nope"}]}, {}]})
    assert fields(bad) == ["subsets[0].addresses[0].ip", "subsets[0].addresses[1].ip", "subsets[1]"]
    # kplane deviation: no kube-proxy, so extension servers on loopback are valid endpoints.
    assert ep.validate_create({"subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                                            "ports": [{"port": 8443, "protocol": "TCP"}]}]}) == []


def test_endpointslices() -> None:
    es = rdef("EndpointSlice", "discovery.k8s.io")
    obj = {"metadata": {"name": "web-abc"}, "addressType": "IPv4", "ports": [{"port": 80}],
           "endpoints": [{"addresses": ["10.1.0.1"]}, {"addresses": ["10.1.0.2"]}]}
    es.prepare_create(obj)
    assert obj["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    assert es.validate_create(obj) == []
    row = cells("EndpointSlice", obj, "discovery.k8s.io")
    assert (row["AddressType"], row["Ports"], row["Endpoints"]) == ("IPv4", "80", "10.1.0.1,10.1.0.2")
    assert cells("EndpointSlice", {"metadata": {"name": "e"}}, "discovery.k8s.io")["Ports"] == "<unset>"
    bad = es.validate_create({"addressType": "IPv4", "endpoints": [{"addresses": ["::1"]}]})
    assert [c.message for c in bad] == ['Invalid value: "::1": must be a valid IPv4 address']
    assert fields(es.validate_update({**obj, "addressType": "IPv6"}, obj))[0] == "addressType"


def test_lease() -> None:
    lease = rdef("Lease", "coordination.k8s.io")
    assert lease.validate_create({"spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}) == []
    bad = lease.validate_create({"spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1,
                                          "preferredHolder": "b"}})
    assert fields(bad) == ["spec.leaseDurationSeconds", "spec.leaseTransitions", "spec.preferredHolder"]
    assert cells("Lease", {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}},
                 "coordination.k8s.io")["Holder"] == "me"


def test_serviceaccount_columns() -> None:
    sa = {"metadata": {"name": "default"}, "secrets": [{"name": "t"}]}
    assert cells("ServiceAccount", sa)["Secrets"] == 1


# ---- events -----------------------------------------------------------------------------------

CORE_EVENT = {
    "apiVersion": "v1", "kind": "Event",
    "metadata": {"name": "web.1", "namespace": "default"},
    "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default",
                       "fieldPath": "spec.containers{a}"},
    "reason": "Started", "message": " Started container a ", "type": "Normal",
    "source": {"component": "kubelet", "host": "node-1"}, "count": 3,
    "firstTimestamp": "2024-05-01T11:00:00Z", "lastTimestamp": "2024-05-01T11:58:00Z",
}


def test_event_conversion_round_trip() -> None:
    v1 = events.from_core(CORE_EVENT)
    assert v1["apiVersion"] == "events.k8s.io/v1"
    assert v1["regarding"] == CORE_EVENT["involvedObject"] and v1["note"] == CORE_EVENT["message"]
    assert v1["deprecatedSource"] == CORE_EVENT["source"] and v1["deprecatedCount"] == 3
    assert v1["deprecatedFirstTimestamp"] == "2024-05-01T11:00:00Z" and v1["eventTime"] is None
    assert "message" not in v1 and "involvedObject" not in v1
    back = events.to_core(v1)
    assert back == CORE_EVENT


def test_event_columns_and_field_selectors() -> None:
    core = rdef("Event")
    row = cells("Event", CORE_EVENT)
    assert row["Type"] == "Normal" and row["Reason"] == "Started" and row["Object"] == "pod/web"
    assert row["Subobject"] == "spec.containers{a}" and row["Source"] == "kubelet, node-1"
    assert row["Message"] == "Started container a" and row["Count"] == 3 and row["Name"] == "web.1"
    assert [c.name for c in core.columns][:4] == ["Last Seen", "Type", "Reason", "Object"]
    assert cells("Event", events.from_core(CORE_EVENT), "events.k8s.io")["Object"] == "pod/web"
    assert core.field_selectors["involvedObject.name"](CORE_EVENT) == "web"
    assert core.field_selectors["source"](CORE_EVENT) == "kubelet"
    ev2 = rdef("Event", "events.k8s.io")
    assert ev2.field_selectors["regarding.kind"](events.from_core(CORE_EVENT)) == "Pod"


def test_event_validation() -> None:
    assert rdef("Event").validate_create(CORE_EVENT) == []
    wrong_ns = {**CORE_EVENT, "involvedObject": {"kind": "Pod", "name": "w", "namespace": "other"}}
    assert fields(rdef("Event").validate_create(wrong_ns)) == ["involvedObject.namespace"]
    new_api = {"metadata": {"name": "e", "namespace": "default"},
               "eventTime": datetime(2024, 5, 1, tzinfo=UTC).isoformat().replace("+00:00", ".000000Z"),
               "regarding": {"kind": "Pod", "name": "w", "namespace": "default"}, "type": "Normal",
               "reason": "R", "action": "A", "reportingController": "example.com/ctl",
               "reportingInstance": "ctl-1"}
    ev2 = rdef("Event", "events.k8s.io")
    assert ev2.validate_create(new_api) == []
    causes = ev2.validate_create({**new_api, "type": "Odd", "reportingController": "",
                                  "deprecatedCount": 2, "series": {"count": 1}})
    # Upstream reports an empty reportingController both as required and as an invalid qualified name.
    assert list(dict.fromkeys(fields(causes))) == ["reportingController", "series.count",
                                                   "series.lastObservedTime", "type", "deprecatedCount"]
    assert causes[0].type == "FieldValueRequired"
    assert fields(ev2.validate_update({**new_api, "note": "changed"}, new_api)) == ["message"]
