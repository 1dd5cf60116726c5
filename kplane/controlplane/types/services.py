"""core/v1 Service: schema, defaulting, validation and the `kubectl get svc` columns.

ClusterIPs are allocated by the control plane's allocator after
prepare_create; this module only defaults, normalizes (clusterIP ⇄
clusterIPs, as upstream's normalizeClusterIPs) and validates.
"""

from __future__ import annotations

from typing import Any

from kplane.apimachinery.errors import (
    Cause,
    field_duplicate,
    field_forbidden,
    field_invalid,
    field_not_supported,
    field_required,
)
from kplane.apimachinery.typeschema import (
    array,
    boolean,
    described,
    int_or_string,
    integer,
    kind_schema,
    obj,
    string,
    string_map,
)
from kplane.apimachinery.validation import go_quote, go_string_slice, is_dns1123_subdomain, validate_labels
from kplane.apiserver.resource import Obj, ResourceDef
from kplane.controlplane.types.checks import (
    parse_ip,
    validate_dns1123_label,
    validate_ip,
    validate_non_special_ip,
    validate_port_num,
    validate_port_num_or_name,
    validate_protocol,
    validate_qualified_name,
)
from kplane.controlplane.types.common import CONDITION
from kplane.controlplane.types.printing import age_column, format_labels, name_column, string_column

CLIENT_IP_CONFIG = obj("ClientIPConfig represents the configurations of Client IP based session affinity.", {
    'timeoutSeconds': integer(
        'timeoutSeconds specifies the seconds of ClientIP type session sticky time. The value must be '
        '>0 && <=86400(for 1 day) if ServiceAffinity == "ClientIP".'),
}, name="io.k8s.api.core.v1.ClientIPConfig")

SESSION_AFFINITY_CONFIG = obj("SessionAffinityConfig represents the configurations of session affinity.", {
    'clientIP': described(CLIENT_IP_CONFIG,
                          "clientIP contains the configurations of Client IP based session affinity."),
}, name="io.k8s.api.core.v1.SessionAffinityConfig")

SERVICE_PORT = obj("ServicePort contains information on service's port.", {
    'appProtocol': string(
        "The application protocol for this port. This is used as a hint for implementations to offer "
        "richer behavior for protocols that they understand."),
    'name': string("The name of this port within the service. This must be a DNS_LABEL."),
    'nodePort': integer(
        "The port on each node on which this service is exposed when type is NodePort or "
        "LoadBalancer. Usually assigned by the system."),
    'port': integer("The port that will be exposed by this service."),
    'protocol': string('The IP protocol for this port. Supports "TCP", "UDP", and "SCTP". Default is TCP.',
                       default="TCP"),
    'targetPort': int_or_string(
        "Number or name of the port to access on the pods targeted by the service. Number must be in "
        "the range 1 to 65535."),
}, required=['port'], name="io.k8s.api.core.v1.ServicePort")

