"""Decode Kubernetes protobuf request bodies into the dicts the JSON path produces.

A body is the 4-byte magic ``k8s\\x00`` followed by a runtime.Unknown message whose
``raw`` field holds the object encoded with the types' generated.proto descriptors.
kplane only decodes (responses stay JSON); kinds without a descriptor here get 415,
so a client falls back to JSON.

Go's generated marshallers write every non-pointer field, zero or not, so a field
being on the wire says nothing about whether the client set it. The decoded dict
therefore mirrors what the Go server would see: a non-pointer scalar at its zero
value is left out (as JSON ``omitempty`` and the JSON path's defaulting treat it),
a pointer field (``*bool``, ``*int32``, ``*string`` ...) is kept whenever present,
and an empty Time is null (left out). Field numbers follow upstream's generated.proto.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from kplane.apimachinery import errors

MAGIC = b"k8s\x00"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
_JSON_MEDIA = "application/json, application/yaml"

# ---- message descriptors ------------------------------------------------------
#
# message name -> {field number: (json name, type)}. Types:
#   string bytes bool int32 int64      non-pointer scalars: zero value omitted
#   *string *bool *int32 *int64        pointer scalars: kept when present
#   time microtime                     metav1.Time / MicroTime (RFC 3339), empty = omitted
#   intorstr quantity fieldsv1 extra   IntOrString, resource.Quantity, FieldsV1 raw JSON,
#                                      authn/authz ExtraValue (a list of strings)
#   []T                                repeated T
#   map[T]                             map<string, T>
#   Name                               a nested message (kept when present, even if empty)

_OBJECT_REF = {1: ("kind", "string"), 2: ("namespace", "string"), 3: ("name", "string"),
               4: ("uid", "string"), 5: ("apiVersion", "string"), 6: ("resourceVersion", "string"),
               7: ("fieldPath", "string")}

MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    # k8s.io/apimachinery/pkg/runtime (the envelope's runtime.Unknown is read in _envelope)
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    # k8s.io/apimachinery/pkg/apis/meta/v1
    "ObjectMeta": {
        1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"),
        4: ("selfLink", "string"), 5: ("uid", "string"), 6: ("resourceVersion", "string"),
        7: ("generation", "int64"), 8: ("creationTimestamp", "time"), 9: ("deletionTimestamp", "time"),
        10: ("deletionGracePeriodSeconds", "*int64"), 11: ("labels", "map[string]"),
        12: ("annotations", "map[string]"), 13: ("ownerReferences", "[]OwnerReference"),
        14: ("finalizers", "[]string"), 17: ("managedFields", "[]ManagedFieldsEntry"),
    },
    "OwnerReference": {1: ("kind", "string"), 3: ("name", "string"), 4: ("uid", "string"),
                       5: ("apiVersion", "string"), 6: ("controller", "*bool"),
                       7: ("blockOwnerDeletion", "*bool")},
    "ManagedFieldsEntry": {1: ("manager", "string"), 2: ("operation", "string"), 3: ("apiVersion", "string"),
                           4: ("time", "time"), 6: ("fieldsType", "string"), 7: ("fieldsV1", "fieldsv1"),
                           8: ("subresource", "string")},
    "ListMeta": {1: ("selfLink", "string"), 2: ("resourceVersion", "string"), 3: ("continue", "string"),
                 4: ("remainingItemCount", "*int64")},
    "LabelSelector": {1: ("matchLabels", "map[string]"), 2: ("matchExpressions", "[]LabelSelectorRequirement")},
    "LabelSelectorRequirement": {1: ("key", "string"), 2: ("operator", "string"), 3: ("values", "[]string")},
    "Condition": {1: ("type", "string"), 2: ("status", "string"), 3: ("observedGeneration", "int64"),
                  4: ("lastTransitionTime", "time"), 5: ("reason", "string"), 6: ("message", "string")},
    "DeleteOptions": {1: ("gracePeriodSeconds", "*int64"), 2: ("preconditions", "Preconditions"),
                      3: ("orphanDependents", "*bool"), 4: ("propagationPolicy", "*string"),
                      5: ("dryRun", "[]string"),
                      6: ("ignoreStoreReadErrorWithClusterBreakingPotential", "*bool")},
    "Preconditions": {1: ("uid", "*string"), 2: ("resourceVersion", "*string")},
    # k8s.io/api/core/v1
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "map[string]"), 3: ("binaryData", "map[bytes]"),
                  4: ("immutable", "*bool")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "map[bytes]"), 3: ("type", "string"),
               4: ("stringData", "map[string]"), 5: ("immutable", "*bool")},
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec"), 3: ("status", "ServiceStatus")},
    "ServiceSpec": {
        1: ("ports", "[]ServicePort"), 2: ("selector", "map[string]"), 3: ("clusterIP", "string"),
        4: ("type", "string"), 5: ("externalIPs", "[]string"), 7: ("sessionAffinity", "string"),
        8: ("loadBalancerIP", "string"), 9: ("loadBalancerSourceRanges", "[]string"),
        10: ("externalName", "string"), 11: ("externalTrafficPolicy", "string"),
        12: ("healthCheckNodePort", "int32"), 13: ("publishNotReadyAddresses", "bool"),
        14: ("sessionAffinityConfig", "SessionAffinityConfig"), 17: ("ipFamilyPolicy", "*string"),
        18: ("clusterIPs", "[]string"), 19: ("ipFamilies", "[]string"),
        20: ("allocateLoadBalancerNodePorts", "*bool"), 21: ("loadBalancerClass", "*string"),
        22: ("internalTrafficPolicy", "*string"), 23: ("trafficDistribution", "*string"),
    },
    "ServicePort": {1: ("name", "string"), 2: ("protocol", "string"), 3: ("port", "int32"),
                    4: ("targetPort", "intorstr"), 5: ("nodePort", "int32"), 6: ("appProtocol", "*string")},
    "SessionAffinityConfig": {1: ("clientIP", "ClientIPConfig")},
    "ClientIPConfig": {1: ("timeoutSeconds", "*int32")},
    "ServiceStatus": {1: ("loadBalancer", "LoadBalancerStatus"), 2: ("conditions", "[]Condition")},
    "LoadBalancerStatus": {1: ("ingress", "[]LoadBalancerIngress")},
    "LoadBalancerIngress": {1: ("ip", "string"), 2: ("hostname", "string"), 3: ("ipMode", "*string"),
                            4: ("ports", "[]PortStatus")},
    "PortStatus": {1: ("port", "int32"), 2: ("protocol", "string"), 3: ("error", "*string")},
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec"), 3: ("status", "NamespaceStatus")},
    "NamespaceSpec": {1: ("finalizers", "[]string")},
    "NamespaceStatus": {1: ("phase", "string"), 2: ("conditions", "[]NamespaceCondition")},
    "NamespaceCondition": {1: ("type", "string"), 2: ("status", "string"), 4: ("lastTransitionTime", "time"),
                           5: ("reason", "string"), 6: ("message", "string")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 2: ("secrets", "[]ObjectReference"),
                       3: ("imagePullSecrets", "[]LocalObjectReference"),
                       4: ("automountServiceAccountToken", "*bool")},
    "ObjectReference": _OBJECT_REF,
    "LocalObjectReference": {1: ("name", "string")},
    "Endpoints": {1: ("metadata", "ObjectMeta"), 2: ("subsets", "[]EndpointSubset")},
    "EndpointSubset": {1: ("addresses", "[]EndpointAddress"), 2: ("notReadyAddresses", "[]EndpointAddress"),
                       3: ("ports", "[]EndpointPort")},
    "EndpointAddress": {1: ("ip", "string"), 2: ("targetRef", "ObjectReference"), 3: ("hostname", "string"),
                        4: ("nodeName", "*string")},
    "EndpointPort": {1: ("name", "string"), 2: ("port", "int32"), 3: ("protocol", "string"),
                     4: ("appProtocol", "*string")},
    "Event": {
        1: ("metadata", "ObjectMeta"), 2: ("involvedObject", "ObjectReference"), 3: ("reason", "string"),
        4: ("message", "string"), 5: ("source", "EventSource"), 6: ("firstTimestamp", "time"),
        7: ("lastTimestamp", "time"), 8: ("count", "int32"), 9: ("type", "string"),
        10: ("eventTime", "microtime"), 11: ("series", "EventSeries"), 12: ("action", "string"),
        13: ("related", "ObjectReference"), 14: ("reportingComponent", "string"),
        15: ("reportingInstance", "string"),
    },
    "EventSource": {1: ("component", "string"), 2: ("host", "string")},
    "EventSeries": {1: ("count", "int32"), 2: ("lastObservedTime", "microtime")},
    "ResourceQuota": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ResourceQuotaSpec"),
                      3: ("status", "ResourceQuotaStatus")},
    "ResourceQuotaSpec": {1: ("hard", "map[quantity]"), 2: ("scopes", "[]string"),
                          3: ("scopeSelector", "ScopeSelector")},
    "ResourceQuotaStatus": {1: ("hard", "map[quantity]"), 2: ("used", "map[quantity]")},
    "ScopeSelector": {1: ("matchExpressions", "[]ScopedResourceSelectorRequirement")},
    "ScopedResourceSelectorRequirement": {1: ("scopeName", "string"), 2: ("operator", "string"),
                                          3: ("values", "[]string")},
    # k8s.io/api/authentication/v1
    "TokenRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenRequestSpec"),
                     3: ("status", "TokenRequestStatus")},
    "TokenRequestSpec": {1: ("audiences", "[]string"), 3: ("boundObjectRef", "BoundObjectReference"),
                         4: ("expirationSeconds", "*int64")},
    "BoundObjectReference": {1: ("kind", "string"), 2: ("apiVersion", "string"), 3: ("name", "string"),
                             4: ("uid", "string")},
    "TokenRequestStatus": {1: ("token", "string"), 2: ("expirationTimestamp", "time")},
    "TokenReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenReviewSpec"),
                    3: ("status", "TokenReviewStatus")},
    "TokenReviewSpec": {1: ("token", "string"), 2: ("audiences", "[]string")},
    "TokenReviewStatus": {1: ("authenticated", "bool"), 2: ("user", "UserInfo"), 3: ("error", "string"),
                          4: ("audiences", "[]string")},
    "UserInfo": {1: ("username", "string"), 2: ("uid", "string"), 3: ("groups", "[]string"),
                 4: ("extra", "map[extra]")},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta"), 2: ("status", "SelfSubjectReviewStatus")},
    "SelfSubjectReviewStatus": {1: ("userInfo", "UserInfo")},
    # k8s.io/api/authorization/v1
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectAccessReviewSpec"),
                                3: ("status", "SubjectAccessReviewStatus")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                                    2: ("nonResourceAttributes", "NonResourceAttributes")},
    "SubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SubjectAccessReviewSpec"),
                            3: ("status", "SubjectAccessReviewStatus")},
    "SubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                                2: ("nonResourceAttributes", "NonResourceAttributes"), 3: ("user", "string"),
                                4: ("groups", "[]string"), 5: ("extra", "map[extra]"), 6: ("uid", "string")},
    "SubjectAccessReviewStatus": {1: ("allowed", "bool"), 2: ("reason", "string"),
                                  3: ("evaluationError", "string"), 4: ("denied", "bool")},
    "ResourceAttributes": {1: ("namespace", "string"), 2: ("verb", "string"), 3: ("group", "string"),
                           4: ("version", "string"), 5: ("resource", "string"), 6: ("subresource", "string"),
                           7: ("name", "string"), 8: ("fieldSelector", "FieldSelectorAttributes"),
                           9: ("labelSelector", "LabelSelectorAttributes")},
    "FieldSelectorAttributes": {1: ("rawSelector", "string"), 2: ("requirements", "[]FieldSelectorRequirement")},
    "FieldSelectorRequirement": {1: ("key", "string"), 2: ("operator", "string"), 3: ("values", "[]string")},
    "LabelSelectorAttributes": {1: ("rawSelector", "string"), 2: ("requirements", "[]LabelSelectorRequirement")},
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectRulesReviewSpec"),
                               3: ("status", "SubjectRulesReviewStatus")},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "string")},
    "SubjectRulesReviewStatus": {1: ("resourceRules", "[]ResourceRule"), 2: ("nonResourceRules", "[]NonResourceRule"),
                                 3: ("incomplete", "bool"), 4: ("evaluationError", "string")},
    "ResourceRule": {1: ("verbs", "[]string"), 2: ("apiGroups", "[]string"), 3: ("resources", "[]string"),
                     4: ("resourceNames", "[]string")},
    "NonResourceRule": {1: ("verbs", "[]string"), 2: ("nonResourceURLs", "[]string")},
    # k8s.io/api/rbac/v1
    "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule"),
                    3: ("aggregationRule", "AggregationRule")},
    "AggregationRule": {1: ("clusterRoleSelectors", "[]LabelSelector")},
    "PolicyRule": {1: ("verbs", "[]string"), 2: ("apiGroups", "[]string"), 3: ("resources", "[]string"),
                   4: ("resourceNames", "[]string"), 5: ("nonResourceURLs", "[]string")},
    "RoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[]Subject"), 3: ("roleRef", "RoleRef")},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[]Subject"), 3: ("roleRef", "RoleRef")},
    "Subject": {1: ("kind", "string"), 2: ("apiGroup", "string"), 3: ("name", "string"),
                4: ("namespace", "string")},
    "RoleRef": {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")},
    # k8s.io/api/coordination/v1
    "Lease": {1: ("metadata", "ObjectMeta"), 2: ("spec", "LeaseSpec")},
    "LeaseSpec": {1: ("holderIdentity", "*string"), 2: ("leaseDurationSeconds", "*int32"),
                  3: ("acquireTime", "microtime"), 4: ("renewTime", "microtime"),
                  5: ("leaseTransitions", "*int32"), 6: ("strategy", "*string"),
                  7: ("preferredHolder", "*string")},
}

# (apiVersion, kind) -> top-level message. DeleteOptions is accepted under any apiVersion,
# as upstream registers it in every group version.
KINDS: dict[tuple[str, str], str] = {
    **{("v1", k): k for k in ("ConfigMap", "Secret", "Service", "Namespace", "ServiceAccount", "Endpoints",
                              "Event", "ResourceQuota")},
    **{("authentication.k8s.io/v1", k): k for k in ("TokenRequest", "TokenReview", "SelfSubjectReview")},
    # kubectl auth whoami falls back to these; the type is the same in all three versions
    ("authentication.k8s.io/v1beta1", "SelfSubjectReview"): "SelfSubjectReview",
    ("authentication.k8s.io/v1alpha1", "SelfSubjectReview"): "SelfSubjectReview",
    **{("authorization.k8s.io/v1", k): k for k in ("SelfSubjectAccessReview", "SubjectAccessReview",
                                                    "SelfSubjectRulesReview")},
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): "SubjectAccessReview",
    **{("rbac.authorization.k8s.io/v1", k): k for k in ("Role", "ClusterRole", "RoleBinding",
                                                         "ClusterRoleBinding")},
    ("coordination.k8s.io/v1", "Lease"): "Lease",
}
_ANY_VERSION_KINDS = {"DeleteOptions": "DeleteOptions"}

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GO_ZERO_TIME = -62135596800  # 0001-01-01T00:00:00Z in Unix seconds
_VARINT_TYPES = {"bool", "int32", "int64", "*bool", "*int32", "*int64"}


class _Malformed(Exception):
    pass


# ---- wire format ----------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Malformed("unexpected end of data in varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("varint overflow")


def iter_fields(buf: bytes):
    """Yield (field number, wire type, value) over one message; value is int or bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise _Malformed("illegal field number 0")
        if wt == _VARINT:
            val, pos = _varint(buf, pos)
        elif wt == _LEN:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise _Malformed(f"field {num} runs past the end of the data")
            val, pos = buf[pos:pos + n], pos + n
        elif wt in (_I64, _I32):
            size = 8 if wt == _I64 else 4
            if pos + size > end:
                raise _Malformed(f"field {num} runs past the end of the data")
            val, pos = int.from_bytes(buf[pos:pos + size], "little"), pos + size
        else:
            raise _Malformed(f"unsupported wire type {wt} for field {num}")
        yield num, wt, val


