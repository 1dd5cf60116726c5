"""coordination.k8s.io/v1 Lease."""

from __future__ import annotations

from kplane.apimachinery.errors import Cause, field_forbidden, field_invalid, field_not_supported
from kplane.apimachinery.typeschema import described, integer, kind_schema, obj, string, timestamp
from kplane.apimachinery.validation import is_qualified_name
from kplane.apiserver.resource import Column, Obj, ResourceDef
from kplane.controlplane.types.printing import age_column, name_column

LEASE_SPEC = obj("LeaseSpec is a specification of a Lease.", {
    'acquireTime': timestamp("acquireTime is a time when the current lease was acquired.", micro=True),
    'holderIdentity': string(
        "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader "
        "Election is used, the holder identity must be equal to the elected "
        "LeaseCandidate.metadata.name field."),
    'leaseDurationSeconds': integer(
        "leaseDurationSeconds is a duration that candidates for a lease need to wait to force acquire "
        "it. This is measured against the time of last observed renewTime."),
    'leaseTransitions': integer("leaseTransitions is the number of transitions of a lease between holders."),
    'preferredHolder': string(
        "preferredHolder signals to a lease holder that the lease has a more optimal holder and "
        "should be given up. This field can only be set if Strategy is also set."),
    'renewTime': timestamp(
        "renewTime is a time when the current holder of a lease has last updated the lease.", micro=True),
    'strategy': string(
        "strategy indicates the strategy for picking the leader for coordinated leader election. If "
        "the field is not specified, there is no active coordination for this lease. (Alpha) Using "
        "this field requires the CoordinatedLeaderElection feature gate to be enabled."),
}, name="io.k8s.api.coordination.v1.LeaseSpec")

LEASE = kind_schema("Lease defines a lease concept.", {
    'spec': described(LEASE_SPEC, "spec contains the specification of the Lease. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status"),
})

HOLDER_DOC = ("holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader "
              "Election is used, the holder identity must be equal to the elected "
              "LeaseCandidate.metadata.name field.")
OLDEST_EMULATION_VERSION = "OldestEmulationVersion"


def _validate_strategy(strategy: str, path: str) -> list[Cause]:
    # Unprefixed strategies are Kubernetes-defined; custom ones must be qualified names.
    if "/" not in strategy:
        if strategy != OLDEST_EMULATION_VERSION:
            return [field_not_supported(path, strategy, [OLDEST_EMULATION_VERSION])]
        return []
    return [field_invalid(path, strategy, m) for m in is_qualified_name(strategy)]


def validate(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        causes.append(field_invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        causes.append(field_invalid("spec.leaseTransitions", transitions,
                                    "must be greater than or equal to 0"))
    if spec.get("strategy") is not None:
        causes += _validate_strategy(spec["strategy"], "spec.strategy")
    if spec.get("preferredHolder") and not spec.get("strategy"):
        causes.append(field_forbidden("spec.preferredHolder",
                                      "may only be specified if `strategy` is defined"))
    return causes


def _holder(obj: Obj) -> str:
    return (obj.get("spec") or {}).get("holderIdentity") or ""


def resources() -> list[ResourceDef]:
    return [ResourceDef(
        group="coordination.k8s.io", version="v1", kind="Lease", plural="leases",
        schema=LEASE, openapi_name="io.k8s.api.coordination.v1.Lease",
        columns=[name_column(), Column("Holder", "string", _holder, description=HOLDER_DOC), age_column()],
        validate_create=validate, validate_update=lambda new, _old: validate(new),
        allow_create_on_update=True,  # as leaseStrategy: a PUT may create one
    )]
