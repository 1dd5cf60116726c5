"""Events: core/v1 Event and events.k8s.io/v1 Event, one storage.

Both versions live under /registry/events; the stored form is the core/v1
shape. events.k8s.io/v1 renames fields (note ⇄ message, regarding ⇄
involvedObject, reportingController ⇄ reportingComponent, deprecated* ⇄ the
old count/source/timestamps) and converts through to_storage/from_storage.

The core/v1 API validates leniently (legacyValidateEvent) for old clients;
events.k8s.io/v1 adds the strict checks of ValidateEventCreate.
"""

from __future__ import annotations

from typing import Any

from kplane.apimachinery.errors import Cause, field_invalid, field_required
from kplane.apimachinery.table import since
from kplane.apimachinery.typeschema import described, integer, kind_schema, obj, string, timestamp
from kplane.apimachinery.validation import is_dns1123_subdomain, is_qualified_name
from kplane.apiserver.resource import Column, Obj, ResourceDef
from kplane.controlplane.types.checks import immutable
from kplane.controlplane.types.common import EVENT_SOURCE, OBJECT_REFERENCE
from kplane.controlplane.types.printing import NAME_DOC, name_of

CORE_EVENT_SERIES = obj(
    "EventSeries contain information on series of events, i.e. thing that was/is happening "
    "continuously for some time.", {
    'count': integer("Number of occurrences in this series up to the last heartbeat time"),
    'lastObservedTime': timestamp("Time of the last occurrence observed", micro=True),
}, name="io.k8s.api.core.v1.EventSeries")