def _signed(v: int, bits: int) -> int:
    v &= (1 << 64) - 1
    if v >= 1 << 63:
        v -= 1 << 64
    if bits == 32:
        v = (v + (1 << 31)) % (1 << 32) - (1 << 31)
    return v


def _text(b: bytes) -> str:
    return b.decode("utf-8", errors="replace")  # Go strings hold any bytes; its JSON encoder replaces


# ---- message decoding ------------------------------------------------------------


def _time(data: bytes, micro: bool) -> str | None:
    if not data:
        return None  # Go marshals a zero Time as an empty message; JSON renders it null
    seconds = nanos = 0
    for num, wt, val in iter_fields(data):
        if wt != _VARINT:
            continue
        if num == 1:
            seconds = _signed(val, 64)
        elif num == 2:
            nanos = _signed(val, 32)
    if seconds == _GO_ZERO_TIME and (nanos == 0 or not micro):
        return None  # Go's zero time (0001-01-01) renders as null too
    try:
        t = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise _Malformed(f"timestamp {seconds} is out of range") from None
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if micro:  # MicroTime keeps microseconds; Time keeps whole seconds only
        return f"{text}.{max(nanos, 0) // 1000 % 1000000:06d}Z"
    return text + "Z"


def _int_or_string(data: bytes) -> int | str:
    typ, ival, sval = 0, 0, ""
    for num, wt, val in iter_fields(data):
        if num == 1 and wt == _VARINT:
            typ = _signed(val, 64)
        elif num == 2 and wt == _VARINT:
            ival = _signed(val, 32)
        elif num == 3 and wt == _LEN:
            sval = _text(val)
    return sval if typ == 1 else ival


