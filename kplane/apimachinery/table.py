"""meta.k8s.io/v1 Table output, as kube-apiserver renders it for `kubectl get`.

human_duration is k8s.io/apimachinery/pkg/util/duration.HumanDuration; the
AGE cell of every built-in printer is `since(metadata.creationTimestamp)`.
The server always prints the wide set of columns (kubectl hides priority > 0
unless -o wide), exactly like upstream's TableConvertor does.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

_NS = 1_000_000_000
_MINUTE = 60 * _NS
_HOUR = 60 * _MINUTE


class _ColumnLike(Protocol):
    name: str
    type: str
    format: str
    description: str
    priority: int

    def value(self, obj: dict[str, Any]) -> Any: ...


def human_duration(seconds: float) -> str:
    """A succinct ~2-3 significant figure duration ("5s", "3m2s", "2d", "2y1d")."""
    # Integer nanoseconds so the boundaries match Go's time.Duration arithmetic.
    d = round(seconds * _NS)
    secs = int(d / _NS)  # Go int(d.Seconds()) truncates toward zero
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 60 * 2:
        return f"{secs}s"
    minutes = d // _MINUTE
    if minutes < 10:
        s = (d // _NS) % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = d // _HOUR
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def parse_time(value: str) -> datetime | None:
    """Parse a metav1.Time / MicroTime string; None for empty or malformed values."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def since(timestamp: str | None, now: datetime | None = None) -> str:
    """upstream translateTimestampSince: "<unknown>" for a zero timestamp."""
    t = parse_time(timestamp or "")
    if t is None:
        return "<unknown>"
    now = now or datetime.now(UTC)
    return human_duration((now - t).total_seconds())


def age(obj: dict[str, Any], now: datetime | None = None) -> str:
    """The AGE cell: time since metadata.creationTimestamp."""
    return since((obj.get("metadata") or {}).get("creationTimestamp"), now)


def column_definitions(columns: Iterable[_ColumnLike]) -> list[dict[str, Any]]:
    # Every field is serialized, empty or not (TableColumnDefinition has no omitempty).
    return [{"name": c.name, "type": c.type, "format": c.format, "description": c.description,
             "priority": c.priority} for c in columns]


def _row_object(obj: dict[str, Any], include_object: str, api_version: str) -> dict[str, Any] | None:
    if include_object == "Object":
        return obj
    if include_object == "None":
        return None
    return {"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": obj.get("metadata") or {}}


def build_table(columns: list[Any], objects: Iterable[dict[str, Any]], *, include_object: str = "Metadata",
                resource_version: str = "", continue_token: str = "", remaining: int | None = None,
                api_version: str = "meta.k8s.io/v1") -> dict[str, Any]:
    """A Table with one row per object, of `api_version` (meta.k8s.io/v1, or v1beta1 when asked).

    include_object follows ?includeObject=: "Metadata" (default; a PartialObjectMetadata per row,
    of the Table's version), "Object" (the object itself), "None" (upstream serializes the empty
    RawExtension as null).
    """
    if include_object not in ("Metadata", "Object", "None", ""):
        raise ValueError(f"unrecognized includeObject value: {include_object!r}")
    metadata: dict[str, Any] = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    if remaining is not None:
        metadata["remainingItemCount"] = remaining
    include_object = include_object or "Metadata"
    rows = [{"cells": [c.value(o) for c in columns], "object": _row_object(o, include_object, api_version)}
            for o in objects]
    return {"kind": "Table", "apiVersion": api_version, "metadata": metadata,
            "columnDefinitions": column_definitions(columns), "rows": rows}
