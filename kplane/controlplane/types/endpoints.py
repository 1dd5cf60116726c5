"""core/v1 Endpoints."""

from __future__ import annotations

from kplane.apimachinery.errors import Cause, field_invalid, field_required
from kplane.apimachinery.typeschema import array, described, integer, kind_schema, obj, string
from kplane.apimachinery.validation import is_dns1123_subdomain
from kplane.apiserver.resource import Column, Obj, ResourceDef
from kplane.controlplane.types.checks import (
    validate_dns1123_label,
    validate_ip,
    validate_non_special_ip,
    validate_port_num,
    validate_protocol,
    validate_qualified_name,
)
from kplane.controlplane.types.common import OBJECT_REFERENCE
from kplane.controlplane.types.printing import age_column, name_column

ENDPOINT_ADDRESS = obj("EndpointAddress is a tuple that describes single IP address.", {
    'hostname': string("The Hostname of this endpoint"),
    'ip': string(
        "The IP of this endpoint. May not be loopback (127.0.0.0/8 or ::1), link-local "
        "(169.254.0.0/16 or fe80::/10), or link-local multicast (224.0.0.0/24 or ff02::/16)."),
    'nodeName': string(
        "Optional: Node hosting this endpoint. This can be used to determine endpoints local to a "
        "node."),
    'targetRef': described(OBJECT_REFERENCE, "Reference to object providing the endpoint."),
}, required=['ip'], map_type="atomic", name="io.k8s.api.core.v1.EndpointAddress")

ENDPOINT_PORT = obj("EndpointPort is a tuple that describes a single port.", {
    'appProtocol': string(
        "The application protocol for this port. This is used as a hint for implementations to offer "
        "richer behavior for protocols that they understand."),
    'name': string(
        "The name of this port. This must match the 'name' field in the corresponding ServicePort."),
    'port': integer("The port number of the endpoint."),
    'protocol': string("The IP protocol for this port. Must be UDP, TCP, or SCTP."),
}, required=['port'], map_type="atomic", name="io.k8s.api.core.v1.EndpointPort")

ENDPOINT_SUBSET = obj(
    "EndpointSubset is a group of addresses with a common set of ports. The expanded set of "
    "endpoints is the Cartesian product of Addresses x Ports.", {
    'addresses': array(ENDPOINT_ADDRESS,
        "IP addresses which offer the related ports that are marked as ready. These endpoints should "
        "be considered safe for load balancers and clients to utilize.", list_type="atomic"),
    'notReadyAddresses': array(ENDPOINT_ADDRESS,
        "IP addresses which offer the related ports but are not currently marked as ready because "
        "they have not yet finished starting, have recently failed a readiness check, or have "
        "recently failed a liveness check.", list_type="atomic"),
    'ports': array(ENDPOINT_PORT,
        "Port numbers available on the related IP addresses.", list_type="atomic"),
}, name="io.k8s.api.core.v1.EndpointSubset")

ENDPOINTS = kind_schema(
    'Endpoints is a collection of endpoints that implement the actual service. Example:  Name: '
    '"mysvc",  Subsets: [   {    Addresses: [{"ip": "10.10.1.1"}, {"ip": "10.10.2.2"}],    Ports: '
    '[{"name": "a", "port": 8675}, {"name": "b", "port": 309}]   },   {    Addresses: [{"ip": '
    '"10.10.3.3"}],    Ports: [{"name": "a", "port": 93}, {"name": "b", "port": 76}]   }, ] '
    'Endpoints is a legacy API and does not contain information about all Service features.', {
    'subsets': array(ENDPOINT_SUBSET,
        "The set of all endpoints is the union of all subsets. Addresses are placed into subsets "
        "according to the IPs they share.", list_type="atomic"),
})

SUBSETS_DOC = (
    "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according "
    "to the IPs they share. A single address with multiple ports, some of which are ready and some of "
    "which are not (because they come from different containers) will result in the address being "
    "displayed in different subsets for the different ports. No address will appear in both Addresses "
    "and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.")