CORE_EVENT = kind_schema(
    "Event is a report of an event somewhere in the cluster. Events have a limited retention time "
    "and triggers and messages may evolve with time.", {
    'action': string("What action was taken/failed regarding to the Regarding object."),
    'count': integer("The number of times this event has occurred."),
    'eventTime': timestamp("Time when this Event was first observed.", micro=True),
    'firstTimestamp': timestamp(
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    'involvedObject': described(OBJECT_REFERENCE, "The object that this event is about."),
    'lastTimestamp': timestamp("The time at which the most recent occurrence of this event was recorded."),
    'message': string("A human-readable description of the status of this operation."),
    'reason': string(
        "This should be a short, machine understandable string that gives the reason for the "
        "transition into the object's current status."),
    'related': described(OBJECT_REFERENCE, "Optional secondary object for more complex actions."),
    'reportingComponent': string(
        "Name of the controller that emitted this Event, e.g. `kubernetes.io/kubelet`."),
    'reportingInstance': string("ID of the controller instance, e.g. `kubelet-xyzf`."),
    'series': described(
        CORE_EVENT_SERIES,
        "Data about the Event series this event represents or nil if it's a singleton Event."),
    'source': described(
        EVENT_SOURCE,
        "The component reporting this event. Should be a short machine understandable string."),
    'type': string("Type of this event (Normal, Warning), new types could be added in the future"),
}, required=['metadata', 'involvedObject'])

EVENT_SERIES = obj(
    "EventSeries contain information on series of events, i.e. thing that was/is happening "
    "continuously for some time. How often to update the EventSeries is up to the event "
    "reporters.", {
    'count': integer("count is the number of occurrences in this series up to the last heartbeat time."),
    'lastObservedTime': timestamp(
        "lastObservedTime is the time when last Event from the series was seen before last heartbeat.",
        micro=True),
}, required=['count', 'lastObservedTime'], name="io.k8s.api.events.v1.EventSeries")

EVENT = kind_schema(
    "Event is a report of an event somewhere in the cluster. It generally denotes some state "
    "change in the system.", {
    'action': string(
        "action is what action was taken/failed regarding to the regarding object. It is "
        "machine-readable."),
    'deprecatedCount': integer(
        "deprecatedCount is the deprecated field assuring backward compatibility with core.v1 Event "
        "type."),
    'deprecatedFirstTimestamp': timestamp(
        "deprecatedFirstTimestamp is the deprecated field assuring backward compatibility with "
        "core.v1 Event type."),
    'deprecatedLastTimestamp': timestamp(
        "deprecatedLastTimestamp is the deprecated field assuring backward compatibility with core.v1 "
        "Event type."),
    'deprecatedSource': described(
        EVENT_SOURCE,
        "deprecatedSource is the deprecated field assuring backward compatibility with core.v1 Event type."),
    'eventTime': timestamp("eventTime is the time when this Event was first observed. It is required.",
                           micro=True),
    'note': string(
        "note is a human-readable description of the status of this operation. Maximal length of the "
        "note is 1kB, but libraries should be prepared to handle values up to 64kB."),
    'reason': string("reason is why the action was taken. It is human-readable."),
    'regarding': described(OBJECT_REFERENCE, "regarding contains the object this Event is about."),
    'related': described(OBJECT_REFERENCE, "Optional secondary object for more complex actions."),
    'reportingController': string(
        "reportingController is the name of the controller that emitted this Event, e.g. "
        "`kubernetes.io/kubelet`. This field cannot be empty for new Events."),
    'reportingInstance': string(
        "reportingInstance is the ID of the controller instance, e.g. `kubelet-xyzf`. This field "
        "cannot be empty for new Events and it can have at most 128 characters."),
    'series': described(
        EVENT_SERIES,
        "series is data about the Event series this event represents or nil if it's a singleton Event."),
    'type': string(
        "type is the type of this event (Normal, Warning), new types could be added in the future. It "
        "is machine-readable."),
}, required=['eventTime'])

# Field limits of pkg/apis/core/validation/events.go.
REPORTING_INSTANCE_LIMIT = 128
ACTION_LIMIT = 128
REASON_LIMIT = 128
NOTE_LIMIT = 1024

# ---- conversion -------------------------------------------------------------------------------

# events.k8s.io/v1 name -> core/v1 name, for the fields that were renamed.
_RENAMED = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
_SAME = ("metadata", "eventTime", "series", "related", "action", "reason", "type", "reportingInstance")
_CORE_TO_EVENTS = {v: k for k, v in _RENAMED.items()}


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == 0


def to_core(event: Obj) -> Obj:
    """events.k8s.io/v1 Event -> core/v1 Event (the stored form), empty fields left out."""
    out: Obj = {"kind": "Event", "apiVersion": "v1"}
    for key in _SAME:
        if not _empty(event.get(key)):
            out[key] = event[key]
    for new, old in _RENAMED.items():
        if not _empty(event.get(new)):
            out[old] = event[new]
    out.setdefault("involvedObject", {})
    return out


def from_core(event: Obj) -> Obj:
    """core/v1 Event -> events.k8s.io/v1 Event, serialized like Go does (zero structs and times kept)."""
    out: Obj = {"kind": "Event", "apiVersion": "events.k8s.io/v1"}
    for key in _SAME:
        if not _empty(event.get(key)):
            out[key] = event[key]
    for old, new in _CORE_TO_EVENTS.items():
        if not _empty(event.get(old)):
            out[new] = event[old]
    # Non-pointer structs and metav1.Time are never omitted by encoding/json.
    out.setdefault("eventTime", None)
    out.setdefault("regarding", {})
    out.setdefault("deprecatedSource", {})
    out.setdefault("deprecatedFirstTimestamp", None)
    out.setdefault("deprecatedLastTimestamp", None)
    return out


def core_to_storage(event: Obj) -> Obj:
    return {k: v for k, v in event.items() if k in ("kind", "apiVersion", "involvedObject") or not _empty(v)}


def core_from_storage(event: Obj) -> Obj:
    """The core/v1 wire form: zero structs, times and reportingComponent/Instance are always present."""
    out = dict(event)
    out.setdefault("involvedObject", {})
    out.setdefault("source", {})
    for key in ("firstTimestamp", "lastTimestamp", "eventTime"):
        out.setdefault(key, None)
    out.setdefault("reportingComponent", "")
    out.setdefault("reportingInstance", "")
    return out


# ---- validation -------------------------------------------------------------------------------


def _legacy_validate(event: Obj, reporting_field: str) -> list[Cause]:
    """legacyValidateEvent: the checks every Event passes, whatever API it came through."""
    causes: list[Cause] = []
    namespace = (event.get("metadata") or {}).get("namespace") or ""
    involved_ns = (event.get("involvedObject") or {}).get("namespace") or ""
    mismatch = field_invalid("involvedObject.namespace", involved_ns, "does not match event.namespace")
    if not event.get("eventTime"):
        # Old-style events: the namespaces must agree ("default" stands in for a cluster-scoped object).
        expected = (involved_ns,) if involved_ns else ("", "default")
        if namespace not in expected:
            causes.append(mismatch)
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            causes.append(mismatch)
        controller = event.get("reportingComponent") or ""
        if not controller:
            causes.append(field_required(reporting_field))
        causes += [field_invalid(reporting_field, controller, m) for m in is_qualified_name(controller)]
        causes += _required_and_short(event, "reportingInstance", REPORTING_INSTANCE_LIMIT)
        causes += _required_and_short(event, "action", ACTION_LIMIT)
        causes += _required_and_short(event, "reason", REASON_LIMIT)
        if len(event.get("message") or "") > NOTE_LIMIT:
            causes.append(field_invalid("message", "", f"can have at most {NOTE_LIMIT} characters"))
    causes += [field_invalid("namespace", namespace, m) for m in is_dns1123_subdomain(namespace)]
    return causes


def _required_and_short(event: Obj, key: str, limit: int) -> list[Cause]:
    value = event.get(key) or ""
    causes: list[Cause] = [] if value else [field_required(key)]
    if len(value) > limit:
        causes.append(field_invalid(key, "", f"can have at most {limit} characters"))
    return causes


def _validate_series(event: Obj) -> list[Cause]:
    series = event.get("series")
    if series is None:
        return []
    causes: list[Cause] = []
    if (series.get("count") or 0) < 2:
        causes.append(field_invalid("series.count", "", "should be at least 2"))
    if not series.get("lastObservedTime"):
        causes.append(field_required("series.lastObservedTime"))
    return causes


def validate_core(event: Obj) -> list[Cause]:
    return _legacy_validate(event, "reportingComponent")


def validate_events_v1(event: Obj) -> list[Cause]:
    """ValidateEventCreate for events.k8s.io/v1: legacy checks plus the new API's requirements."""
    core = to_core(event)
    causes = _legacy_validate(core, "reportingController") + _validate_series(core)
    if not core.get("eventTime"):
        causes.append(field_required("eventTime"))
    if core.get("type") not in ("Normal", "Warning"):
        causes.append(field_invalid("type", "", f"has invalid value: {core.get('type') or ''}"))
    for old in ("firstTimestamp", "lastTimestamp", "count", "source"):
        new = _CORE_TO_EVENTS[old]
        if not _empty(core.get(old)) and core.get(old) != {"component": "", "host": ""}:
            causes.append(field_invalid(new, "", "needs to be unset"))
    return causes


def validate_events_v1_update(new: Obj, old: Obj) -> list[Cause]:
    """ValidateEventUpdate for events.k8s.io/v1: only the series may change."""
    n, o = to_core(new), to_core(old)
    causes = _validate_series(n) if n.get("series") != o.get("series") else []
    for key in ("involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp", "count",
                "type", "eventTime", "action", "related", "reportingComponent", "reportingInstance"):
        # Upstream reports these with the internal type's field names.
        path = "reportingController" if key == "reportingComponent" else key
        rendered = None if _scalar(n.get(key)) else '"object"'
        causes += immutable(n.get(key), o.get(key), path, rendered=rendered)
    return causes


def _scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list))


