"""Decoding Kubernetes protobuf request bodies (application/vnd.kubernetes.protobuf)."""

from __future__ import annotations

import base64

import pytest

from kplane.apimachinery.errors import StatusError
from kplane.apimachinery.protobuf import MESSAGES, decode_k8s_protobuf, decode_message
from kplane.apiserver import negotiation

# ---- bodies captured from kubectl v1.37.1 (hex) --------------------------------------

KUBECTL = {
    # kubectl create configmap x --from-literal=a=1
    "configmap": "6b3873000a0f0a0276311209436f6e6669674d6170121b0a110a017812001a0022002a0032003800420012060a01611201"
                 "311a002200",
    # kubectl create secret generic s --from-literal=k=v --from-literal=empty=
    "secret": "6b3873000a0c0a027631120653656372657412280a110a017312001a0022002a0032003800420012090a05656d70747912"
              "0012060a016b1201761a001a002200",
    # kubectl create service clusterip web --tcp=80:8080
    "service": "6b3873000a0d0a02763112075365727669636512690a1f0a0377656212001a0022002a003200380042005a0a0a0361707012"
               "0377656212420a1b0a0738302d38303830120354435018502207080010903f1a002800120a0a0361707012037765621a0022"
               "09436c757374657249503a00420052005a00600068001a020a001a002200",
    # kubectl create service nodeport np --tcp=81:http --node-port=30080
    "service-nodeport": "6b3873000a0d0a027631120753657276696365126a0a1d0a026e7012001a0022002a003200380042005a090a036170"
                        "7012026e7012450a200a0738312d6874747012035443501851220a080110001a04687474702880eb0112090a036170"
                        "7012026e701a0022084e6f6465506f72743a00420052005a00600068001a020a001a002200",
    # kubectl create namespace demo
    "namespace": "6b3873000a0f0a02763112094e616d657370616365121c0a140a0464656d6f12001a0022002a0032003800420012001a02"
                 "0a001a002200",
    # kubectl create serviceaccount sa1
    "serviceaccount": "6b3873000a140a027631120e536572766963654163636f756e7412150a130a0373613112001a0022002a0032003800"
                      "42001a002200",
    # kubectl create rolebinding rb1 --role=r1 --user=alice --group=devs --serviceaccount=default:sa1
    "rolebinding": "6b3873000a2b0a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f7631120b526f6c6542696e64696e67"
                   "12b6010a130a0372623112001a0022002a00320038004200122a0a04557365721219726261632e617574686f72697a6174"
                   "696f6e2e6b38732e696f1a05616c6963652200122a0a0547726f75701219726261632e617574686f72697a6174696f6e2e"
                   "6b38732e696f1a0464657673220012200a0e536572766963654163636f756e7412001a03736131220764656661756c741a"
                   "250a19726261632e617574686f72697a6174696f6e2e6b38732e696f1204526f6c651a0272311a002200",
    # kubectl create clusterrolebinding crb1 --clusterrole=cr2 --user=bob
    "clusterrolebinding": "6b3873000a320a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f76311212436c757374657252"
                          "6f6c6542696e64696e67126f0a140a046372623112001a0022002a0032003800420012280a0455736572121972"
                          "6261632e617574686f72697a6174696f6e2e6b38732e696f1a03626f6222001a2d0a19726261632e617574686f"
                          "72697a6174696f6e2e6b38732e696f120b436c7573746572526f6c651a036372321a002200",
    # kubectl create role r1 --verb=get,list --resource=configmaps,secrets --resource-name=a
    "role": "6b3873000a240a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f76311204526f6c65123b0a120a027231120"
            "01a0022002a0032003800420012250a036765740a046c69737412001a0a636f6e6669676d6170731a07736563726574732201611a"
            "002200",
    # kubectl create clusterrole cr1 --aggregation-rule=foo=bar,x=y
    "clusterrole-aggregated": "6b3873000a2b0a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f7631120b436c757374"
                              "6572526f6c65122d0a130a0363723112001a0022002a003200380042001a160a140a0a0a03666f6f120362"
                              "61720a060a01781201791a002200",
    # kubectl create clusterrole cr2 --verb=get --non-resource-url=/healthz --verb=post --resource=namespaces
    "clusterrole": "6b3873000a2b0a1c726261632e617574686f72697a6174696f6e2e6b38732e696f2f7631120b436c7573746572526f6c65"
                   "12470a130a0363723212001a0022002a0032003800420012190a036765740a04706f737412001a0a6e616d65737061636573"
                   "12150a036765740a04706f73742a082f6865616c74687a1a002200",
    # kubectl create token sa1 --audience=a1 --audience=a2 --duration=1h
    "token": "6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e5265717565737412250a100a00"
             "12001a0022002a00320038004200120b0a0261310a02613220901c1a040a0012001a002200",
    # kubectl create token sa1 --bound-object-kind=Secret --bound-object-name=s --bound-object-uid=abc
    "token-bound": "6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e52657175657374123"
                   "00a100a0012001a0022002a0032003800420012161a140a06536563726574120276311a017322036162631a040a0012001a"
                   "002200",
    # kubectl auth can-i get pods -n kube-system
    "ssar": "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a6563744163636573735265"
            "7669657712400a100a0012001a0022002a0032003800420012220a200a0b6b7562652d73797374656d12036765741a0022002a04"
            "706f647332003a001a08080012001a0020001a002200",
    # kubectl auth can-i get /healthz
    "ssar-nonresource": "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a656374416363"
                        "657373526576696577122f0a100a0012001a0022002a003200380042001211120f0a082f6865616c74687a12036765"
                        "741a08080012001a0020001a002200",
    # kubectl auth can-i --list -n default
    "ssrr": "6b3873000a310a17617574686f72697a6174696f6e2e6b38732e696f2f7631121653656c665375626a65637452756c6573526576"
            "69657712230a100a0012001a0022002a0032003800420012090a0764656661756c741a04180022001a002200",
    # kubectl auth whoami
    "ssr": "6b3873000a2d0a1861757468656e7469636174696f6e2e6b38732e696f2f7631121153656c665375626a656374526576696577121a"
           "0a100a0012001a0022002a0032003800420012060a040a0012001a002200",
    # kubectl create quota q1 --hard=pods=10,requests.cpu=1 --scopes=BestEffort
    "quota": "6b3873000a130a027631120d5265736f7572636551756f746112470a120a02713112001a0022002a00320038004200122f0a0c0a"
             "04706f647312040a0231300a130a0c72657175657374732e63707512030a0131120a426573744566666f72741a001a002200",
    # kubectl create deployment d1 --image=nginx (apps/v1: no descriptor)
    "deployment": "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412a7010a1d0a02643112001a0022002a0032003800420"
                  "05a090a036170701202643112780801120b0a090a03617070120264311a5f0a1b0a0012001a0022002a00320038004200"
                  "5a090a0361707012026431124012220a056e67696e7812056e67696e782a0042006a007200800100880100900100a20100"
                  "1a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c08001000180020002800"
                  "38001a002200",
}