def _single_string(data: bytes, field: int = 1) -> str:
    out = ""
    for num, wt, val in iter_fields(data):
        if num == field and wt == _LEN:
            out = _text(val)
    return out


def _strings(data: bytes) -> list[str]:
    return [_text(val) for num, wt, val in iter_fields(data) if num == 1 and wt == _LEN]


def _fields_v1(data: bytes) -> Any:
    raw = b""
    for num, wt, val in iter_fields(data):
        if num == 1 and wt == _LEN:
            raw = val
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise _Malformed(f"fieldsV1 is not valid JSON: {e}") from None


def _scalar(typ: str, wt: int, val: Any) -> Any:
    """Decode one value of a non-message type; the wire type must fit it."""
    base = typ.lstrip("*")
    if base in ("bool", "int32", "int64"):
        if wt != _VARINT:
            raise _Malformed(f"wire type {wt} cannot hold a {base}")
        if base == "bool":
            return val != 0
        return _signed(val, 32 if base == "int32" else 64)
    if wt != _LEN:
        raise _Malformed(f"wire type {wt} cannot hold a {base}")
    if base == "string":
        return _text(val)
    if base == "bytes":
        return base64.b64encode(val).decode()
    if base in ("time", "microtime"):
        return _time(val, base == "microtime")
    if base == "intorstr":
        return _int_or_string(val)
    if base == "quantity":
        return _single_string(val) or "0"
    if base == "fieldsv1":
        return _fields_v1(val)
    if base == "extra":
        return _strings(val)
    if base in MESSAGES:
        return decode_message(val, base)
    raise _Malformed(f"no decoder for type {typ}")  # a descriptor bug, not bad input


