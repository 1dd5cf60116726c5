"""Field checks shared by several built-in types, with upstream's messages.

Ports the parts of k8s.io/apimachinery/pkg/util/validation and
pkg/apis/core/validation that configmaps, secrets, services, endpoints and
endpointslices have in common.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from kplane.apimachinery.errors import Cause, field_invalid, field_not_supported, field_required
from kplane.apimachinery.validation import (
    is_dns1123_label,
    is_qualified_name,
    max_len_error,
    regex_error,
)

# core.MaxSecretSize: the limit on the total size of a Secret's or ConfigMap's data.
MAX_DATA_SIZE = 1 * 1024 * 1024
SUPPORTED_PROTOCOLS = ["SCTP", "TCP", "UDP"]  # sorted, as sets.List renders them
FIELD_IMMUTABLE = "field is immutable"

_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_RE = re.compile(_CONFIG_KEY_FMT)
_CONFIG_KEY_ERR = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_PORT_NAME_CHARSET = re.compile("[-a-z0-9]+")
_PORT_NAME_LETTER = re.compile("[a-z]")


def key_path(path: str, key: str) -> str:
    """field.Path.Key: data[some.key]."""
    return f"{path}[{key}]"


def is_config_map_key(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _CONFIG_KEY_RE.fullmatch(value):
        errs.append(regex_error(_CONFIG_KEY_ERR, _CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def validate_config_keys(data: dict[str, Any] | None, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for key in sorted(data or {}):
        causes += [field_invalid(key_path(path, key), key, m) for m in is_config_map_key(key)]
    return causes


def is_valid_port_num(port: Any) -> list[str]:
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        return []
    return ["must be between 1 and 65535, inclusive"]


def is_valid_port_name(name: str) -> list[str]:
    errs: list[str] = []
    if len(name) > 15:
        errs.append(max_len_error(15))
    if not _PORT_NAME_CHARSET.fullmatch(name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_LETTER.search(name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name and (name[0] == "-" or name[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def validate_dns1123_label(value: str, path: str) -> list[Cause]:
    return [field_invalid(path, value, m) for m in is_dns1123_label(value)]


def validate_qualified_name(value: str, path: str) -> list[Cause]:
    return [field_invalid(path, value, m) for m in is_qualified_name(value)]


def validate_protocol(protocol: Any, path: str) -> list[Cause]:
    if not protocol:
        return [field_required(path)]
    if protocol not in SUPPORTED_PROTOCOLS:
        return [field_not_supported(path, protocol, SUPPORTED_PROTOCOLS)]
    return []


def validate_port_num_or_name(value: Any, path: str) -> list[Cause]:
    """ValidatePortNumOrName for an IntOrString."""
    if isinstance(value, str):
        return [field_invalid(path, value, m) for m in is_valid_port_name(value)]
    return [field_invalid(path, value, m) for m in is_valid_port_num(value)]


def parse_ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def validate_ip(value: Any, path: str) -> list[Cause]:
    if parse_ip(value) is None:
        return [field_invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    return []


def validate_non_special_ip(value: str, path: str, allow_loopback: bool = False) -> list[Cause]:
    """ValidateNonSpecialIP: endpoints and external IPs may not be node-local addresses.

    kplane deviates for Endpoints and EndpointSlices (allow_loopback): it has
    no nodes and no kube-proxy, routes aggregated APIs straight to endpoints,
    and its extension servers usually listen on 127.0.0.1 of the same machine.
    """
    ip = parse_ip(value)
    if ip is None:
        return [field_invalid(path, value, "must be a valid IP address")]
    causes: list[Cause] = []
    if ip.is_unspecified:
        causes.append(field_invalid(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback and not allow_loopback:
        causes.append(field_invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local:
        causes.append(field_invalid(path, value,
                                    "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if ip.is_multicast and _is_link_local_multicast(ip):
        causes.append(field_invalid(path, value,
                                    "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return causes


def _is_link_local_multicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if ip.version == 4:
        return ip in ipaddress.ip_network("224.0.0.0/24")
    return int(ip) >> 112 & 0xFF0F == 0xFF02


def immutable(new: Any, old: Any, path: str, rendered: str | None = None) -> list[Cause]:
    """ValidateImmutableField; `rendered` overrides how the new value is shown (Go %#v of structs)."""
    if new == old:
        return []
    if rendered is not None:
        return [Cause("FieldValueInvalid", f"Invalid value: {rendered}: {FIELD_IMMUTABLE}", path)]
    return [field_invalid(path, new, FIELD_IMMUTABLE)]



def validate_port_num(value: Any, path: str) -> list[Cause]:
    return [field_invalid(path, value, m) for m in is_valid_port_num(value)]