def default(obj: Obj, _old: Obj | None = None) -> None:
    """SetDefaults_EndpointPort: protocol TCP."""
    for subset in obj.get("subsets") or []:
        for port in subset.get("ports") or []:
            port.setdefault("protocol", "TCP")


_NO_ADDRESSES = "Required value: must specify `addresses` or `notReadyAddresses`"


def _validate_address(addr: Obj, path: str) -> list[Cause]:
    ip = addr.get("ip", "")
    causes = validate_ip(ip, f"{path}.ip")
    if addr.get("hostname"):
        causes += validate_dns1123_label(addr["hostname"], f"{path}.hostname")
    if addr.get("nodeName") is not None:
        node = addr["nodeName"]
        causes += [field_invalid(f"{path}.nodeName", node, m) for m in is_dns1123_subdomain(node)]
    if not causes:
        causes += validate_non_special_ip(ip, f"{path}.ip", allow_loopback=True)
    return causes


def _validate_port(port: Obj, require_name: bool, path: str) -> list[Cause]:
    causes: list[Cause] = []
    name = port.get("name") or ""
    if require_name and not name:
        causes.append(field_required(f"{path}.name"))
    elif name:
        causes += validate_dns1123_label(name, f"{path}.name")
    causes += validate_port_num(port.get("port", 0), f"{path}.port")
    causes += validate_protocol(port.get("protocol"), f"{path}.protocol")
    if port.get("appProtocol") is not None:
        causes += validate_qualified_name(port["appProtocol"], f"{path}.appProtocol")
    return causes


def validate(obj: Obj) -> list[Cause]:
    causes: list[Cause] = []
    for i, subset in enumerate(obj.get("subsets") or []):
        path = f"subsets[{i}]"
        addresses, not_ready = subset.get("addresses") or [], subset.get("notReadyAddresses") or []
        if not addresses and not not_ready:
            causes.append(field_required(path, _NO_ADDRESSES))
        for j, addr in enumerate(addresses):
            causes += _validate_address(addr, f"{path}.addresses[{j}]")
        for j, addr in enumerate(not_ready):
            causes += _validate_address(addr, f"{path}.notReadyAddresses[{j}]")
        ports = subset.get("ports") or []
        for j, port in enumerate(ports):
            causes += _validate_port(port, len(ports) > 1, f"{path}.ports[{j}]")
    return causes


def format_endpoints(obj: Obj, limit: int = 3) -> str:
    """formatEndpoints: up to three ip:port pairs, then "+ N more..."."""
    subsets = obj.get("subsets") or []
    if not subsets:
        return "<none>"
    shown: list[str] = []
    more, count = False, 0
    for subset in subsets:
        addresses = subset.get("addresses") or []
        ports = subset.get("ports") or [None]  # headless services may have no ports
        for port in ports:
            count += len(addresses)
            for addr in addresses:
                if len(shown) == limit:
                    more = True
                    break
                ip = addr.get("ip", "")
                if port is None:
                    shown.append(ip)
                else:
                    host = f"[{ip}]" if ":" in ip else ip
                    shown.append(f"{host}:{port.get('port', 0)}")
    ret = ",".join(shown)
    return f"{ret} + {count - limit} more..." if more else ret


def resources() -> list[ResourceDef]:
    return [ResourceDef(
        group="", version="v1", kind="Endpoints", plural="endpoints", singular="endpoints",
        short_names=["ep"], schema=ENDPOINTS, openapi_name="io.k8s.api.core.v1.Endpoints",
        columns=[name_column(), Column("Endpoints", "string", format_endpoints, description=SUBSETS_DOC),
                 age_column()],
        prepare_create=default, prepare_update=default,
        validate_create=validate, validate_update=lambda new, _old: validate(new),
        allow_create_on_update=True,  # as endpointsStrategy: a PUT may create one
    )]