RBAC = "rbac.authorization.k8s.io"
RBAC_V1 = RBAC + "/v1"

EXPECTED = {
    "configmap": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}},
    "secret": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
               "data": {"empty": "", "k": "dg=="}},
    "service": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                         "selector": {"app": "web"}, "type": "ClusterIP"},
                "status": {"loadBalancer": {}}},
    "service-nodeport": {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "np", "labels": {"app": "np"}},
        "spec": {"ports": [{"name": "81-http", "protocol": "TCP", "port": 81, "targetPort": "http",
                            "nodePort": 30080}],
                 "selector": {"app": "np"}, "type": "NodePort"},
        "status": {"loadBalancer": {}}},
    "namespace": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}, "spec": {},
                  "status": {}},
    "serviceaccount": {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa1"}},
    "rolebinding": {
        "apiVersion": RBAC_V1, "kind": "RoleBinding", "metadata": {"name": "rb1"},
        "subjects": [{"kind": "User", "apiGroup": RBAC, "name": "alice"},
                     {"kind": "Group", "apiGroup": RBAC, "name": "devs"},
                     {"kind": "ServiceAccount", "name": "sa1", "namespace": "default"}],
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "r1"}},
    "clusterrolebinding": {
        "apiVersion": RBAC_V1, "kind": "ClusterRoleBinding", "metadata": {"name": "crb1"},
        "subjects": [{"kind": "User", "apiGroup": RBAC, "name": "bob"}],
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "cr2"}},
    "role": {"apiVersion": RBAC_V1, "kind": "Role", "metadata": {"name": "r1"},
             "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps", "secrets"],
                        "resourceNames": ["a"]}]},
    "clusterrole-aggregated": {
        "apiVersion": RBAC_V1, "kind": "ClusterRole", "metadata": {"name": "cr1"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"foo": "bar", "x": "y"}}]}},
    "clusterrole": {
        "apiVersion": RBAC_V1, "kind": "ClusterRole", "metadata": {"name": "cr2"},
        "rules": [{"verbs": ["get", "post"], "apiGroups": [""], "resources": ["namespaces"]},
                  {"verbs": ["get", "post"], "nonResourceURLs": ["/healthz"]}]},
    "token": {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {},
              "spec": {"audiences": ["a1", "a2"], "expirationSeconds": 3600}, "status": {}},
    "token-bound": {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {},
                    "spec": {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s", "uid": "abc"}},
                    "status": {}},
    "ssar": {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {},
             "spec": {"resourceAttributes": {"namespace": "kube-system", "verb": "get", "resource": "pods"}},
             "status": {}},
    "ssar-nonresource": {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                         "metadata": {}, "spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}},
                         "status": {}},
    "ssrr": {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "metadata": {},
             "spec": {"namespace": "default"}, "status": {}},
    "ssr": {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {},
            "status": {"userInfo": {}}},
    "quota": {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q1"},
              "spec": {"hard": {"pods": "10", "requests.cpu": "1"}, "scopes": ["BestEffort"]}, "status": {}},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_kubectl_bodies(name: str) -> None:
    assert decode_k8s_protobuf(bytes.fromhex(KUBECTL[name])) == EXPECTED[name]


def test_kind_without_descriptor_is_415() -> None:
    with pytest.raises(StatusError) as e:
        decode_k8s_protobuf(bytes.fromhex(KUBECTL["deployment"]))
    assert e.value.code == 415 and e.value.reason == "UnsupportedMediaType"
    assert e.value.message.startswith("the body of the request was in an unknown format - accepted media "
                                      "types include: application/json, application/yaml")
    assert "Deployment in apps/v1" in e.value.message


def test_negotiation_routes_protobuf() -> None:
    body = bytes.fromhex(KUBECTL["configmap"])
    assert negotiation.decode_body(body, "application/vnd.kubernetes.protobuf") == EXPECTED["configmap"]
    assert negotiation.decode_body(body, "Application/Vnd.Kubernetes.Protobuf; charset=x") == \
        EXPECTED["configmap"]


# ---- a tiny encoder for synthetic messages -------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def v(num: int, n: int) -> bytes:  # varint field
    return varint(num << 3) + varint(n)


def s(num: int, data: str | bytes) -> bytes:  # length-delimited field
    raw = data.encode() if isinstance(data, str) else data
    return varint(num << 3 | 2) + varint(len(raw)) + raw


def entry(num: int, key: str, value: str | bytes) -> bytes:
    return s(num, s(1, key) + s(2, value))


def envelope(api_version: str, kind: str, raw: bytes, encoding: str = "", ctype: str = "") -> bytes:
    return b"k8s\x00" + s(1, s(1, api_version) + s(2, kind)) + s(2, raw) + s(3, encoding) + s(4, ctype)


def ts(seconds: int, nanos: int = 0) -> bytes:
    return v(1, seconds) + (v(2, nanos) if nanos else b"")


# 2024-05-06T07:08:09Z
T = 1714979289


def test_object_meta_all_fields() -> None:
    owner = s(1, "Deployment") + s(3, "web") + s(4, "u-1") + s(5, "apps/v1") + v(6, 1) + v(7, 0)
    fields = b'{"f:data":{".":{},"f:a":{}}}'
    managed = (s(1, "kubectl") + s(2, "Update") + s(3, "v1") + s(4, ts(T)) + s(6, "FieldsV1")
               + s(7, s(1, fields)) + s(8, ""))
    meta = (s(1, "x") + s(2, "x-") + s(3, "ns") + s(4, "") + s(5, "uid-1") + s(6, "42") + v(7, 3)
            + s(8, ts(T, 999_000_000)) + s(9, b"") + v(10, 0) + entry(11, "app", "web") + entry(11, "tier", "")
            + entry(12, "note", "hi") + s(13, owner) + s(14, "a/b") + s(14, "c/d") + s(17, managed))
    got = decode_k8s_protobuf(envelope("v1", "ConfigMap", s(1, meta)))
    assert got == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "x", "generateName": "x-", "namespace": "ns", "uid": "uid-1", "resourceVersion": "42",
        "generation": 3, "creationTimestamp": "2024-05-06T07:08:09Z", "deletionGracePeriodSeconds": 0,
        "labels": {"app": "web", "tier": ""}, "annotations": {"note": "hi"},
        "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "u-1", "apiVersion": "apps/v1",
                             "controller": True, "blockOwnerDeletion": False}],
        "finalizers": ["a/b", "c/d"],
        "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                           "time": "2024-05-06T07:08:09Z", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:data": {".": {}, "f:a": {}}}}]}}


