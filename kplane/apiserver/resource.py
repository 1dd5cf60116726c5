"""ResourceDef: a resource type declared once, as data.

Routes, discovery, OpenAPI, Table columns, storage keys, strategic-merge keys,
server-side-apply list semantics and strict field validation are all derived
from one ResourceDef. Built-in types, CRDs and extension-server resources are
all ResourceDefs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kplane.apimachinery.errors import Cause

Obj = dict[str, Any]

# Strategy hooks. They receive plain dicts and may mutate `obj` in place.
# Validation hooks return a list of Causes (empty = valid); the registry turns
# a non-empty list into a 422 Invalid.
PrepareCreate = Callable[[Obj], None]
PrepareUpdate = Callable[[Obj, Obj], None]  # (new, old)
ValidateCreate = Callable[[Obj], list[Cause]]
ValidateUpdate = Callable[[Obj, Obj], list[Cause]]  # (new, old)
FieldGetter = Callable[[Obj], str]


@dataclass
class Column:
    """A Table column (meta.k8s.io/v1 TableColumnDefinition) and how to fill it."""

    name: str
    type: str  # string, integer, number, boolean, date
    value: Callable[[Obj], Any]  # extracts the cell from an object
    format: str = ""  # e.g. "name" for the Name column
    description: str = ""
    priority: int = 0  # 0 shown by default, >0 only with -o wide


@dataclass
class ResourceDef:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str = ""
    namespaced: bool = True
    list_kind: str = ""
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    verbs: list[str] = field(default_factory=lambda: [
        "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"])
    # Subresources served under /<plural>/<name>/<sub>; "status" has the
    # upstream semantics (the main endpoint ignores status, /status ignores the rest).
    subresources: list[str] = field(default_factory=list)
    # OpenAPI v3 schema of the whole object (with x-kubernetes-* extensions:
    # x-kubernetes-patch-merge-key, x-kubernetes-patch-strategy,
    # x-kubernetes-list-type, x-kubernetes-list-map-keys, x-kubernetes-map-type,
    # x-kubernetes-preserve-unknown-fields). The single source for OpenAPI,
    # explain, strategic merge patch, apply and strict field validation.
    schema: Obj = field(default_factory=dict)
    # Name of the schema in OpenAPI (e.g. io.k8s.api.core.v1.ConfigMap).
    openapi_name: str = ""
    # Named nested types of `schema` that typeschema's registry does not hold (an SDK server's
    # dataclasses, com.example.wardle.v1alpha1.FlunderSpec): name -> schema, for OpenAPI.
    definitions: dict[str, Obj] = field(default_factory=dict)
    columns: list[Column] = field(default_factory=list)
    # Extra field selectors beyond metadata.name / metadata.namespace.
    field_selectors: dict[str, FieldGetter] = field(default_factory=dict)
    # True for types whose objects carry spec/status and a metadata.generation
    # that is bumped only when spec changes.
    has_status: bool = False
    # With has_status: whether the strategy keeps metadata.generation (1 on create, +1 per spec
    # change). Upstream's Service and Namespace strategies set none, so their objects have none.
    generation: bool = True
    # Name validation: "subdomain" (DNS-1123 subdomain, most types), "label"
    # (DNS-1123 label: namespaces, services), "path" (any path segment name).
    name_validation: str = "subdomain"
    prepare_create: PrepareCreate | None = None
    prepare_update: PrepareUpdate | None = None
    validate_create: ValidateCreate | None = None
    validate_update: ValidateUpdate | None = None
    # Built-in types are Go structs upstream: a value of the wrong JSON type is a decoding
    # error (400) before any validation. CRDs and SDK resources report types as 422 instead.
    go_typed: bool = False
    # PUT of a missing object creates it (endpoints, leases, events upstream).
    allow_create_on_update: bool = False
    # Whether strategic merge patch is accepted (built-ins yes, CRDs no: 415).
    strategic_merge: bool = True
    # Storage key prefix resource name (defaults to plural), e.g. "services/specs" upstream.
    storage_resource: str = ""
    # Versions that share one storage (events.k8s.io/v1 Event and core v1
    # Event, several CRD versions) convert through these: to_storage turns an
    # object of this version into the stored form, from_storage the reverse.
    to_storage: Callable[[Obj], Obj] | None = None
    from_storage: Callable[[Obj], Obj] | None = None
    # Converters that do I/O (a CRD's conversion webhook): coroutine functions over a batch
    # of objects, awaited by the registry instead of the two above. Types without them
    # keep the registry's synchronous path.
    async_to_storage: Callable[[list[Obj]], Awaitable[list[Obj]]] | None = None
    async_from_storage: Callable[[list[Obj]], Awaitable[list[Obj]]] | None = None

    def __post_init__(self) -> None:
        if not self.singular:
            self.singular = self.kind.lower()
        if not self.list_kind:
            self.list_kind = self.kind + "List"
        if not self.storage_resource:
            self.storage_resource = self.plural

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def key_prefix(self, namespace: str | None = None) -> str:
        """Storage key prefix as kube-apiserver lays keys out in etcd.

        /registry/<resource>/<namespace>/<name>, group-prefixed for non-core
        groups except the historical ones kube-apiserver stores unprefixed.
        """
        base = "/registry/"
        if self.group and self.group not in _UNPREFIXED_GROUPS:
            base += self.group + "/"
        base += self.storage_resource + "/"
        if self.namespaced and namespace:
            base += namespace + "/"
        return base

    def key(self, namespace: str | None, name: str) -> str:
        return self.key_prefix(namespace) + name


# Groups kube-apiserver stores without the group prefix (their resources
# predate the group-prefixed layout or share names with core).
_UNPREFIXED_GROUPS = {"apps", "extensions", "discovery.k8s.io", "coordination.k8s.io", "events.k8s.io",
                      "rbac.authorization.k8s.io", "policy", "networking.k8s.io", "storage.k8s.io",
                      "batch", "autoscaling", "scheduling.k8s.io", "node.k8s.io", "certificates.k8s.io",
                      "admissionregistration.k8s.io", "flowcontrol.apiserver.k8s.io"}
