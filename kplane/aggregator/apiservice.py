"""The APIService type (apiregistration.k8s.io/v1): schema, defaults,
validation (kube-aggregator's ValidateAPIService), Table columns, condition
helpers and the discovery ordering of APIServices (SortedByGroupAndVersion)."""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Iterable
from typing import Any

from kplane.apimachinery import errors
from kplane.apimachinery.errors import Cause
from kplane.apimachinery.meta import now_rfc3339
from kplane.apimachinery.table import age
from kplane.apimachinery.typeschema import described, named
from kplane.apimachinery.validation import is_dns1035_label, is_dns1123_subdomain, validate_path_segment_name
from kplane.apimachinery.versions import compare_kube_aware_version_strings
from kplane.apiserver.resource import Column, Obj, ResourceDef

GROUP = "apiregistration.k8s.io"
VERSION = "v1"
AVAILABLE = "Available"

LOCAL_REASON = "Local"
LOCAL_MESSAGE = "Local APIServices are always available"
_V1 = "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1."  # upstream's OpenAPI definition names


def _s(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _i(description: str) -> dict[str, Any]:
    return {"type": "integer", "format": "int32", "description": description}


_SERVICE_REFERENCE = named(_V1 + "ServiceReference", {
    "type": "object",
    "description": "ServiceReference holds a reference to Service.legacy.k8s.io",
    "properties": {
        "name": _s("Name is the name of the service"),
        "namespace": _s("Namespace is the namespace of the service"),
        "port": _i("If specified, the port on the service that hosting webhook. Default to 443 for backward "
                   "compatibility. `port` should be a valid port number (1-65535, inclusive)."),
    },
})

_CONDITION = named(_V1 + "APIServiceCondition", {
    "type": "object",
    "description": "APIServiceCondition describes the state of an APIService at a particular point",
    "required": ["type", "status"],
    "properties": {
        "lastTransitionTime": _s("Last time the condition transitioned from one status to another.",
                                 format="date-time"),
        "message": _s("Human-readable message indicating details about last transition."),
        "reason": _s("Unique, one-word, CamelCase reason for the condition's last transition."),
        "status": _s("Status is the status of the condition. Can be True, False, Unknown."),
        "type": _s("Type is the type of the condition."),
    },
})

SPEC_SCHEMA = named(_V1 + "APIServiceSpec", {
    "type": "object",
    "description": "APIServiceSpec contains information for locating and communicating with a server. Only "
                   "https is supported, though you are able to disable certificate verification.",
    "required": ["groupPriorityMinimum", "versionPriority"],
    "properties": {
        "caBundle": {"type": "string", "format": "byte", "x-kubernetes-list-type": "atomic",
                     "description": "CABundle is a PEM encoded CA bundle which will be used to validate an "
                                    "API server's serving certificate. If unspecified, system trust roots on "
                                    "the apiserver are used."},
        "group": _s("Group is the API group name this server hosts"),
        "groupPriorityMinimum": _i(
            "GroupPriorityMinimum is the priority this group should have at least. Higher priority means "
            "that the group is preferred by clients over lower priority ones. Note that other versions of "
            "this group might specify even higher GroupPriorityMinimum values such that the whole group gets "
            "a higher priority. The primary sort is based on GroupPriorityMinimum, ordered highest number to "
            "lowest (20 before 10). The secondary sort is based on the alphabetical comparison of the name "
            "of the object.  (v1.bar before v1.foo) We'd recommend something like: *.k8s.io (except "
            "extensions) at 18000 and PaaSes (OpenShift, Deis) are recommended to be in the 2000s"),
        "insecureSkipTLSVerify": {"type": "boolean", "description": (
            "InsecureSkipTLSVerify disables TLS certificate verification when communicating with this "
            "server. This is strongly discouraged.  You should use the CABundle instead.")},
        "service": dict(_SERVICE_REFERENCE, description=(
            "Service is a reference to the service for this API server.  It must communicate on port 443. "
            "If the Service is nil, that means the handling for the API groupversion is handled locally on "
            "this server. The call will simply delegate to the normal handler chain to be fulfilled.")),
        "version": _s('Version is the API version this server hosts.  For example, "v1"'),
        "versionPriority": _i(
            "VersionPriority controls the ordering of this API version inside of its group.  Must be "
            "greater than zero. The primary sort is based on VersionPriority, ordered highest to lowest (20 "
            "before 10). Since it's inside of a group, the number can be small, probably in the 10s. In "
            "case of equal version priorities, the version string will be used to compute the order inside "
            "a group. If the version string is \"kube-like\", it will sort above non \"kube-like\" version "
            "strings, which are ordered lexicographically. \"Kube-like\" versions start with a \"v\", then "
            "are followed by a number (the major version), then optionally the string \"alpha\" or "
            "\"beta\" and another number (the minor version). These are sorted first by GA > beta > alpha "
            "(where GA is a version with no suffix such as beta or alpha), and then by comparing major "
            "version, then minor version. An example sorted list of versions: v10, v2, v1, v11beta2, "
            "v10beta3, v3beta1, v12alpha1, v11alpha2, foo1, foo10."),
    },
})

STATUS_SCHEMA = named(_V1 + "APIServiceStatus", {
    "type": "object",
    "description": "APIServiceStatus contains derived information about an API server",
    "properties": {
        "conditions": {"type": "array", "items": _CONDITION,
                       "description": "Current service state of apiService.",
                       "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                       "x-kubernetes-patch-merge-key": "type", "x-kubernetes-patch-strategy": "merge"},
    },
})


_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should "
    "convert recognized schemas to the latest internal value, and may reject unrecognized values. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources")
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer "
    "this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")