def test_pointer_fields_keep_zero_values() -> None:
    cm = decode_k8s_protobuf(envelope("v1", "ConfigMap", s(1, b"") + v(4, 0) + entry(3, "bin", b"\x00\xff")))
    assert cm == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}, "immutable": False,
                  "binaryData": {"bin": "AP8="}}
    secret = decode_k8s_protobuf(envelope("v1", "Secret", s(3, "Opaque") + v(5, 1) + entry(4, "k", "v")
                                          + entry(2, "b", b"\x01\x02")))
    assert secret == {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "immutable": True,
                      "stringData": {"k": "v"}, "data": {"b": base64.b64encode(b"\x01\x02").decode()}}


def test_service_spec_fields() -> None:
    port = s(1, "https") + s(2, "TCP") + v(3, 443) + s(4, v(1, 1) + v(2, 0) + s(3, "web")) + v(5, 0) \
        + s(6, "kubernetes.io/h2c")
    spec = (s(1, port) + s(3, "None") + s(18, "None") + s(4, "LoadBalancer") + s(5, "1.2.3.4")
            + s(7, "ClientIP") + s(9, "10.0.0.0/8") + s(11, "Local") + v(12, 32000) + v(13, 1)
            + s(14, s(1, v(1, 600))) + s(17, "SingleStack") + s(19, "IPv4") + v(20, 0) + s(21, "lb.io/x")
            + s(22, "Cluster") + s(23, "PreferClose"))
    status = s(1, s(1, s(1, "5.6.7.8") + s(3, "VIP") + s(4, v(1, 443) + s(2, "TCP") + s(3, "Err"))))
    status += s(2, s(1, "Ready") + s(2, "True") + v(3, 2) + s(4, ts(T)) + s(5, "Ok") + s(6, ""))
    got = decode_k8s_protobuf(envelope("v1", "Service", s(2, spec) + s(3, status)))
    assert got == {"apiVersion": "v1", "kind": "Service", "spec": {
        "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": "web",
                   "appProtocol": "kubernetes.io/h2c"}],
        "clusterIP": "None", "clusterIPs": ["None"], "type": "LoadBalancer", "externalIPs": ["1.2.3.4"],
        "sessionAffinity": "ClientIP", "loadBalancerSourceRanges": ["10.0.0.0/8"],
        "externalTrafficPolicy": "Local", "healthCheckNodePort": 32000, "publishNotReadyAddresses": True,
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}, "ipFamilyPolicy": "SingleStack",
        "ipFamilies": ["IPv4"], "allocateLoadBalancerNodePorts": False, "loadBalancerClass": "lb.io/x",
        "internalTrafficPolicy": "Cluster", "trafficDistribution": "PreferClose"},
        "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8", "ipMode": "VIP",
                                                 "ports": [{"port": 443, "protocol": "TCP", "error": "Err"}]}]},
                   "conditions": [{"type": "Ready", "status": "True", "observedGeneration": 2,
                                   "lastTransitionTime": "2024-05-06T07:08:09Z", "reason": "Ok"}]}}