def _is_zero(typ: str, value: Any) -> bool:
    """A non-pointer field at its Go zero value, which Go cannot tell apart from unset."""
    if typ in ("time", "microtime"):
        return value is None
    if typ == "intorstr":
        return value == 0  # {Type: Int, IntVal: 0}; the string "" is a set value
    return typ in ("string", "bytes", "bool", "int32", "int64") and not value


def decode_message(data: bytes, message: str, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Decode ``data`` as ``message`` into a JSON-shaped dict (merged into ``out`` if given)."""
    fields = MESSAGES[message]
    out = {} if out is None else out
    for num, wt, val in iter_fields(data):
        spec = fields.get(num)
        if spec is None:
            continue  # a field newer than these descriptors: skipped, as Go skips unknown fields
        name, typ = spec
        if typ.startswith("[]"):
            elem = typ[2:]
            items = out.setdefault(name, [])
            if wt == _LEN and elem in _VARINT_TYPES:  # packed repeated scalars
                pos = 0
                while pos < len(val):
                    v, pos = _varint(val, pos)
                    items.append(_scalar(elem, _VARINT, v))
            else:
                items.append(_scalar(elem, wt, val))
        elif typ.startswith("map["):
            if wt != _LEN:
                raise _Malformed(f"map field {name} has wire type {wt}")
            vtyp = typ[4:-1]
            key, value = "", None
            for enum, ewt, evalue in iter_fields(val):
                if enum == 1:
                    key = _scalar("string", ewt, evalue)
                elif enum == 2:
                    value = _scalar(vtyp, ewt, evalue)
            if value is None:
                value = {"string": "", "bytes": "", "quantity": "0", "extra": []}[vtyp]
            out.setdefault(name, {})[key] = value
        elif typ in MESSAGES:
            if wt != _LEN:
                raise _Malformed(f"message field {name} has wire type {wt}")
            existing = out.get(name)
            out[name] = decode_message(val, typ, existing if isinstance(existing, dict) else None)
        else:
            value = _scalar(typ, wt, val)
            if _is_zero(typ, value):
                out.pop(name, None)  # last one wins, and a zero non-pointer value is "unset"
            else:
                out[name] = value
    return out


# ---- the envelope --------------------------------------------------------------------


def decode_k8s_protobuf(body: bytes) -> dict[str, Any]:
    """Decode a ``application/vnd.kubernetes.protobuf`` request body into a JSON-shaped object.

    Raises StatusError 400 for malformed data and 415 for a kind with no descriptor here.
    """
    if not body.startswith(MAGIC):
        raise errors.bad_request("provided data does not appear to be a protobuf message, expected prefix "
                                 "[107 56 115 0]")
    try:
        api_version, kind, raw, encoding, ctype = _envelope(body[len(MAGIC):])
    except _Malformed as e:
        raise errors.bad_request(f"unable to decode protobuf body: {e}") from None
    if not kind:
        raise errors.bad_request("Object 'Kind' is missing in the protobuf body")
    if encoding or ctype not in ("", MEDIA_TYPE):
        raise _unsupported(f"protobuf envelope with contentType {ctype!r} and contentEncoding {encoding!r}")
    message = KINDS.get((api_version, kind)) or _ANY_VERSION_KINDS.get(kind)
    if message is None:
        raise _unsupported(f"{kind} in {api_version or 'an unnamed version'}")
    try:
        obj = decode_message(raw, message)
    except _Malformed as e:
        raise errors.bad_request(f"unable to decode {kind} from protobuf: {e}") from None
    return {"apiVersion": api_version, "kind": kind, **obj}


def _envelope(data: bytes) -> tuple[str, str, bytes, str, str]:
    """runtime.Unknown: typeMeta=1 {apiVersion=1, kind=2}, raw=2, contentEncoding=3, contentType=4."""
    type_meta: dict[str, Any] = {}
    raw, encoding, ctype = b"", "", ""
    for num, wt, val in iter_fields(data):
        if num in (1, 2, 3, 4) and wt != _LEN:
            raise _Malformed(f"runtime.Unknown field {num} has wire type {wt}")
        if num == 1:
            decode_message(val, "TypeMeta", type_meta)
        elif num == 2:
            raw = val
        elif num == 3:
            encoding = _text(val)
        elif num == 4:
            ctype = _text(val)
    return type_meta.get("apiVersion", ""), type_meta.get("kind", ""), raw, encoding, ctype


def _unsupported(what: str) -> errors.StatusError:
    # The wording of upstream's 415 for a resource that has no protobuf form (e.g. a custom
    # resource); client-go answers it by switching that client to JSON.
    return errors.StatusError(415, "UnsupportedMediaType",
                              f"the body of the request was in an unknown format - accepted media types "
                              f"include: {_JSON_MEDIA} (protobuf is not supported for {what})")
