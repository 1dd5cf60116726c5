"""The cheap Kubernetes CEL libraries, as functions for the `cel` package's Context.

- regex: `s.find(re)`, `s.findAll(re)`, `s.findAll(re, n)`
- url: `url(s)`, `isURL(s)`, `u.getScheme()`, `u.getHost()`, `u.getHostname()`, `u.getPort()`,
  `u.getEscapedPath()`, `u.getQuery()`
- ip/cidr: `ip(s)`, `isIP(s)`, `ip.family()`, `ip.isUnspecified()`, `ip.isLoopback()`,
  `ip.isLinkLocalMulticast()`, `ip.isLinkLocalUnicast()`, `ip.isGlobalUnicast()`, `cidr(s)`,
  `isCIDR(s)`, `c.containsIP(ip|s)`, `c.containsCIDR(cidr|s)`, `c.ip()`, `c.masked()`,
  `c.prefixLength()`

URLs, IPs and CIDRs are carried as their (canonical) strings, since the evaluator has no opaque
types: `ip('::1') == ip('0:0::1')` holds, `type(ip(...))` is string. `quantity` and `format` are
not provided. (`isSorted`, `sum`, `min`, `max`, `indexOf`, `lastIndexOf` come from cel.stdlib.)
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _find(s: str, pattern: str) -> str:
    m = re.search(pattern, s)
    return m.group(0) if m else ""


def _find_all(s: str, pattern: str, limit: int = -1) -> list[str]:
    found = [m.group(0) for m in re.finditer(pattern, s)]
    return found if limit < 0 else found[:limit]


# ---- url ----------------------------------------------------------------------------------------


def _parse_url(s: str) -> Any:
    parts = urlsplit(s)
    if not (parts.scheme or s.startswith("/")) or " " in s:
        raise ValueError(f"URL parse error during conversion from string: parse {s!r}: invalid URI for request")
    return parts


def _url(s: str) -> str:
    _parse_url(s)
    return s


def _is_url(s: str) -> bool:
    try:
        _parse_url(s)
        return True
    except ValueError:
        return False


def _get_host(u: str) -> str:
    return _parse_url(u).netloc.rpartition("@")[2]


def _get_hostname(u: str) -> str:
    return _parse_url(u).hostname or ""


def _get_port(u: str) -> str:
    host = _get_host(u)
    if host.startswith("["):
        _, _, rest = host.partition("]")
        return rest[1:] if rest.startswith(":") else ""
    return host.rpartition(":")[2] if ":" in host else ""


def _get_query(u: str) -> dict[str, list[str]]:
    return parse_qs(_parse_url(u).query, keep_blank_values=True)


# ---- ip / cidr ----------------------------------------------------------------------------------


def _parse_ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if "/" in s:  # c.ip() reaches here with the CIDR string: its address
        return ipaddress.ip_interface(s).ip
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        raise ValueError(f"IP Address {s!r} parse error during conversion from string: ParseAddr({s!r}): "
                         f"unable to parse IP") from None
    if isinstance(addr, ipaddress.IPv6Address) and (addr.ipv4_mapped or addr.scope_id):
        raise ValueError(f"IP Address {s!r} with zone value or IPv4-mapped IPv6 is not allowed")
    return addr


def _ip(s: str) -> str:
    return str(_parse_ip(s))


def _is_ip(s: str) -> bool:
    try:
        _parse_ip(s)
        return "/" not in s
    except ValueError:
        return False


def _parse_cidr(s: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        return ipaddress.ip_interface(s if "/" in s else "!")
    except ValueError:
        raise ValueError(f"network address parse error during conversion from string: netip.ParsePrefix({s!r}): "
                         f"no '/'" if "/" not in s else f"network address parse error during conversion from "
                         f"string: netip.ParsePrefix({s!r}): bad prefix") from None


def _cidr(s: str) -> str:
    return str(_parse_cidr(s))


def _is_cidr(s: str) -> bool:
    try:
        _parse_cidr(s)
        return True
    except ValueError:
        return False


def _contains_ip(c: str, ip: str) -> bool:
    return _parse_ip(ip) in _parse_cidr(c).network


def _contains_cidr(c: str, other: str) -> bool:
    outer, inner = _parse_cidr(c).network, _parse_cidr(other).network
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


FUNCTIONS: dict[str, Any] = {
    "find": _find,
    "findAll": _find_all,
    "url": _url,
    "isURL": _is_url,
    "getScheme": lambda u: _parse_url(u).scheme,
    "getHost": _get_host,
    "getHostname": _get_hostname,
    "getPort": _get_port,
    "getEscapedPath": lambda u: _parse_url(u).path,
    "getQuery": _get_query,
    "ip": _ip,
    "isIP": _is_ip,
    "family": lambda s: _parse_ip(s).version,
    "isUnspecified": lambda s: _parse_ip(s).is_unspecified,
    "isLoopback": lambda s: _parse_ip(s).is_loopback,
    "isLinkLocalMulticast": lambda s: _parse_ip(s).is_multicast and _parse_ip(s) in (
        ipaddress.ip_network("224.0.0.0/24") if _parse_ip(s).version == 4 else ipaddress.ip_network("ff02::/16")),
    "isLinkLocalUnicast": lambda s: _parse_ip(s).is_link_local and not _parse_ip(s).is_multicast,
    "isGlobalUnicast": lambda s: not (_parse_ip(s).is_unspecified or _parse_ip(s).is_loopback
                                      or _parse_ip(s).is_multicast or _parse_ip(s).is_link_local
                                      or str(_parse_ip(s)) == "255.255.255.255"),
    "cidr": _cidr,
    "isCIDR": _is_cidr,
    "containsIP": _contains_ip,
    "containsCIDR": _contains_cidr,
    "masked": lambda c: str(_parse_cidr(c).network),
    "prefixLength": lambda c: _parse_cidr(c).network.prefixlen,
}