SERVICE_SPEC = obj("ServiceSpec describes the attributes that a user creates on a service.", {
    'allocateLoadBalancerNodePorts': boolean(
        'allocateLoadBalancerNodePorts defines if NodePorts will be automatically allocated for '
        'services with type LoadBalancer. Default is "true".'),
    'clusterIP': string(
        "clusterIP is the IP address of the service and is usually assigned randomly. If an address "
        "is specified manually, is in-range (as per system configuration), and is not in use, it will "
        "be allocated to the service; otherwise creation of the service will fail."),
    'clusterIPs': array(string(),
        "ClusterIPs is a list of IP addresses assigned to this service, and are usually assigned "
        "randomly. If an address is specified manually, is in-range (as per system configuration), "
        "and is not in use, it will be allocated to the service; otherwise creation of the service "
        "will fail.", list_type="atomic"),
    'externalIPs': array(string(),
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept "
        "traffic for this service. These IPs are not managed by Kubernetes.", list_type="atomic"),
    'externalName': string(
        "externalName is the external reference that discovery mechanisms will return as an alias for "
        "this service (e.g. a DNS CNAME record). No proxying will be involved."),
    'externalTrafficPolicy': string(
        "externalTrafficPolicy describes how nodes distribute service traffic they receive on one of "
        "the Service's \"externally-facing\" addresses (NodePorts, ExternalIPs, and LoadBalancer IPs)."),
    'healthCheckNodePort': integer(
        "healthCheckNodePort specifies the healthcheck nodePort for the service. This only applies "
        "when type is set to LoadBalancer and externalTrafficPolicy is set to Local."),
    'internalTrafficPolicy': string(
        'InternalTrafficPolicy describes how nodes distribute service traffic they receive on the '
        'ClusterIP. If set to "Local", the proxy will assume that pods only want to talk to endpoints '
        'of the service on the same node as the pod, dropping the traffic if there are no local '
        'endpoints.'),
    'ipFamilies': array(string(),
        "IPFamilies is a list of IP families (e.g. IPv4, IPv6) assigned to this service.",
        list_type="atomic"),
    'ipFamilyPolicy': string(
        "IPFamilyPolicy represents the dual-stack-ness requested or required by this Service. If "
        "there is no value provided, then this field will be set to SingleStack."),
    'loadBalancerClass': string(
        "loadBalancerClass is the class of the load balancer implementation this Service belongs to. "
        "If specified, the value of this field must be a label-style identifier, with an optional "
        "prefix, e.g."),
    'loadBalancerIP': string(
        "Only applies to Service Type: LoadBalancer. This feature depends on whether the underlying "
        "cloud-provider supports specifying the loadBalancerIP when a load balancer is created."),
    'loadBalancerSourceRanges': array(string(),
        'If specified and supported by the platform, this will restrict traffic through the '
        'cloud-provider load-balancer will be restricted to the specified client IPs. This field will '
        'be ignored if the cloud-provider does not support the feature." More info: '
        'https://kubernetes.io/docs/tasks/access-application-cluster/create-external-load-balancer/',
        list_type="atomic"),
    'ports': array(SERVICE_PORT,
        "The list of ports that are exposed by this service.",
        merge_key="port", strategy="merge", list_type="map", map_keys=['port', 'protocol']),
    'publishNotReadyAddresses': boolean(
        "publishNotReadyAddresses indicates that any agent which deals with endpoints for this "
        "Service should disregard any indications of ready/not-ready. The primary use case for "
        "setting this field is for a StatefulSet's Headless Service to propagate SRV DNS records for "
        "its Pods for the purpose of peer discovery."),
    'selector': string_map(
        "Route service traffic to pods with label keys and values matching this selector. If empty or "
        "not present, the service is assumed to have an external process managing its endpoints, "
        "which Kubernetes will not modify.", map_type="atomic"),
    'sessionAffinity': string('Supports "ClientIP" and "None". Used to maintain session affinity.'),
    'sessionAffinityConfig': described(
        SESSION_AFFINITY_CONFIG, "sessionAffinityConfig contains the configurations of session affinity."),
    'trafficDistribution': string(
        "TrafficDistribution offers a way to express preferences for how traffic is distributed to "
        "Service endpoints. Implementations can use this field as a hint, but are not required to "
        "guarantee strict adherence."),
    'type': string("type determines how the Service is exposed. Defaults to ClusterIP."),
}, name="io.k8s.api.core.v1.ServiceSpec")

PORT_STATUS = obj("PortStatus represents the error condition of a service port", {
    'error': string(
        "Error is to record the problem with the service port The format of the error shall comply "
        "with the following rules: - built-in error values shall be specified in this file and those "
        "shall use  CamelCase names - cloud provider specific error values must have names that "
        "comply with the  format foo.example.com/CamelCase."),
    'port': integer("Port is the port number of the service port of which status is recorded here"),
    'protocol': string(
        'Protocol is the protocol of the service port of which status is recorded here The supported '
        'values are: "TCP", "UDP", "SCTP"'),
}, required=['port', 'protocol'], name="io.k8s.api.core.v1.PortStatus")

