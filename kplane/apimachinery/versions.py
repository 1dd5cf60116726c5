"""Kubernetes-aware API version ordering (apimachinery version.CompareKubeAwareVersionStrings).

Discovery lists a group's versions in this order and picks the first as preferredVersion:
GA before beta before alpha; within a level the higher major version first, then the higher
alpha/beta number; strings that are not of the form v<N>[alpha|beta<M>] come last, sorted
alphabetically.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_KUBE_VERSION_RE = re.compile(r"v(\d+)(?:(alpha|beta)(\d+))?")
_INT_MAX = 2**63 - 1  # strconv.Atoi on 64-bit: larger numbers fail to parse -> non-conforming

_ALPHA, _BETA, _GA = 0, 1, 2
_TYPES = {"alpha": _ALPHA, "beta": _BETA, None: _GA}


def parse_kube_version(v: str) -> tuple[int, int, int] | None:
    """(major, type, minor) with type alpha=0 < beta=1 < GA=2, or None if v does not conform."""
    m = _KUBE_VERSION_RE.fullmatch(v)
    if m is None or not v.isascii():
        return None
    major = int(m.group(1))
    minor = int(m.group(3)) if m.group(3) is not None else 0
    if major > _INT_MAX or minor > _INT_MAX:
        return None
    return major, _TYPES[m.group(2)], minor


def compare_kube_aware_version_strings(v1: str, v2: str) -> int:
    """>0 if v1 has higher priority than v2, <0 if lower, 0 if equal (upstream's sign convention)."""
    if v1 == v2:
        return 0
    p1, p2 = parse_kube_version(v1), parse_kube_version(v2)
    if p1 is None and p2 is None:
        return (v2 > v1) - (v2 < v1)  # strings.Compare(v2, v1): alphabetically earlier wins
    if p1 is None:
        return -1
    if p2 is None:
        return 1
    major1, type1, minor1 = p1
    major2, type2, minor2 = p2
    if type1 != type2:
        return type1 - type2
    if major1 != major2:
        return major1 - major2
    return minor1 - minor2


def version_priority_key(v: str) -> tuple[int, int, int, int, str]:
    """Sort key: sorted(versions, key=version_priority_key) puts the preferred version first."""
    parsed = parse_kube_version(v)
    if parsed is None:
        return (1, 0, 0, 0, v)
    major, vtype, minor = parsed
    return (0, -vtype, -major, -minor, "")


def sort_versions(versions: Iterable[str]) -> list[str]:
    """Versions from highest to lowest priority."""
    return sorted(versions, key=version_priority_key)


__all__ = ["compare_kube_aware_version_strings", "parse_kube_version", "sort_versions",
           "version_priority_key"]