def test_int_or_string_zero_int_is_unset_but_empty_string_is_kept() -> None:
    got = decode_k8s_protobuf(envelope("v1", "Service", s(2, s(1, v(3, 80) + s(4, v(1, 0) + v(2, 0))))))
    assert got["spec"]["ports"] == [{"port": 80}]
    got = decode_k8s_protobuf(envelope("v1", "Service", s(2, s(1, v(3, 80) + s(4, v(1, 1) + s(3, ""))))))
    assert got["spec"]["ports"] == [{"port": 80, "targetPort": ""}]


def test_endpoints_and_namespace_status() -> None:
    addr = s(1, "10.0.0.1") + s(2, s(1, "Pod") + s(2, "ns") + s(3, "p") + s(4, "u") + s(5, "v1")
                                + s(6, "7") + s(7, "spec")) + s(3, "h") + s(4, "node-1")
    ports = s(1, "http") + v(2, 8080) + s(3, "TCP") + s(4, "http")
    got = decode_k8s_protobuf(envelope("v1", "Endpoints", s(2, s(1, addr) + s(2, s(1, "10.0.0.2")) + s(3, ports))))
    assert got["subsets"] == [{
        "addresses": [{"ip": "10.0.0.1", "targetRef": {"kind": "Pod", "namespace": "ns", "name": "p", "uid": "u",
                                                       "apiVersion": "v1", "resourceVersion": "7",
                                                       "fieldPath": "spec"},
                       "hostname": "h", "nodeName": "node-1"}],
        "notReadyAddresses": [{"ip": "10.0.0.2"}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]}]
    cond = s(1, "NamespaceDeletionContentFailure") + s(2, "False") + s(4, ts(T)) + s(5, "R") + s(6, "M")
    ns = decode_k8s_protobuf(envelope("v1", "Namespace", s(2, s(1, "kubernetes"))
                                      + s(3, s(1, "Terminating") + s(2, cond))))
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    assert ns["status"] == {"phase": "Terminating", "conditions": [{
        "type": "NamespaceDeletionContentFailure", "status": "False",
        "lastTransitionTime": "2024-05-06T07:08:09Z", "reason": "R", "message": "M"}]}