# ---- printing ---------------------------------------------------------------------------------


def _first_seen(event: Obj) -> str:
    return since(event.get("firstTimestamp") or event.get("eventTime"))


def _last_seen(event: Obj) -> str:
    if event.get("series"):
        return since(event["series"].get("lastObservedTime"))
    return since(event.get("lastTimestamp")) if event.get("lastTimestamp") else _first_seen(event)


def _count(event: Obj) -> int:
    if event.get("series"):
        return event["series"].get("count") or 0
    return event.get("count") or 1  # singleton events of the new API have no count


def _object(event: Obj) -> str:
    ref = event.get("involvedObject") or {}
    kind = (ref.get("kind") or "").lower()
    return f"{kind}/{ref['name']}" if ref.get("name") else kind


def _source(event: Obj) -> str:
    """formatEventSource: component (or reporting controller), then host (or reporting instance)."""
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    instance = source.get("host") or event.get("reportingInstance") or ""
    return f"{component}, {instance}" if instance else component


def _core_columns() -> list[Column]:
    docs = {k: v.get("description", "") for k, v in CORE_EVENT["properties"].items()}
    field_path_doc = OBJECT_REFERENCE["properties"]["fieldPath"]["description"]
    return [
        Column("Last Seen", "string", _last_seen, description=docs["lastTimestamp"]),
        Column("Type", "string", lambda e: e.get("type") or "", description=docs["type"]),
        Column("Reason", "string", lambda e: e.get("reason") or "", description=docs["reason"]),
        Column("Object", "string", _object, description=docs["involvedObject"]),
        Column("Subobject", "string", lambda e: (e.get("involvedObject") or {}).get("fieldPath") or "",
               description=field_path_doc, priority=1),
        Column("Source", "string", _source, description=docs["source"], priority=1),
        Column("Message", "string", lambda e: (e.get("message") or "").strip(), description=docs["message"]),
        Column("First Seen", "string", _first_seen, description=docs["firstTimestamp"], priority=1),
        Column("Count", "string", _count, description=docs["count"], priority=1),
        Column("Name", "string", name_of, format="name", description=NAME_DOC, priority=1),
    ]