LOAD_BALANCER_INGRESS = obj(
    "LoadBalancerIngress represents the status of a load-balancer ingress point: traffic intended "
    "for the service should be sent to an ingress point.", {
    'hostname': string(
        "Hostname is set for load-balancer ingress points that are DNS based (typically AWS "
        "load-balancers)"),
    'ip': string(
        "IP is set for load-balancer ingress points that are IP based (typically GCE or OpenStack "
        "load-balancers)"),
    'ipMode': string(
        "IPMode specifies how the load-balancer IP behaves, and may only be specified when the ip "
        "field is specified. Setting this to \"VIP\" indicates that traffic is delivered to the node "
        "with the destination set to the load-balancer's IP and port."),
    'ports': array(PORT_STATUS,
        "Ports is a list of records of service ports If used, every port defined in the service "
        "should have an entry in it", list_type="atomic"),
}, name="io.k8s.api.core.v1.LoadBalancerIngress")

LOAD_BALANCER_STATUS = obj("LoadBalancerStatus represents the status of a load-balancer.", {
    'ingress': array(LOAD_BALANCER_INGRESS,
        "Ingress is a list containing ingress points for the load-balancer. Traffic intended for the "
        "service should be sent to these ingress points.", list_type="atomic"),
}, name="io.k8s.api.core.v1.LoadBalancerStatus")

SERVICE_STATUS = obj("ServiceStatus represents the current status of a service.", {
    'conditions': array(CONDITION,
        "Current service state", merge_key="type", strategy="merge", list_type="map", map_keys=['type']),
    'loadBalancer': described(
        LOAD_BALANCER_STATUS,
        "LoadBalancer contains the current status of the load-balancer, if one is present."),
}, name="io.k8s.api.core.v1.ServiceStatus")

SERVICE = kind_schema(
    "Service is a named abstraction of software service (for example, mysql) consisting of local "
    "port (for example 3306) that the proxy listens on, and the selector that determines which "
    "pods will answer requests sent through the proxy.", {
    'spec': described(SERVICE_SPEC, "Spec defines the behavior of a service. https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status"),
    'status': described(
        SERVICE_STATUS, "Most recently observed status of the service. Populated by the system. Read-only. "
        "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
        "#spec-and-status"),
})

SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]  # sorted like sets.List
SESSION_AFFINITIES = ["ClientIP", "None"]
IP_FAMILY_POLICIES = ["PreferDualStack", "RequireDualStack", "SingleStack"]
CLUSTER_IP_NONE = "None"
KUBELET_PORT = 10250
MAX_CLIENT_IP_TIMEOUT = 86400


def _spec(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    return spec


# ---- defaulting -------------------------------------------------------------------------------


def _externally_accessible(spec: dict[str, Any]) -> bool:
    t = spec.get("type")
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(spec.get("externalIPs")))


def set_defaults(obj: Obj) -> None:
    """SetDefaults_Service (pkg/apis/core/v1/defaults.go)."""
    spec = _spec(obj)
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    for port in spec.get("ports") or []:
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    if _externally_accessible(spec) and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and spec["type"] != "ExternalName":
        spec["internalTrafficPolicy"] = "Cluster"
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
        for ingress in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
            if ingress.get("ip") and not ingress.get("ipMode"):
                ingress["ipMode"] = "VIP"


