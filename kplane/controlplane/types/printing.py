"""Table columns shared by the built-in printers (pkg/printers/internalversion).

Column names are upstream's ("Name", "Age"); kubectl upper-cases them.
"""

from __future__ import annotations

from typing import Any

from kplane.apimachinery.table import age
from kplane.apiserver.resource import Column, Obj

# metav1.ObjectMeta{}.SwaggerDoc()["name"] / ["creationTimestamp"], which upstream uses as the
# descriptions of the Name and Age columns.
NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
AGE_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It "
    "is not guaranteed to be set in happens-before order across separate operations. Clients may not "
    "set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. "
    "Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")


def name_of(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def name_column(priority: int = 0) -> Column:
    return Column("Name", "string", name_of, format="name", description=NAME_DOC, priority=priority)


def age_column() -> Column:
    return Column("Age", "string", age, description=AGE_DOC)


def string_column(name: str, value: Any, description: str = "", priority: int = 0) -> Column:
    return Column(name, "string", value, description=description, priority=priority)


def format_labels(labels: dict[str, str] | None) -> str:
    """labels.FormatLabels: sorted k=v pairs, "<none>" when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def list_with_more(items: list[str], more: bool, count: int, limit: int) -> str:
    """listWithMoreString from upstream's printers."""
    ret = ",".join(items)
    if more:
        return f"{ret} + {count - limit} more..."
    return ret or "<unset>"