def _via_core(column: Column) -> Column:
    """The same column for an events.k8s.io/v1 object (upstream prints both from the internal type)."""
    value = column.value
    return Column(column.name, column.type, lambda e: value(to_core(e)), format=column.format,
                  description=column.description, priority=column.priority)


def _source_selector(event: Obj) -> str:
    return (event.get("source") or {}).get("component") or event.get("reportingComponent") or ""


def _core_field_selectors() -> dict[str, Any]:
    selectors: dict[str, Any] = {
        f"involvedObject.{f}": (lambda e, f=f: (e.get("involvedObject") or {}).get(f) or "")
        for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")}
    selectors.update({
        "reason": lambda e: e.get("reason") or "",
        "reportingComponent": lambda e: e.get("reportingComponent") or "",
        "source": _source_selector,
        "type": lambda e: e.get("type") or "",
    })
    return selectors


def _events_v1_field_selectors() -> dict[str, Any]:
    selectors = {f"regarding.{f}": (lambda e, f=f: (e.get("regarding") or {}).get(f) or "")
                 for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")}
    selectors.update({
        "reason": lambda e: e.get("reason") or "",
        "reportingController": lambda e: e.get("reportingController") or "",
        "source": lambda e: _source_selector(to_core(e)),
        "type": lambda e: e.get("type") or "",
    })
    return selectors


def resources() -> list[ResourceDef]:
    core_columns = _core_columns()
    return [
        ResourceDef(
            group="", version="v1", kind="Event", plural="events", short_names=["ev"],
            schema=CORE_EVENT, openapi_name="io.k8s.api.core.v1.Event",
            columns=core_columns, field_selectors=_core_field_selectors(),
            validate_create=validate_core, validate_update=lambda new, _old: validate_core(new),
            to_storage=core_to_storage, from_storage=core_from_storage,
        ),
        ResourceDef(
            group="events.k8s.io", version="v1", kind="Event", plural="events", short_names=["ev"],
            schema=EVENT, openapi_name="io.k8s.api.events.v1.Event", storage_resource="events",
            columns=[_via_core(c) for c in core_columns], field_selectors=_events_v1_field_selectors(),
            validate_create=validate_events_v1, validate_update=validate_events_v1_update,
            to_storage=to_core, from_storage=from_core,
        ),
    ]
