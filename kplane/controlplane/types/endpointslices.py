"""discovery.k8s.io/v1 EndpointSlice."""

from __future__ import annotations

from typing import Any

from kplane.apimachinery.errors import (
    Cause,
    field_duplicate,
    field_invalid,
    field_not_supported,
    field_required,
)
from kplane.apimachinery.typeschema import (
    array,
    boolean,
    described,
    integer,
    kind_schema,
    obj,
    string,
    string_map,
)
from kplane.apimachinery.validation import (
    is_dns1123_label,
    is_dns1123_subdomain,
    is_valid_label_value,
    validate_labels,
)
from kplane.apiserver.resource import Column, Obj, ResourceDef
from kplane.controlplane.types.checks import (
    immutable,
    parse_ip,
    validate_dns1123_label,
    validate_non_special_ip,
    validate_protocol,
    validate_qualified_name,
)
from kplane.controlplane.types.common import OBJECT_REFERENCE
from kplane.controlplane.types.printing import age_column, list_with_more, name_column

ENDPOINT_CONDITIONS = obj("EndpointConditions represents the current condition of an endpoint.", {
    'ready': boolean(
        'ready indicates that this endpoint is ready to receive traffic, according to whatever system '
        'is managing the endpoint. A nil value should be interpreted as "true".'),
    'serving': boolean(
        "serving indicates that this endpoint is able to receive traffic, according to whatever "
        "system is managing the endpoint. For endpoints backed by pods, the EndpointSlice controller "
        "will mark the endpoint as serving if the pod's Ready condition is True."),
    'terminating': boolean(
        'terminating indicates that this endpoint is terminating. A nil value should be interpreted '
        'as "false".'),
}, name="io.k8s.api.discovery.v1.EndpointConditions")

FOR_ZONE = obj("ForZone provides information about which zones should consume this endpoint.", {
    'name': string("name represents the name of the zone."),
}, required=['name'], name="io.k8s.api.discovery.v1.ForZone")

ENDPOINT_HINTS = obj("EndpointHints provides hints describing how an endpoint should be consumed.", {
    'forZones': array(FOR_ZONE,
        "forZones indicates the zone(s) this endpoint should be consumed by when using topology aware "
        "routing. May contain a maximum of 8 entries.", list_type="atomic"),
}, name="io.k8s.api.discovery.v1.EndpointHints")

ENDPOINT = obj('Endpoint represents a single logical "backend" implementing a service.', {
    'addresses': array(string(),
        'addresses of this endpoint. For EndpointSlices of addressType "IPv4" or "IPv6", the values '
        'are IP addresses in canonical form.', list_type="set"),
    'conditions': described(
        ENDPOINT_CONDITIONS, "conditions contains information about the current status of the endpoint."),
    'deprecatedTopology': string_map(
        "deprecatedTopology contains topology information part of the v1beta1 API. This field is "
        "deprecated, and will be removed when the v1beta1 API is removed (no sooner than kubernetes "
        "v1.24)."),
    'hints': described(
        ENDPOINT_HINTS, "hints contains information associated with how an endpoint should be consumed."),
    'hostname': string(
        "hostname of this endpoint. This field may be used by consumers of endpoints to distinguish "
        "endpoints from each other (e.g. in DNS names)."),
    'nodeName': string(
        "nodeName represents the name of the Node hosting this endpoint. This can be used to "
        "determine endpoints local to a Node."),
    'targetRef': described(
        OBJECT_REFERENCE, "targetRef is a reference to a Kubernetes object that represents this endpoint."),
    'zone': string("zone is the name of the Zone this endpoint exists in."),
}, required=['addresses'], name="io.k8s.api.discovery.v1.Endpoint")

