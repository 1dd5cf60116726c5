"""Schemas of small core/v1 and metav1 structs several kinds embed."""

from __future__ import annotations

from kplane.apimachinery.typeschema import META, integer, obj, string, timestamp

OBJECT_REFERENCE = obj(
    "ObjectReference contains enough information to let you inspect or modify the referred "
    "object.", {
    'apiVersion': string("API version of the referent."),
    'fieldPath': string(
        "If referring to a piece of an object instead of an entire object, this string should contain "
        "a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]."),
    'kind': string("Kind of the referent."),
    'name': string("Name of the referent."),
    'namespace': string("Namespace of the referent."),
    'resourceVersion': string("Specific resourceVersion to which this reference is made, if any."),
    'uid': string("UID of the referent."),
}, map_type="atomic", name="io.k8s.api.core.v1.ObjectReference")

LOCAL_OBJECT_REFERENCE = obj(
    "LocalObjectReference contains enough information to let you locate the referenced object "
    "inside the same namespace.", {
    'name': string(
        "Name of the referent. This field is effectively required, but due to backwards compatibility "
        "is allowed to be empty."),
}, map_type="atomic", name="io.k8s.api.core.v1.LocalObjectReference")

EVENT_SOURCE = obj("EventSource contains information for an event.", {
    'component': string("Component from which the event is generated."),
    'host': string("Node name on which the event is generated."),
}, name="io.k8s.api.core.v1.EventSource")

CONDITION = obj("Condition contains details for one aspect of the current state of this API Resource.", {
    'lastTransitionTime': timestamp(
        "lastTransitionTime is the last time the condition transitioned from one status to another. "
        "This should be when the underlying condition changed."),
    'message': string(
        "message is a human readable message indicating details about the transition. This may be an "
        "empty string."),
    'observedGeneration': integer(
        "observedGeneration represents the .metadata.generation that the condition was set based "
        "upon. For instance, if .metadata.generation is currently 12, but the "
        ".status.conditions[x].observedGeneration is 9, the condition is out of date with respect to "
        "the current state of the instance.", fmt="int64"),
    'reason': string(
        "reason contains a programmatic identifier indicating the reason for the condition's last "
        "transition. Producers of specific condition types may define expected values and meanings "
        "for this field, and whether the values are considered a guaranteed API."),
    'status': string("status of the condition, one of True, False, Unknown."),
    'type': string("type of condition in CamelCase or in foo.example.com/CamelCase."),
}, required=['lastTransitionTime', 'message', 'reason', 'status', 'type'], name=META + "Condition")
