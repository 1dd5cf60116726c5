"""core/v1 Namespace (cluster-scoped; /status and /finalize subresources).

spec.finalizers can only be changed through /finalize: a plain update keeps
the stored finalizers, as upstream's namespaceStrategy.PrepareForUpdate does.
"""

from __future__ import annotations

from kplane.apimachinery.errors import Cause, field_invalid
from kplane.apimachinery.typeschema import array, described, kind_schema, obj, string, timestamp
from kplane.apimachinery.validation import is_qualified_name
from kplane.apiserver.resource import Column, Obj, ResourceDef
from kplane.controlplane.types.printing import age_column, name_column

NAMESPACE_SPEC = obj("NamespaceSpec describes the attributes on a Namespace.", {
    'finalizers': array(string(),
        "Finalizers is an opaque list of values that must be empty to permanently remove object from "
        "storage.", list_type="atomic"),
}, name="io.k8s.api.core.v1.NamespaceSpec")

NAMESPACE_CONDITION = obj("NamespaceCondition contains details about state of namespace.", {
    'lastTransitionTime': timestamp("Last time the condition transitioned from one status to another."),
    'message': string("Human-readable message indicating details about last transition."),
    'reason': string("Unique, one-word, CamelCase reason for the condition's last transition."),
    'status': string("Status of the condition, one of True, False, Unknown."),
    'type': string("Type of namespace controller condition."),
}, required=['status', 'type'], name="io.k8s.api.core.v1.NamespaceCondition")

NAMESPACE_STATUS = obj("NamespaceStatus is information about the current status of a Namespace.", {
    'conditions': array(NAMESPACE_CONDITION,
        "Represents the latest available observations of a namespace's current state.",
        merge_key="type", strategy="merge", list_type="map", map_keys=['type']),
    'phase': string("Phase is the current lifecycle phase of the namespace."),
}, name="io.k8s.api.core.v1.NamespaceStatus")

NAMESPACE = kind_schema("Namespace provides a scope for Names. Use of multiple namespaces is optional.", {
    "spec": described(NAMESPACE_SPEC, "Spec defines the behavior of the Namespace. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status"),
    "status": described(NAMESPACE_STATUS, "Status describes the current status of a Namespace. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status"),
})

FINALIZER_KUBERNETES = "kubernetes"
# Finalizer names that need no domain prefix (helper.IsStandardFinalizerName).
_STANDARD_FINALIZERS = {FINALIZER_KUBERNETES, "orphan", "foregroundDeletion"}
# The immutable label every namespace carries with its own name (SetDefaults_Namespace).
NAME_LABEL = "kubernetes.io/metadata.name"


def _default(obj: Obj) -> None:
    meta = obj.setdefault("metadata", {})
    if meta.get("name"):
        labels = meta.get("labels") or {}
        labels[NAME_LABEL] = meta["name"]
        meta["labels"] = labels


def prepare_create(obj: Obj) -> None:
    _default(obj)
    obj["status"] = {"phase": "Active"}
    spec = obj.get("spec") or {}
    finalizers = list(spec.get("finalizers") or [])
    if FINALIZER_KUBERNETES not in finalizers:
        finalizers.append(FINALIZER_KUBERNETES)
    spec["finalizers"] = finalizers
    obj["spec"] = spec


def prepare_update(new: Obj, old: Obj) -> None:
    _default(new)
    spec = new.get("spec") or {}
    old_finalizers = (old.get("spec") or {}).get("finalizers")
    if old_finalizers is None:
        spec.pop("finalizers", None)
    else:
        spec["finalizers"] = list(old_finalizers)
    new["spec"] = spec
    if "status" in old:
        new["status"] = old["status"]


_NOT_QUALIFIED = "name is neither a standard finalizer name nor is it fully qualified"


def validate(obj: Obj) -> list[Cause]:
    causes: list[Cause] = []
    for i, name in enumerate((obj.get("spec") or {}).get("finalizers") or []):
        path = f"spec.finalizers[{i}]"
        causes += [field_invalid(path, name, m) for m in is_qualified_name(name)]
        if "/" not in name and name not in _STANDARD_FINALIZERS:
            causes.append(field_invalid(path, name, _NOT_QUALIFIED))
    return causes


def _phase(obj: Obj) -> str:
    return (obj.get("status") or {}).get("phase") or ""


def resources() -> list[ResourceDef]:
    return [ResourceDef(
        group="", version="v1", kind="Namespace", plural="namespaces", namespaced=False,
        short_names=["ns"], subresources=["status", "finalize"], has_status=True, generation=False,
        # Upstream's namespace storage has no DeleteCollection (a collection DELETE answers 405).
        verbs=["create", "delete", "get", "list", "patch", "update", "watch"],
        schema=NAMESPACE, openapi_name="io.k8s.api.core.v1.Namespace", name_validation="label",
        columns=[name_column(), Column("Status", "string", _phase, description="The status of the namespace"),
                 age_column()],
        # "name" is the pre-metadata.name spelling upstream still accepts for namespaces.
        field_selectors={"status.phase": _phase, "name": lambda o: (o.get("metadata") or {}).get("name", "")},
        prepare_create=prepare_create, prepare_update=prepare_update,
        validate_create=validate, validate_update=lambda new, _old: validate(new),
    )]