def test_service_account_references() -> None:
    got = decode_k8s_protobuf(envelope("v1", "ServiceAccount", s(2, s(3, "tok")) + s(3, s(1, "pull")) + v(4, 0)))
    assert got == {"apiVersion": "v1", "kind": "ServiceAccount", "secrets": [{"name": "tok"}],
                   "imagePullSecrets": [{"name": "pull"}], "automountServiceAccountToken": False}


def test_event_with_microtime_and_series() -> None:
    raw = (s(2, s(1, "Pod") + s(3, "p")) + s(3, "Started") + s(4, "msg") + s(5, s(1, "kubelet") + s(2, "n1"))
           + s(6, ts(T)) + s(7, ts(T + 60)) + v(8, 2) + s(9, "Normal") + s(10, ts(T, 123_456_789))
           + s(11, v(1, 5) + s(2, ts(T, 1_000))) + s(12, "Start") + s(13, s(1, "Node"))
           + s(14, "kubelet") + s(15, "kubelet-n1"))
    got = decode_k8s_protobuf(envelope("v1", "Event", raw))
    assert got == {"apiVersion": "v1", "kind": "Event", "involvedObject": {"kind": "Pod", "name": "p"},
                   "reason": "Started", "message": "msg", "source": {"component": "kubelet", "host": "n1"},
                   "firstTimestamp": "2024-05-06T07:08:09Z", "lastTimestamp": "2024-05-06T07:09:09Z",
                   "count": 2, "type": "Normal", "eventTime": "2024-05-06T07:08:09.123456Z",
                   "series": {"count": 5, "lastObservedTime": "2024-05-06T07:08:09.000001Z"},
                   "action": "Start", "related": {"kind": "Node"}, "reportingComponent": "kubelet",
                   "reportingInstance": "kubelet-n1"}


def test_lease() -> None:
    spec = s(1, "me") + v(2, 15) + s(3, ts(T, 500_000)) + s(4, ts(0)) + v(5, 0) + s(6, "OldestEmulationVersion") \
        + s(7, "you")
    got = decode_k8s_protobuf(envelope("coordination.k8s.io/v1", "Lease", s(1, s(1, "l")) + s(2, spec)))
    assert got == {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"},
                   "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15,
                            "acquireTime": "2024-05-06T07:08:09.000500Z", "renewTime": "1970-01-01T00:00:00.000000Z",
                            "leaseTransitions": 0, "strategy": "OldestEmulationVersion",
                            "preferredHolder": "you"}}


def test_time_range_edges() -> None:
    year1 = -62135596800  # 0001-01-01T00:00:00Z: Go's zero time, which JSON renders as null
    got = decode_message(s(9, ts(year1)) + s(8, ts(253402300799)), "ObjectMeta")
    assert got == {"creationTimestamp": "9999-12-31T23:59:59Z"}
    assert decode_message(s(9, ts(year1 + 86400 * 365)), "ObjectMeta") == \
        {"deletionTimestamp": "0002-01-01T00:00:00Z"}
    assert decode_message(s(10, ts(year1, 5000)), "Event") == {"eventTime": "0001-01-01T00:00:00.000005Z"}