_METADATA_DOC = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")


def _schema() -> dict[str, Any]:
    """The kind's schema. metadata stays a plain object: the OpenAPI builder turns it into a
    reference to the shared ObjectMeta definition and the patch code supplies its own."""
    props = {"apiVersion": {"type": "string", "description": _API_VERSION_DOC},
             "kind": {"type": "string", "description": _KIND_DOC},
             "metadata": {"type": "object", "description": _METADATA_DOC},
             "spec": described(SPEC_SCHEMA, "Spec contains information for locating and communicating with a "
                                            "server"),
             "status": described(STATUS_SCHEMA, "Status contains derived information about an API server")}
    return {"type": "object",
            "description": 'APIService represents a server for a particular GroupVersion. Name must be '
                           '"version.group".',
            "properties": props}


# ---- helpers on plain dicts -------------------------------------------------------------------------


def spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def service_ref(obj: Obj) -> Obj | None:
    return spec(obj).get("service") or None


def is_local(obj: Obj) -> bool:
    return service_ref(obj) is None


def get_condition(obj: Obj, ctype: str = AVAILABLE) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def is_available(obj: Obj) -> bool:
    c = get_condition(obj)
    return c is not None and c.get("status") == "True"


def set_condition(obj: Obj, new: Obj) -> None:
    """SetAPIServiceCondition: lastTransitionTime moves only when the status changes."""
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    for c in conditions:
        if c.get("type") == new["type"]:
            if c.get("status") != new["status"]:
                c["status"] = new["status"]
                c["lastTransitionTime"] = new["lastTransitionTime"]
            c["reason"] = new.get("reason", "")
            c["message"] = new.get("message", "")
            return
    conditions.append(dict(new))


def condition(status: str, reason: str, message: str, now: str) -> Obj:
    return {"type": AVAILABLE, "status": status, "lastTransitionTime": now, "reason": reason,
            "message": message}


def name_to_group_version(name: str) -> tuple[str, str]:
    version, _, group = name.partition(".")
    return group, version


def ca_bundle_bytes(obj: Obj) -> bytes:
    raw = spec(obj).get("caBundle") or ""
    if not raw:
        return b""
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return b""


# ---- strategy ---------------------------------------------------------------------------------------


def _defaults(obj: Obj) -> None:
    svc = (obj.get("spec") or {}).get("service")
    if isinstance(svc, dict) and svc.get("port") is None:
        svc["port"] = 443  # SetDefaults_ServiceReference


def prepare_create(obj: Obj) -> None:
    """The strategy's PrepareForCreate: a new APIService's status is its controller's to set, so
    whatever was sent is dropped; a local one is available from the start."""
    _defaults(obj)
    obj["status"] = {}
    if not (obj.get("spec") or {}).get("service"):
        set_condition(obj, condition("True", LOCAL_REASON, LOCAL_MESSAGE, now_rfc3339()))


def prepare_update(new: Obj, old: Obj) -> None:
    _defaults(new)