def _default_ip_families(spec: dict[str, Any]) -> None:
    """What the allocator does on a single-stack cluster: families follow the (first) cluster IPs."""
    if spec.get("type") == "ExternalName":
        return
    headless = spec.get("clusterIP") == CLUSTER_IP_NONE
    if not spec.get("ipFamilyPolicy"):
        # Headless services without a selector may hold endpoints of any family.
        selectorless_headless = headless and not spec.get("selector")
        spec["ipFamilyPolicy"] = "RequireDualStack" if selectorless_headless else "SingleStack"
    if not spec.get("ipFamilies"):
        families = []
        for ip in spec.get("clusterIPs") or []:
            parsed = parse_ip(ip)
            if parsed is not None:
                families.append("IPv4" if parsed.version == 4 else "IPv6")
        spec["ipFamilies"] = families or ["IPv4"]


def prepare_create(obj: Obj) -> None:
    set_defaults(obj)
    spec = _spec(obj)
    # An old client sets only clusterIP: mirror it into clusterIPs.
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    _default_ip_families(spec)


def _needs_cluster_ip(spec: dict[str, Any]) -> bool:
    return spec.get("type") != "ExternalName"


def _needs_node_port(spec: dict[str, Any]) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def _needs_health_check(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def prepare_update(new: Obj, old: Obj) -> None:
    set_defaults(new)
    spec, old_spec = _spec(new), old.get("spec") or {}
    # patchAllocatedValues: a client that omits allocated values (kubectl apply, replace) keeps them.
    if _needs_cluster_ip(old_spec) and _needs_cluster_ip(spec):
        if not spec.get("clusterIP"):
            for key in ("clusterIP", "clusterIPs"):
                if key in old_spec:
                    spec[key] = old_spec[key]
        for key in ("ipFamilies", "ipFamilyPolicy"):
            if not spec.get(key) and key in old_spec:
                spec[key] = old_spec[key]
    if _needs_node_port(old_spec) and _needs_node_port(spec):
        old_node_ports = {p.get("name", ""): p.get("nodePort") for p in old_spec.get("ports") or []}
        for port in spec.get("ports") or []:
            if not port.get("nodePort") and old_node_ports.get(port.get("name", "")):
                port["nodePort"] = old_node_ports[port.get("name", "")]
    kept_health_check = _needs_health_check(spec) and _needs_health_check(old_spec)
    if kept_health_check and not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
        spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]
    _normalize_cluster_ips_on_update(spec, old_spec)
    _drop_type_dependent_fields(spec, old_spec)
    _default_ip_families(spec)
    if spec.get("type") != "LoadBalancer" and (new.get("status") or {}).get("loadBalancer"):
        new["status"]["loadBalancer"] = {}  # a load balancer's status no longer applies (dropTypeDependentFields)


def _normalize_cluster_ips_on_update(spec: dict[str, Any], old_spec: dict[str, Any]) -> None:
    """normalizeClusterIPs for updates: decide what a client that touched only one field meant."""
    ips = spec.get("clusterIPs") or []
    # The singular field wins when an old client cleared or changed it without knowing clusterIPs.
    if old_spec.get("clusterIPs") and ips and (spec.get("clusterIP") or "") != ips[0]:
        spec.pop("clusterIPs", None)
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]


def _drop_type_dependent_fields(spec: dict[str, Any], old_spec: dict[str, Any]) -> None:
    """dropTypeDependentFields: fields a type change makes meaningless go, unless the user set them anew."""
    if spec.get("type") == old_spec.get("type"):
        return
    if not _needs_cluster_ip(spec) and _needs_cluster_ip(old_spec):
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if spec.get(key) == old_spec.get(key):
                spec.pop(key, None)
    if not _needs_node_port(spec) and _needs_node_port(old_spec):
        old_ports = {p.get("name", ""): p.get("nodePort") for p in old_spec.get("ports") or []}
        for port in spec.get("ports") or []:
            if port.get("nodePort") and port["nodePort"] == old_ports.get(port.get("name", "")):
                port.pop("nodePort")
    if spec.get("type") != "LoadBalancer":
        if spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
            spec.pop("healthCheckNodePort", None)
        if spec.get("allocateLoadBalancerNodePorts") == old_spec.get("allocateLoadBalancerNodePorts"):
            spec.pop("allocateLoadBalancerNodePorts", None)
        if spec.get("loadBalancerClass") == old_spec.get("loadBalancerClass"):
            spec.pop("loadBalancerClass", None)
    if not _externally_accessible(spec) and spec.get("externalTrafficPolicy") == \
            old_spec.get("externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy", None)