def test_subject_access_reviews() -> None:
    extra = s(1, "scopes") + s(2, s(1, "a") + s(1, "b"))
    attrs = (s(1, "ns") + s(2, "list") + s(3, "apps") + s(4, "v1") + s(5, "deployments") + s(6, "scale")
             + s(7, "d") + s(8, s(1, "x=y") + s(2, s(1, "spec.nodeName") + s(2, "In") + s(3, "n1")))
             + s(9, s(2, s(1, "app") + s(2, "Exists"))))
    spec = s(1, attrs) + s(3, "alice") + s(4, "devs") + s(5, extra) + s(6, "uid-a")
    status = v(1, 1) + s(2, "RBAC") + s(3, "") + v(4, 0)
    for kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
        got = decode_k8s_protobuf(envelope("authorization.k8s.io/v1", kind, s(2, spec) + s(3, status)))
        assert got == {"apiVersion": "authorization.k8s.io/v1", "kind": kind, "spec": {
            "resourceAttributes": {"namespace": "ns", "verb": "list", "group": "apps", "version": "v1",
                                   "resource": "deployments", "subresource": "scale", "name": "d",
                                   "fieldSelector": {"rawSelector": "x=y", "requirements": [
                                       {"key": "spec.nodeName", "operator": "In", "values": ["n1"]}]},
                                   "labelSelector": {"requirements": [{"key": "app", "operator": "Exists"}]}},
            "user": "alice", "groups": ["devs"], "extra": {"scopes": ["a", "b"]}, "uid": "uid-a"},
            "status": {"allowed": True, "reason": "RBAC"}}


def test_rules_review_status() -> None:
    status = s(1, s(1, "get") + s(2, "") + s(3, "pods") + s(4, "p")) + s(2, s(1, "get") + s(2, "/api")) + v(3, 1) \
        + s(4, "e")
    got = decode_k8s_protobuf(envelope("authorization.k8s.io/v1", "SelfSubjectRulesReview", s(3, status)))
    assert got["status"] == {"resourceRules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"],
                                                "resourceNames": ["p"]}],
                             "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/api"]}],
                             "incomplete": True, "evaluationError": "e"}


def test_token_review_and_self_subject_review() -> None:
    user = s(1, "bob") + s(2, "u") + s(3, "g1") + s(4, s(1, "k") + s(2, s(1, "v")))
    got = decode_k8s_protobuf(envelope("authentication.k8s.io/v1", "TokenReview",
                                       s(2, s(1, "abc") + s(2, "api")) + s(3, v(1, 1) + s(2, user) + s(4, "api"))))
    assert got["spec"] == {"token": "abc", "audiences": ["api"]}
    assert got["status"] == {"authenticated": True, "audiences": ["api"],
                             "user": {"username": "bob", "uid": "u", "groups": ["g1"], "extra": {"k": ["v"]}}}
    got = decode_k8s_protobuf(envelope("authentication.k8s.io/v1beta1", "SelfSubjectReview", s(2, s(1, user))))
    assert got["status"]["userInfo"]["username"] == "bob"


def test_delete_options_any_group_version() -> None:
    raw = v(1, 30) + s(2, s(1, "uid-1") + s(2, "")) + v(3, 0) + s(4, "Foreground") + s(5, "All") + v(6, 1)
    for api_version in ("v1", "meta.k8s.io/v1", "apps/v1"):
        got = decode_k8s_protobuf(envelope(api_version, "DeleteOptions", raw))
        assert got == {"apiVersion": api_version, "kind": "DeleteOptions", "gracePeriodSeconds": 30,
                       "preconditions": {"uid": "uid-1", "resourceVersion": ""}, "orphanDependents": False,
                       "propagationPolicy": "Foreground", "dryRun": ["All"],
                       "ignoreStoreReadErrorWithClusterBreakingPotential": True}


# ---- wire-format details -----------------------------------------------------------------


