"""`kubectl explain` and kubectl's client-side validation against the named definitions of the
built-in kinds' OpenAPI (ServicePort, IntOrString, ObjectMeta, OwnerReference, ... as upstream)."""

from __future__ import annotations

import json


def field_line(out: str, name: str) -> str:
    """The `name\t<type>` line of a FIELDS listing (first match)."""
    return next(line.strip() for line in out.splitlines() if line.strip().startswith(name + "\t"))


def test_explain_names_nested_types(kubectl):
    ports = kubectl("explain", "service.spec.ports")
    assert "FIELD: ports <[]ServicePort>" in ports, ports
    assert "The list of ports that are exposed by this service." in ports
    assert field_line(ports, "targetPort") == "targetPort\t<IntOrString>"
    assert field_line(ports, "port") == "port\t<integer> -required-"

    target = kubectl("explain", "service.spec.ports.targetPort")
    assert "FIELD: targetPort <IntOrString>" in target, target
    assert "Number or name of the port to access" in target and "IntOrString is a type that can hold" in target

    meta = kubectl("explain", "configmap.metadata")
    assert "FIELD: metadata <ObjectMeta>" in meta
    assert field_line(meta, "ownerReferences") == "ownerReferences\t<[]OwnerReference>"
    assert field_line(meta, "managedFields") == "managedFields\t<[]ManagedFieldsEntry>"
    assert field_line(meta, "creationTimestamp") == "creationTimestamp\t<string>"  # Time is a string
    owners = kubectl("explain", "configmap.metadata.ownerReferences")
    assert "FIELD: ownerReferences <[]OwnerReference>" in owners
    assert field_line(owners, "uid") == "uid\t<string> -required-"

    rules = kubectl("explain", "clusterrole.aggregationRule")
    assert "FIELD: aggregationRule <AggregationRule>" in rules
    assert field_line(rules, "clusterRoleSelectors") == "clusterRoleSelectors\t<[]LabelSelector>"

    crd = kubectl("explain", "crd.spec")
    assert "FIELD: spec <CustomResourceDefinitionSpec>" in crd
    assert field_line(crd, "versions") == "versions\t<[]CustomResourceDefinitionVersion> -required-"
    apiservice = kubectl("explain", "apiservice.spec")
    assert "FIELD: spec <APIServiceSpec>" in apiservice
    assert field_line(apiservice, "service") == "service\t<ServiceReference>"


def test_explain_recursive_and_openapiv2(kubectl):
    tree = kubectl("explain", "service", "--recursive")
    for line in ("spec\t<ServiceSpec>", "ports\t<[]ServicePort>", "targetPort\t<IntOrString>",
                 "sessionAffinityConfig\t<SessionAffinityConfig>", "clientIP\t<ClientIPConfig>",
                 "status\t<ServiceStatus>", "ingress\t<[]LoadBalancerIngress>", "conditions\t<[]Condition>"):
        assert line in tree, (line, tree)
    # The v2 template resolves the same references (it names every object <Object>).
    v2 = kubectl("explain", "service.spec.ports", "--output=plaintext-openapiv2")
    assert "RESOURCE: ports <[]Object>" in v2 and "ServicePort contains information on service's port." in v2
    assert field_line(v2, "targetPort") == "targetPort\t<string>"
    v2_tree = kubectl("explain", "service", "--recursive", "--output=plaintext-openapiv2")
    assert "targetPort\t<string>" in v2_tree and "timeoutSeconds\t<integer>" in v2_tree


def test_client_side_validation_names_nested_type(kubectl):
    """A `kind: List` is validated by kubectl itself against /openapi/v2 (protobuf), through the references."""
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "explained", "namespace": "default"},
           "spec": {"ports": [{"port": 80, "targetPort": "http", "bogus": 1}]}}
    proc = kubectl.run("apply", "--validate=strict", "-f", "-", check=False,
                       input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [svc]}))
    assert proc.returncode != 0
    assert 'ValidationError(Service.spec.ports[0]): unknown field "bogus" in io.k8s.api.core.v1.ServicePort' \
        in proc.stderr, proc.stderr
    # IntOrString accepts both an integer and a string; a wrong type is still caught.
    del svc["spec"]["ports"][0]["bogus"]
    svc["spec"]["ports"][0]["port"] = "eighty"
    proc = kubectl.run("apply", "--validate=strict", "-f", "-", check=False,
                       input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [svc]}))
    assert proc.returncode != 0 and "ValidationError(Service.spec.ports[0].port): invalid type" in proc.stderr, \
        proc.stderr
    svc["spec"]["ports"] = [{"name": "a", "port": 80, "targetPort": "http"},
                            {"name": "b", "port": 81, "targetPort": 8081}]
    out = kubectl("apply", "--validate=strict", "-f", "-",
                  input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [svc]}))
    assert "service/explained created" in out
    got = kubectl.json("get", "service", "explained", "-n", "default")
    assert [p["targetPort"] for p in got["spec"]["ports"]] == ["http", 8081]
    # A single object is validated by the server (fieldValidation=Strict), which names the nested field.
    bad = {**svc, "spec": {"ports": [{"port": 82, "bogus": 1}]}}
    proc = kubectl.run("apply", "--validate=strict", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0 and 'unknown field "spec.ports[0].bogus"' in proc.stderr, proc.stderr