# ---- validation -------------------------------------------------------------------------------


def _go_port_struct(port: dict[str, Any]) -> str:
    """%#v of the (protocol, port) key upstream reports duplicate ports with."""
    return (f'core.ServicePort{{Name:"", Protocol:{go_quote(port.get("protocol") or "")}, '
            f'AppProtocol:(*string)(nil), Port:{port.get("port", 0)}, '
            f'TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, NodePort:0}}')


def _validate_port(port: dict[str, Any], require_name: bool, names: set[str], path: str) -> list[Cause]:
    causes: list[Cause] = []
    name = port.get("name") or ""
    if require_name and not name:
        causes.append(field_required(f"{path}.name"))
    elif name:
        causes += validate_dns1123_label(name, f"{path}.name")
        if name in names:
            causes.append(field_duplicate(f"{path}.name", name))
        names.add(name)
    causes += validate_port_num(port.get("port", 0), f"{path}.port")
    causes += validate_protocol(port.get("protocol"), f"{path}.protocol")
    causes += validate_port_num_or_name(port.get("targetPort"), f"{path}.targetPort")
    if port.get("appProtocol") is not None:
        causes += validate_qualified_name(port["appProtocol"], f"{path}.appProtocol")
    return causes


def _validate_type_specific(spec: dict[str, Any], headless: bool) -> list[Cause]:
    causes: list[Cause] = []
    svc_type = spec.get("type")
    first_ip = (spec.get("clusterIPs") or [""])[0]
    if svc_type == "LoadBalancer":
        if headless:
            causes.append(field_invalid("spec.clusterIPs[0]", first_ip,
                                        "may not be set to 'None' for LoadBalancer services"))
        for i, port in enumerate(spec.get("ports") or []):
            if port.get("port") == KUBELET_PORT:
                causes.append(field_invalid(f"spec.ports[{i}]", KUBELET_PORT, f"may not expose port "
                                            f"{KUBELET_PORT} externally since it is used by kubelet"))
    elif svc_type == "NodePort" and headless:
        causes.append(field_invalid("spec.clusterIPs[0]", first_ip,
                                    "may not be set to 'None' for NodePort services"))
    elif svc_type == "ExternalName":
        for key in ("clusterIPs", "ipFamilies"):
            if spec.get(key):
                causes.append(field_forbidden(f"spec.{key}", "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            causes.append(field_forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        # The CNAME may end in a dot to mark it fully qualified.
        cname = (spec.get("externalName") or "").removesuffix(".")
        if cname:
            causes += [field_invalid("spec.externalName", cname, m) for m in is_dns1123_subdomain(cname)]
        else:
            causes.append(field_required("spec.externalName"))
    return causes


def _validate_cluster_ips(spec: dict[str, Any]) -> list[Cause]:
    if spec.get("type") == "ExternalName":
        return []
    causes: list[Cause] = []
    ips: list[str] = spec.get("clusterIPs") or []
    rendered = go_string_slice(ips)
    if not spec.get("clusterIP"):
        if ips:
            causes.append(_invalid_raw("spec.clusterIPs", rendered, "must be empty when clusterIP is empty"))
    elif not ips:
        causes.append(field_required("spec.clusterIPs"))
    elif ips[0] != spec["clusterIP"]:
        causes.append(_invalid_raw("spec.clusterIPs", rendered, "first value must match `clusterIP`"))
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        causes.append(field_not_supported("spec.ipFamilyPolicy", policy, IP_FAMILY_POLICIES))
    for i, ip in enumerate(ips):
        if i == 0 and ip == CLUSTER_IP_NONE:
            if len(ips) > 1:
                causes.append(_invalid_raw("spec.clusterIPs", rendered,
                                           "'None' must be the first and only value"))
            continue
        causes += validate_ip(ip, f"spec.clusterIPs[{i}]")
    if len(ips) > 2:
        causes.append(_invalid_raw("spec.clusterIPs", rendered, "may only hold up to 2 values"))
    for i, family in enumerate(spec.get("ipFamilies") or []):
        if family not in ("IPv4", "IPv6"):
            causes.append(field_not_supported(f"spec.ipFamilies[{i}]", family, ["IPv4", "IPv6"]))
    return causes


def _invalid_raw(path: str, rendered: str, detail: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {rendered}: {detail}", path)


def _validate_session_affinity(spec: dict[str, Any]) -> list[Cause]:
    affinity = spec.get("sessionAffinity")
    if not affinity:
        return [field_required("spec.sessionAffinity")]
    if affinity not in SESSION_AFFINITIES:
        return [field_not_supported("spec.sessionAffinity", affinity, SESSION_AFFINITIES)]
    config = spec.get("sessionAffinityConfig")
    if affinity == "None":
        if config is not None:
            return [field_forbidden("spec.sessionAffinityConfig",
                                    "must not be set when session affinity is None")]
        return []
    timeout = ((config or {}).get("clientIP") or {}).get("timeoutSeconds")
    path = "spec.sessionAffinityConfig.clientIP.timeoutSeconds"
    if timeout is None:
        return [field_required(path)]
    if not 0 < timeout <= MAX_CLIENT_IP_TIMEOUT:
        return [field_invalid(path, timeout, f"must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT}")]
    return []


def validate(obj: Obj) -> list[Cause]:
    """ValidateService (pkg/apis/core/validation), the parts that depend on the object alone."""
    spec = obj.get("spec") or {}
    svc_type = spec.get("type")
    headless = spec.get("clusterIP") == CLUSTER_IP_NONE
    ports: list[dict[str, Any]] = spec.get("ports") or []
    causes: list[Cause] = []
    if not ports and not headless and svc_type != "ExternalName":
        causes.append(field_required("spec.ports"))
    causes += _validate_type_specific(spec, headless)
    names: set[str] = set()
    for i, port in enumerate(ports):
        causes += _validate_port(port, len(ports) > 1, names, f"spec.ports[{i}]")
    if spec.get("selector") is not None:
        causes += validate_labels(spec["selector"], "spec.selector")
    causes += _validate_session_affinity(spec)
    causes += _validate_cluster_ips(spec)
    for i, ip in enumerate(spec.get("externalIPs") or []):
        path = f"spec.externalIPs[{i}]"
        causes += validate_ip(ip, path) or validate_non_special_ip(ip, path)
    if not svc_type:
        causes.append(field_required("spec.type"))
    elif svc_type not in SERVICE_TYPES:
        causes.append(field_not_supported("spec.type", svc_type, SERVICE_TYPES))
    if svc_type == "ClusterIP":
        causes += [field_forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'")
                   for i, p in enumerate(ports) if p.get("nodePort")]
    causes += _duplicate_ports(ports)
    return causes


def _duplicate_ports(ports: list[dict[str, Any]]) -> list[Cause]:
    causes: list[Cause] = []
    seen_node_ports: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        if not port.get("nodePort"):
            continue
        key = (port.get("protocol"), port["nodePort"])
        if key in seen_node_ports:
            causes.append(field_duplicate(f"spec.ports[{i}].nodePort", port["nodePort"]))
        seen_node_ports.add(key)
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        key = (port.get("protocol"), port.get("port"))
        if key in seen:
            causes.append(Cause("FieldValueDuplicate", f"Duplicate value: {_go_port_struct(port)}",
                                f"spec.ports[{i}]"))
        seen.add(key)
    return causes


def validate_update(new: Obj, old: Obj) -> list[Cause]:
    """ValidateServiceUpdate: allocated cluster IPs may not change (unless to/from ExternalName)."""
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    causes: list[Cause] = []
    if "ExternalName" not in (spec.get("type"), old_spec.get("type")) and not (
            old_spec.get("clusterIP") == CLUSTER_IP_NONE and spec.get("clusterIP") == CLUSTER_IP_NONE):
        old_ips: list[str] = old_spec.get("clusterIPs") or []
        new_ips: list[str] = spec.get("clusterIPs") or []
        rendered = go_string_slice(new_ips)
        if len(old_ips) == len(new_ips):
            causes += [_invalid_raw(f"spec.clusterIPs[{i}]", rendered, "may not change once set")
                       for i, ip in enumerate(old_ips) if ip != new_ips[i]]
        elif len(old_ips) > len(new_ips):
            if not new_ips:
                causes.append(_invalid_raw("spec.clusterIPs[0]", rendered,
                                           "primary clusterIP can not be unset"))
            elif new_ips[0] != old_ips[0]:
                causes.append(_invalid_raw("spec.clusterIPs[0]", rendered, "may not change once set"))
        elif old_ips and new_ips[0] != old_ips[0]:
            causes.append(_invalid_raw("spec.clusterIPs[0]", rendered, "may not change once set"))
    return causes + validate(new)


# ---- printing ---------------------------------------------------------------------------------


def _external_ip(obj: Obj) -> str:
    """getServiceExternalIP with wide=true (the server always prints wide)."""
    spec = obj.get("spec") or {}
    external = spec.get("externalIPs") or []
    svc_type = spec.get("type")
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if svc_type == "LoadBalancer":
        ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        lb = sorted({i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")})
        if external:
            return ",".join(lb + external)
        return ",".join(lb) if lb else "<pending>"
    if svc_type == "ExternalName":
        return spec.get("externalName") or ""
    return "<unknown>"


def _ports(obj: Obj) -> str:
    pieces = []
    for p in (obj.get("spec") or {}).get("ports") or []:
        proto = p.get("protocol", "")
        node = p.get("nodePort") or 0
        pieces.append(f"{p.get('port', 0)}:{node}/{proto}" if node > 0 else f"{p.get('port', 0)}/{proto}")
    return ",".join(pieces) or "<none>"


def _cluster_ip(obj: Obj) -> str:
    ips = (obj.get("spec") or {}).get("clusterIPs") or []
    return ips[0] if ips else "<none>"


def _spec_field(name: str) -> Any:
    return lambda o: (o.get("spec") or {}).get(name) or ""


def resources() -> list[ResourceDef]:
    docs = {k: v.get("description", "") for k, v in SERVICE_SPEC["properties"].items()}
    return [ResourceDef(
        group="", version="v1", kind="Service", plural="services", short_names=["svc"], categories=["all"],
        subresources=["status"], has_status=True, generation=False, name_validation="dns1035",
        schema=SERVICE, openapi_name="io.k8s.api.core.v1.Service",
        columns=[name_column(),
                 string_column("Type", _spec_field("type"), docs["type"]),
                 string_column("Cluster-IP", _cluster_ip, docs["clusterIP"]),
                 string_column("External-IP", _external_ip, docs["externalIPs"]),
                 string_column("Port(s)", _ports, docs["ports"]),
                 age_column(),
                 string_column("Selector", lambda o: format_labels((o.get("spec") or {}).get("selector")),
                               docs["selector"], priority=1)],
        field_selectors={"spec.clusterIP": _spec_field("clusterIP"), "spec.type": _spec_field("type")},
        prepare_create=prepare_create, prepare_update=prepare_update,
        validate_create=validate, validate_update=validate_update,
    )]