def validate(obj: Obj) -> list[Cause]:
    """ValidateAPIService (without ObjectMeta, which the registry validates)."""
    s = obj.get("spec")
    if not isinstance(s, dict):
        s = {}
    group = s.get("group") or ""
    version = s.get("version") or ""
    causes: list[Cause] = []
    if not isinstance(group, str) or not isinstance(version, str):
        return [errors.field_invalid("spec", "object", "group and version must be strings")]
    name = (obj.get("metadata") or {}).get("name") or ""
    required = f"{version}.{group}"
    if name and not validate_path_segment_name(name, False) and name != required:
        causes.append(errors.Cause("FieldValueInvalid",
                                   f'Invalid value: "{name}": must be `spec.version+"."+spec.group`: '
                                   f'"{required}"', "metadata.name"))
    if not group and version != "v1":
        causes.append(errors.field_required("spec.group", "Required value: only v1 may have an empty group "
                                                          "and it better be legacy kube"))
    if group:
        for msg in is_dns1123_subdomain(group):
            causes.append(errors.field_invalid("spec.group", group, msg))
    for msg in is_dns1035_label(version):
        causes.append(errors.field_invalid("spec.version", version, msg))
    gpm = _int(s.get("groupPriorityMinimum"))
    if gpm <= 0 or gpm > 20000:
        causes.append(errors.field_invalid("spec.groupPriorityMinimum", gpm,
                                           "must be positive and less than 20000"))
    vp = _int(s.get("versionPriority"))
    if vp <= 0 or vp > 1000:
        causes.append(errors.field_invalid("spec.versionPriority", vp, "must be positive and less than 1000"))
    ca = s.get("caBundle") or ""
    ca_len = len(ca_bundle_bytes(obj)) if ca else 0
    if ca and not ca_len:
        causes.append(errors.field_invalid("spec.caBundle", ca, "must be base64-encoded PEM data"))
    skip = bool(s.get("insecureSkipTLSVerify"))
    svc = s.get("service")
    if svc is None:
        if ca_len:
            causes.append(errors.Cause("FieldValueInvalid",
                                       f'Invalid value: "{ca_len} bytes": local APIServices '
                                       "may not have a caBundle", "spec.caBundle"))
        if skip:
            causes.append(errors.field_invalid("spec.insecureSkipTLSVerify", True,
                                               "local APIServices may not have insecureSkipTLSVerify"))
        return causes
    if not isinstance(svc, dict):
        return causes + [errors.field_invalid("spec.service", "object", "must be an object")]
    if not svc.get("namespace"):
        causes.append(errors.field_required("spec.service.namespace", "Required value"))
    if not svc.get("name"):
        causes.append(errors.field_required("spec.service.name", "Required value"))
    port = svc.get("port")
    if port is not None and (not isinstance(port, int) or not 1 <= port <= 65535):
        causes.append(errors.field_invalid("spec.service.port", port,
                                           "port is not valid: must be between 1 and 65535, inclusive"))
    if skip and ca_len:
        causes.append(errors.field_invalid("spec.insecureSkipTLSVerify", True,
                                           "may not be true if caBundle is present"))
    return causes


def validate_update(new: Obj, old: Obj) -> list[Cause]:
    return validate(new)


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _service_cell(obj: Obj) -> str:
    svc = service_ref(obj)
    return "Local" if svc is None else f"{svc.get('namespace', '')}/{svc.get('name', '')}"


def _available_cell(obj: Obj) -> str:
    c = get_condition(obj)
    if c is None:
        return "Unknown"
    if c.get("status") == "True":
        return "True"
    if c.get("reason"):
        return f"{c.get('status')} ({c['reason']})"
    return str(c.get("status"))


_NAME_DOC = ("Name must be unique within a namespace. Is required when creating resources, although some "
             "resources may allow a client to request the generation of an appropriate name automatically. "
             "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
             "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
_AGE_DOC = ("CreationTimestamp is a timestamp representing the server time when this object was created. "
            "It is not guaranteed to be set in happens-before order across separate operations. Clients may "
            "not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the "
            "system. Read-only. Null for lists. More info: "
            "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")


def _name(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("name", "")


COLUMNS = [
    Column("Name", "string", _name, format="name", description=_NAME_DOC),
    Column("Service", "string", _service_cell,
           description="The reference to the service that hosts this API endpoint."),
    Column("Available", "string", _available_cell, description="Whether this service is available."),
    Column("Age", "string", age, description=_AGE_DOC),
]


def apiservice_def() -> ResourceDef:
    return ResourceDef(
        group=GROUP, version=VERSION, kind="APIService", plural="apiservices", namespaced=False,
        categories=["api-extensions"], subresources=["status"], schema=_schema(),
        openapi_name="io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService",
        columns=COLUMNS, name_validation="path", prepare_create=prepare_create, prepare_update=prepare_update,
        validate_create=validate, validate_update=validate_update,
        # A Go struct upstream: "false" (a string) for insecureSkipTLSVerify is a 400, never stored.
        go_typed=True)


# ---- ordering (apiregistration helpers.SortedByGroupAndVersion) -------------------------------------


def _by_group_priority(a: Obj, b: Obj) -> int:
    pa, pb = _int(spec(a).get("groupPriorityMinimum")), _int(spec(b).get("groupPriorityMinimum"))
    if pa != pb:
        return -1 if pa > pb else 1
    na, nb = _name(a), _name(b)
    return (na > nb) - (na < nb)


def _by_version_priority(a: Obj, b: Obj) -> int:
    pa, pb = _int(spec(a).get("versionPriority")), _int(spec(b).get("versionPriority"))
    if pa != pb:
        return -1 if pa > pb else 1
    c = compare_kube_aware_version_strings(spec(a).get("version", ""), spec(b).get("version", ""))
    return -1 if c > 0 else (1 if c < 0 else 0)


def sorted_by_group_and_version(services: Iterable[Obj]) -> list[list[Obj]]:
    """Groups in discovery order, each a list of its APIServices in version preference order.

    The group's position is that of its APIService with the highest groupPriorityMinimum (ties by
    APIService name); inside a group: versionPriority desc, then kube-aware version order.
    """
    ordered = sorted(services, key=functools.cmp_to_key(_by_group_priority))
    groups: dict[str, list[Obj]] = {}
    for svc in ordered:
        groups.setdefault(spec(svc).get("group", ""), []).append(svc)
    return [sorted(members, key=functools.cmp_to_key(_by_version_priority)) for members in groups.values()]