ENDPOINT_PORT = obj("EndpointPort represents a Port used by an EndpointSlice", {
    'appProtocol': string(
        "The application protocol for this port. This is used as a hint for implementations to offer "
        "richer behavior for protocols that they understand."),
    'name': string(
        "name represents the name of this port. All ports in an EndpointSlice must have a unique "
        "name."),
    'port': integer(
        "port represents the port number of the endpoint. If the EndpointSlice is derived from a "
        "Kubernetes service, this must be set to the service's target port."),
    'protocol': string("protocol represents the IP protocol for this port. Must be UDP, TCP, or SCTP."),
}, map_type="atomic", name="io.k8s.api.discovery.v1.EndpointPort")

ENDPOINT_SLICE = kind_schema(
    "EndpointSlice represents a set of service endpoints. Most EndpointSlices are created by the "
    "EndpointSlice controller to represent the Pods selected by Service objects.", {
    'addressType': string(
        "addressType specifies the type of address carried by this EndpointSlice. All addresses in "
        "this slice must be the same type."),
    'endpoints': array(ENDPOINT,
        "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of "
        "1000 endpoints.", list_type="atomic"),
    'ports': array(ENDPOINT_PORT,
        "ports specifies the list of network ports exposed by each endpoint in this slice. Each port "
        "must have a unique name.", list_type="atomic"),
}, required=['addressType', 'endpoints'])

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]
MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100
MAX_PORTS = 20000
MAX_FOR_ZONES = 8
MAX_TOPOLOGY_LABELS = 16


def _too_many(path: str, actual: int, limit: int) -> Cause:
    return Cause("FieldValueTooMany", f"Too many: {actual}: must have at most {limit} items", path)


def default(obj: Obj, _old: Obj | None = None) -> None:
    """SetDefaults_EndpointPort: name "" and protocol TCP."""
    for port in obj.get("ports") or []:
        port.setdefault("name", "")
        port.setdefault("protocol", "TCP")


def _validate_fqdn(name: str, path: str) -> list[Cause]:
    """IsFullyQualifiedDomainName."""
    if not name:
        return [field_required(path)]
    name = name.removesuffix(".")
    errs = is_dns1123_subdomain(name)
    if errs:
        return [field_invalid(path, name, ",".join(errs))]
    labels = name.split(".")
    if len(labels) < 2:
        return [field_invalid(path, name, "should be a domain with at least two segments separated by dots")]
    for label in labels:
        errs = is_dns1123_label(label)
        if errs:
            return [field_invalid(path, label, ",".join(errs))]
    return []


def _validate_address(address: Any, address_type: str, path: str) -> list[Cause]:
    if address_type in ("IPv4", "IPv6"):
        ip = parse_ip(address)
        want = 4 if address_type == "IPv4" else 6
        if ip is None or ip.version != want:
            return [field_invalid(path, address, f"must be a valid {address_type} address")]
        return validate_non_special_ip(address, path, allow_loopback=True)
    if address_type == "FQDN":
        return _validate_fqdn(address, path)
    return []  # unknown types were already reported; their addresses are not checked


def _validate_hints(hints: dict[str, Any], path: str) -> list[Cause]:
    zones = hints.get("forZones") or []
    if len(zones) > MAX_FOR_ZONES:
        return [_too_many(f"{path}.forZones", len(zones), MAX_FOR_ZONES)]
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, zone in enumerate(zones):
        zone_path, name = f"{path}.forZones[{i}].name", zone.get("name", "")
        if name in seen:
            causes.append(field_duplicate(zone_path, name))
        seen.add(name)
        causes += [field_invalid(zone_path, name, m) for m in is_valid_label_value(name)]
    return causes