def test_negative_numbers_and_packed_repeated() -> None:
    assert decode_message(v(2, -5), "LeaseSpec") == {"leaseDurationSeconds": -5}
    assert decode_message(v(7, -1), "ObjectMeta") == {"generation": -1}
    # a repeated varint field sent packed is accepted (none of these kinds has one; test the reader)
    MESSAGES["_Packed"] = {1: ("n", "[]int32")}
    try:
        assert decode_message(s(1, varint(1) + varint(300) + varint(-2)) + v(1, 4), "_Packed") == \
            {"n": [1, 300, -2, 4]}
    finally:
        del MESSAGES["_Packed"]


def test_unknown_fields_are_skipped() -> None:
    fixed64 = varint(99 << 3 | 1) + b"\x00" * 8
    fixed32 = varint(98 << 3 | 5) + b"\x00" * 4
    got = decode_k8s_protobuf(envelope("v1", "ConfigMap", v(97, 1) + s(96, "x") + fixed64 + fixed32
                                       + entry(2, "a", "1")) + s(9, "envelope extra"))
    assert got == {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}}


def test_repeated_message_fields_merge_and_scalars_last_wins() -> None:
    raw = s(1, s(1, "a") + entry(11, "x", "1")) + s(1, s(1, "b") + entry(11, "y", "2")) + s(3, "T1") + s(3, "")
    got = decode_k8s_protobuf(envelope("v1", "Secret", raw))
    assert got == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b", "labels": {"x": "1", "y": "2"}}}


def test_map_entry_defaults() -> None:
    got = decode_message(s(2, s(1, "only-key")) + s(2, s(2, "only-value")), "ConfigMap")
    assert got == {"data": {"only-key": "", "": "only-value"}}


def test_envelope_content_type_and_encoding() -> None:
    assert decode_k8s_protobuf(envelope("v1", "ConfigMap", b"", ctype="application/vnd.kubernetes.protobuf")) == \
        {"apiVersion": "v1", "kind": "ConfigMap"}
    for kwargs in ({"encoding": "gzip"}, {"ctype": "application/json"}):
        with pytest.raises(StatusError) as e:
            decode_k8s_protobuf(envelope("v1", "ConfigMap", b"", **kwargs))
        assert e.value.code == 415


@pytest.mark.parametrize("body, needle", [
    (b'{"kind":"ConfigMap"}', "does not appear to be a protobuf message"),
    (b"k8s", "does not appear to be a protobuf message"),
    (b"k8s\x00" + s(2, b""), "Object 'Kind' is missing"),
    (b"k8s\x00\x0a\x05\x0a\x02", "runs past the end"),
    (b"k8s\x00\x0a", "unexpected end of data in varint"),
    (b"k8s\x00" + v(1, 3), "wire type 0"),
    (b"k8s\x00\x0b", "unsupported wire type 3"),
    (b"k8s\x00\x00\x00", "illegal field number 0"),
    (b"k8s\x00" + b"\x08" + b"\xff" * 11, "varint overflow"),
    (envelope("v1", "ConfigMap", s(1, v(1, 5))), "wire type 0 cannot hold a string"),
    (envelope("v1", "ConfigMap", v(1, 5)), "message field metadata has wire type 0"),
    (envelope("v1", "ConfigMap", v(2, 5)), "map field data has wire type 0"),
    (envelope("v1", "ConfigMap", s(4, b"")), "wire type 2 cannot hold a bool"),
    (envelope("v1", "ConfigMap", s(1, s(17, s(7, s(1, b"{not json"))))), "fieldsV1 is not valid JSON"),
    (envelope("v1", "ConfigMap", s(1, s(8, v(1, 10**15)))), "out of range"),
])
def test_malformed_is_400(body: bytes, needle: str) -> None:
    with pytest.raises(StatusError) as e:
        decode_k8s_protobuf(body)
    assert e.value.code == 400 and e.value.reason == "BadRequest"
    assert needle in e.value.message


def test_descriptors_reference_only_known_messages() -> None:
    specials = {"string", "bytes", "bool", "int32", "int64", "time", "microtime", "intorstr", "quantity",
                "fieldsv1", "extra"}
    for message, fields in MESSAGES.items():
        names = [name for name, _ in fields.values()]
        assert len(names) == len(set(names)), message
        for _, typ in fields.values():
            base = typ.removeprefix("[]").removeprefix("*")
            if base.startswith("map["):
                assert base[4:-1] in {"string", "bytes", "quantity", "extra"}, (message, typ)
            else:
                assert base in specials or base in MESSAGES, (message, typ)