def _validate_endpoint(ep: dict[str, Any], address_type: str, path: str) -> list[Cause]:
    causes: list[Cause] = []
    addresses = ep.get("addresses") or []
    if not addresses:
        causes.append(field_required(f"{path}.addresses", "Required value: must contain at least 1 address"))
    elif len(addresses) > MAX_ADDRESSES:
        causes.append(_too_many(f"{path}.addresses", len(addresses), MAX_ADDRESSES))
    for i, address in enumerate(addresses):
        causes += _validate_address(address, address_type, f"{path}.addresses[{i}]")
    if ep.get("nodeName") is not None:
        node = ep["nodeName"]
        causes += [field_invalid(f"{path}.nodeName", node, m) for m in is_dns1123_subdomain(node)]
    topology = ep.get("deprecatedTopology") or {}
    if len(topology) > MAX_TOPOLOGY_LABELS:
        causes.append(_too_many(f"{path}.deprecatedTopology", len(topology), MAX_TOPOLOGY_LABELS))
    causes += validate_labels(topology, f"{path}.deprecatedTopology")
    if ep.get("hostname") is not None:
        causes += validate_dns1123_label(ep["hostname"], f"{path}.hostname")
    if ep.get("hints") is not None:
        causes += _validate_hints(ep["hints"], f"{path}.hints")
    return causes


def _validate_ports(ports: list[dict[str, Any]]) -> list[Cause]:
    causes: list[Cause] = []
    if len(ports) > MAX_PORTS:
        causes.append(_too_many("ports", len(ports), MAX_PORTS))
    names: set[str] = set()
    for i, port in enumerate(ports):
        path, name = f"ports[{i}]", port.get("name") or ""
        if name:
            causes += validate_dns1123_label(name, f"{path}.name")
        if name in names:
            causes.append(field_duplicate(f"{path}.name", name))
        names.add(name)
        causes += validate_protocol(port.get("protocol"), f"{path}.protocol")
        if port.get("appProtocol") is not None:
            causes += validate_qualified_name(port["appProtocol"], f"{path}.appProtocol")
    return causes


def validate(obj: Obj) -> list[Cause]:
    address_type = obj.get("addressType") or ""
    causes: list[Cause] = []
    if not address_type:
        causes.append(field_required("addressType"))
    elif address_type not in ADDRESS_TYPES:
        causes.append(field_not_supported("addressType", address_type, ADDRESS_TYPES))
    endpoints = obj.get("endpoints") or []
    if len(endpoints) > MAX_ENDPOINTS:
        causes.append(_too_many("endpoints", len(endpoints), MAX_ENDPOINTS))
    for i, ep in enumerate(endpoints):
        causes += _validate_endpoint(ep, address_type, f"endpoints[{i}]")
    return causes + _validate_ports(obj.get("ports") or [])


def validate_update(new: Obj, old: Obj) -> list[Cause]:
    return immutable(new.get("addressType"), old.get("addressType"), "addressType") + validate(new)


def _format_ports(obj: Obj, limit: int = 3) -> str:
    ports = obj.get("ports") or []
    shown = [str(p["port"]) if p.get("port") is not None else (p.get("name") or "*") for p in ports[:limit]]
    return list_with_more(shown, len(ports) > limit, len(ports), limit)


def _format_endpoints(obj: Obj, limit: int = 3) -> str:
    addresses = [a for ep in obj.get("endpoints") or [] for a in ep.get("addresses") or []]
    return list_with_more(addresses[:limit], len(addresses) > limit, len(addresses), limit)


def resources() -> list[ResourceDef]:
    docs = {k: v.get("description", "") for k, v in ENDPOINT_SLICE["properties"].items()}
    return [ResourceDef(
        group="discovery.k8s.io", version="v1", kind="EndpointSlice", plural="endpointslices",
        schema=ENDPOINT_SLICE, openapi_name="io.k8s.api.discovery.v1.EndpointSlice",
        columns=[name_column(),
                 Column("AddressType", "string", lambda o: o.get("addressType") or "",
                        description=docs["addressType"]),
                 Column("Ports", "string", _format_ports, description=docs["ports"]),
                 Column("Endpoints", "string", _format_endpoints, description=docs["endpoints"]),
                 age_column()],
        prepare_create=default, prepare_update=default,
        validate_create=validate, validate_update=validate_update,
    )]
