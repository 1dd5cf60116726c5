"""OpenAPI v2 and v3 documents generated from ResourceDefs.

Shaped like kube-apiserver's: one Swagger 2.0 document for /openapi/v2, and for
/openapi/v3 an index plus one OpenAPI 3.0 document per group-version. kubectl
depends on two details: the PATCH/PUT/POST operations list the
`fieldValidation` query parameter and carry `x-kubernetes-group-version-kind`
(server-side field validation is enabled only if they do), and every kind's
schema carries `x-kubernetes-group-version-kind` (`kubectl explain` finds
schemas by it).

Nested types the schema DSL names (`typeschema.named`: ServicePort, ObjectMeta,
IntOrString, ...) are published once each, as upstream's definitions, and
referred to: `$ref` in v2, and in v3 `$ref` alone or, when the field adds a
description or default beside it, wrapped in `allOf` as kube-openapi does
(OpenAPI 3.0 ignores a $ref's siblings). CRD and SDK schemas, which carry no
names, stay inline apart from ObjectMeta.

Generation is deterministic (same defs, same bytes) so documents can be cached
and hashed; nothing here mutates the ResourceDefs' schemas.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from kplane.apimachinery.objectmeta import OBJECT_META as OBJECT_META_SCHEMA
from kplane.apimachinery.typeschema import DEFINITION, INT_OR_STRING, META, definition
from kplane.apiserver.resource import ResourceDef

Schema = dict[str, Any]

OBJECT_META = OBJECT_META_SCHEMA[DEFINITION]  # io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta
LIST_META = META + "ListMeta"
STATUS = META + "Status"
DELETE_OPTIONS = META + "DeleteOptions"
WATCH_EVENT = META + "WatchEvent"
PATCH = META + "Patch"
API_RESOURCE_LIST = META + "APIResourceList"
SCALE = "io.k8s.api.autoscaling.v1.Scale"  # the body of every /scale subresource

_CONVENTIONS = "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should convert "
    "recognized schemas to the latest internal value, and may reject unrecognized values. More info: "
    f"{_CONVENTIONS}#resources")
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer this "
    "from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    f"{_CONVENTIONS}#types-kinds")
_METADATA_DOC = f"Standard object's metadata. More info: {_CONVENTIONS}#metadata"
_LIST_METADATA_DOC = f"Standard list metadata. More info: {_CONVENTIONS}#types-kinds"


# ---- naming -----------------------------------------------------------------------------------


def group_version_path(rdef: ResourceDef) -> str:
    """The /openapi/v3/<path> (and URL prefix) of a def's group-version: api/v1 or apis/<g>/<v>."""
    return f"apis/{rdef.group}/{rdef.version}" if rdef.group else f"api/{rdef.version}"


def schema_name(rdef: ResourceDef) -> str:
    """openapi_name, or upstream's reversed-group naming used for CRDs (com.example.stable.v1.CronTab)."""
    if rdef.openapi_name:
        return rdef.openapi_name
    if not rdef.group:
        return f"io.k8s.api.core.{rdef.version}.{rdef.kind}"
    return ".".join(reversed(rdef.group.split("."))) + f".{rdef.version}.{rdef.kind}"


def _friendly_group(group: str) -> str:
    """Group as upstream spells it in operation IDs: rbac.authorization.k8s.io -> RbacAuthorization."""
    if not group:
        return "Core"
    parts = group.removesuffix(".k8s.io").replace("-", ".").split(".")
    return "".join(p[:1].upper() + p[1:] for p in parts if p)


def _tag(rdef: ResourceDef) -> str:
    friendly = _friendly_group(rdef.group)
    return f"{friendly[:1].lower()}{friendly[1:]}_{rdef.version}"


def _op_prefix(rdef: ResourceDef) -> str:
    return _friendly_group(rdef.group) + rdef.version[:1].upper() + rdef.version[1:]


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


# ---- metav1 schemas (written with "#/<container>/" refs; the container differs in v2 and v3) ----------


def _string(description: str = "", **extra: Any) -> Schema:
    schema: Schema = {"type": "string"}
    if description:
        schema["description"] = description
    schema.update(extra)
    return schema


def _ref(prefix: str, name: str, description: str = "", **extra: Any) -> Schema:
    schema: Schema = {"$ref": prefix + name}
    if description:
        schema["description"] = description
    schema.update(extra)
    return schema


def _meta_schemas(prefix: str, group_versions: list[tuple[str, str]]) -> dict[str, Schema]:
    every_gv = [_gvk(g, v, "") for g, v in group_versions]

    def gvks(kind: str) -> list[dict[str, str]]:
        return [{**gvk, "kind": kind} for gvk in every_gv]

    integer = {"type": "integer"}
    return {
        LIST_META: {
            "description": "ListMeta describes metadata that synthetic resources must have, including lists "
                           "and various status objects. A resource may have only one of {ObjectMeta, "
                           "ListMeta}.",
            "type": "object",
            "properties": {
                "continue": _string("continue may be set if the user set a limit on the number of items "
                                    "returned, and indicates that the server has more data available."),
                "remainingItemCount": {**integer, "format": "int64", "description":
                                       "remainingItemCount is the number of subsequent items in the list "
                                       "which are not included in this list response."},
                "resourceVersion": _string("String that identifies the server's internal version of this "
                                           "object that can be used by clients to determine when objects "
                                           "have changed."),
                "selfLink": _string("Deprecated: selfLink is a legacy read-only field that is no longer "
                                    "populated by the system."),
            },
        },
        STATUS: {
            "description": "Status is a return value for calls that don't return other objects.",
            "type": "object",
            "properties": {
                "apiVersion": _string(_API_VERSION_DOC),
                "code": {**integer, "format": "int32",
                         "description": "Suggested HTTP return code for this status, 0 if not set."},
                "details": _ref(prefix, META + "StatusDetails", "Extended data associated with the reason."),
                "kind": _string(_KIND_DOC),
                "message": _string("A human-readable description of the status of this operation."),
                "metadata": _ref(prefix, LIST_META, _LIST_METADATA_DOC),
                "reason": _string("A machine-readable description of why this operation is in the "
                                  "\"Failure\" status."),
                "status": _string("Status of the operation. One of: \"Success\" or \"Failure\"."),
            },
            "x-kubernetes-group-version-kind": [_gvk("", "v1", "Status")],
        },
        META + "StatusDetails": {
            "description": "StatusDetails is a set of additional properties that MAY be set by the server to "
                           "provide additional information about a response.",
            "type": "object",
            "properties": {
                "causes": {"type": "array", "items": _ref(prefix, META + "StatusCause"),
                           "description": "The Causes array includes more details associated with the "
                                          "StatusReason failure.",
                           "x-kubernetes-list-type": "atomic"},
                "group": _string("The group attribute of the resource associated with the status "
                                 "StatusReason."),
                "kind": _string("The kind attribute of the resource associated with the status "
                                "StatusReason."),
                "name": _string("The name attribute of the resource associated with the status "
                                "StatusReason."),
                "retryAfterSeconds": {**integer, "format": "int32", "description":
                                      "If specified, the time in seconds before the operation should be "
                                      "retried."},
                "uid": _string("UID of the resource."),
            },
        },
        META + "StatusCause": {
            "description": "StatusCause provides more information about an api.Status failure, including "
                           "cases when multiple errors are encountered.",
            "type": "object",
            "properties": {
                "field": _string("The field of the resource that has caused this error, as named by its JSON "
                                 "serialization."),
                "message": _string("A human-readable description of the cause of the error."),
                "reason": _string("A machine-readable description of the cause of the error."),
            },
        },
        DELETE_OPTIONS: {
            "description": "DeleteOptions may be provided when deleting an API object.",
            "type": "object",
            "properties": {
                "apiVersion": _string(_API_VERSION_DOC),
                "dryRun": {"type": "array", "items": {"type": "string", "default": ""},
                           "description": _PARAM_DOCS["dryRun"], "x-kubernetes-list-type": "atomic"},
                "gracePeriodSeconds": {**integer, "format": "int64",
                                       "description": _PARAM_DOCS["gracePeriodSeconds"]},
                "ignoreStoreReadErrorWithClusterBreakingPotential": {
                    "type": "boolean",
                    "description": _PARAM_DOCS["ignoreStoreReadErrorWithClusterBreakingPotential"]},
                "kind": _string(_KIND_DOC),
                "orphanDependents": {"type": "boolean", "description": _PARAM_DOCS["orphanDependents"]},
                "preconditions": _ref(prefix, META + "Preconditions", "Must be fulfilled before a deletion "
                                      "is carried out. If not possible, a 409 Conflict status will be "
                                      "returned."),
                "propagationPolicy": _string(_PARAM_DOCS["propagationPolicy"]),
            },
            "x-kubernetes-group-version-kind": gvks("DeleteOptions"),
        },
        META + "Preconditions": {
            "description": "Preconditions must be fulfilled before an operation (update, delete, etc.) is "
                           "carried out.",
            "type": "object",
            "properties": {"resourceVersion": _string("Specifies the target ResourceVersion"),
                           "uid": _string("Specifies the target UID.")},
        },
        WATCH_EVENT: {
            "description": "Event represents a single event to a watched resource.",
            "type": "object",
            "properties": {
                "object": _ref(prefix, "io.k8s.apimachinery.pkg.runtime.RawExtension",
                               "Object is:\n * If Type is Added or Modified: the new state of the object.\n "
                               "* If Type is Deleted: the state of the object immediately before deletion.\n "
                               "* If Type is Error: *Status is recommended; other types may make sense\n   "
                               "depending on context."),
                "type": {"type": "string", "default": ""},
            },
            "required": ["type", "object"],
            "x-kubernetes-group-version-kind": gvks("WatchEvent"),
        },
        "io.k8s.apimachinery.pkg.runtime.RawExtension": {
            "description": "RawExtension is used to hold extensions in external versions.",
            "type": "object",
        },
        PATCH: {
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH "
                           "request body.",
            "type": "object",
        },
        META + "APIResource": {
            "description": "APIResource specifies the name of a resource and whether it is namespaced.",
            "type": "object",
            "properties": {
                "categories": {"type": "array", "items": {"type": "string", "default": ""},
                               "x-kubernetes-list-type": "atomic",
                               "description": "categories is a list of the grouped resources this resource "
                                              "belongs to (e.g. 'all')"},
                "group": _string("group is the preferred group of the resource."),
                "kind": _string("kind is the kind for the resource (e.g. 'Foo' is the kind for a resource "
                                "'foo')", default=""),
                "name": _string("name is the plural name of the resource.", default=""),
                "namespaced": {"type": "boolean", "default": False,
                               "description": "namespaced indicates if a resource is namespaced or not."},
                "shortNames": {"type": "array", "items": {"type": "string", "default": ""},
                               "x-kubernetes-list-type": "atomic",
                               "description": "shortNames is a list of suggested short names of the "
                                              "resource."},
                "singularName": _string("singularName is the singular name of the resource.", default=""),
                "storageVersionHash": _string("The hash value of the storage version, the version this "
                                              "resource is converted to when written to the data store."),
                "verbs": {"type": "array", "items": {"type": "string", "default": ""},
                          "description": "verbs is a list of supported kube verbs (this includes get, list, "
                                         "watch, create, update, patch, delete, deletecollection, and "
                                         "proxy)"},
                "version": _string("version is the preferred version of the resource."),
            },
            "required": ["name", "singularName", "namespaced", "kind", "verbs"],
        },
        API_RESOURCE_LIST: {
            "description": "APIResourceList is a list of APIResource, it is used to expose the name of the "
                           "resources supported in a specific group and version, and if the resource is "
                           "namespaced.",
            "type": "object",
            "properties": {
                "apiVersion": _string(_API_VERSION_DOC),
                "groupVersion": _string("groupVersion is the group and version this APIResourceList is for.",
                                        default=""),
                "kind": _string(_KIND_DOC),
                "resources": {"type": "array", "items": _ref(prefix, META + "APIResource"),
                              "x-kubernetes-list-type": "atomic",
                              "description": "resources contains the name of the resources and if they are "
                                             "namespaced."},
            },
            "required": ["groupVersion", "resources"],
            "x-kubernetes-group-version-kind": [_gvk("", "v1", "APIResourceList")],
        },
    }


class _Named:
    """The named types one document's schemas use: each published once, every use a reference."""

    def __init__(self, prefix: str, local: dict[str, Schema] | None = None):
        self.prefix = prefix
        self.local = local or {}  # names the defs bring (SDK types), beside typeschema's registry
        self.schemas: dict[str, Schema] = {}

    def _canonical(self, name: str) -> Schema | None:
        return definition(name) or self.local.get(name)

    def inline(self, schema: Any) -> Any:
        """`schema` with every named type below it (not itself) replaced by a reference."""
        if isinstance(schema, list):
            return [self.inline(s) for s in schema]
        if not isinstance(schema, dict):
            return schema
        return {k: self._refer(v) if isinstance(v, dict) else self.inline(v)
                for k, v in schema.items() if k != DEFINITION}

    def _refer(self, schema: Schema) -> Schema:
        name = schema.get(DEFINITION)
        canonical = self._canonical(name) if name else None
        if canonical is None:
            return self.inline(schema)
        self.define(name)
        # What the field says beside the type (its own description, a default) stays with the reference.
        extra = {k: self.inline(v) for k, v in schema.items() if k != DEFINITION and canonical.get(k) != v}
        ref = {"$ref": self.prefix + name}
        return {"allOf": [ref], **extra} if extra else ref

    def define(self, name: str) -> None:
        if name not in self.schemas:
            self.schemas[name] = {}  # taken before recursing: a type may contain itself
            self.schemas[name] = self.inline(self._canonical(name))


def _int_or_string(schema: Schema, v3: bool) -> Schema:
    """IntOrString as upstream publishes it: a string of format int-or-string in v2, oneOf in v3."""
    out: Schema = {"description": schema.get("description", ""), "format": "int-or-string"}
    if v3:
        out["oneOf"] = [{"type": "integer"}, {"type": "string"}]
    else:
        out["type"] = "string"
    return out


def _kind_schema(rdef: ResourceDef, prefix: str) -> Schema:
    """The def's schema with metadata as a reference and its group-version-kind attached."""
    schema = dict(rdef.schema) if rdef.schema else {"type": "object"}
    props = dict(schema.get("properties") or {})
    props["apiVersion"] = props.get("apiVersion") or _string(_API_VERSION_DOC)
    props["kind"] = props.get("kind") or _string(_KIND_DOC)
    meta_doc = (props.get("metadata") or {}).get("description") or _METADATA_DOC
    props["metadata"] = _meta_ref(prefix, OBJECT_META, meta_doc)
    schema["properties"] = dict(sorted(props.items()))
    schema.setdefault("type", "object")
    schema["x-kubernetes-group-version-kind"] = [_gvk(rdef.group, rdef.version, rdef.kind)]
    return schema


def _meta_ref(prefix: str, name: str, description: str) -> Schema:
    # OpenAPI 3.0 ignores siblings of $ref, so v3 wraps the reference in allOf as upstream does.
    if prefix.startswith("#/components/"):
        return {"allOf": [{"$ref": prefix + name}], "default": {}, "description": description}
    return {"$ref": prefix + name, "default": {}, "description": description}


def _list_schema(rdef: ResourceDef, prefix: str) -> Schema:
    return {
        "description": f"{rdef.list_kind} is a list of {rdef.kind}",
        "type": "object",
        "properties": {
            "apiVersion": _string(_API_VERSION_DOC),
            "items": {"type": "array", "items": _ref(prefix, schema_name(rdef)),
                      "description": f"List of {rdef.plural}."},
            "kind": _string(_KIND_DOC),
            "metadata": _meta_ref(prefix, LIST_META, _LIST_METADATA_DOC),
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [_gvk(rdef.group, rdef.version, rdef.list_kind)],
    }


def _definitions(defs: list[ResourceDef], prefix: str,
                 convert: Callable[[Schema], Schema]) -> dict[str, Schema]:
    gvs = sorted({("", "v1")} | {(d.group, d.version) for d in defs})
    out = _meta_schemas(prefix, gvs)
    local: dict[str, Schema] = {}
    for rdef in defs:  # one group-version's names: a name stands for one type, the first def's
        for name, schema in rdef.definitions.items():
            local.setdefault(name, schema)
    named = _Named(prefix, local)
    named.define(OBJECT_META)
    # Subresource registries ("orders/approve") may answer with their parent's kind: a
    # top-level resource's own schema must win, so those are written first and overwritten.
    for rdef in sorted(defs, key=lambda d: "/" not in d.plural):
        out[schema_name(rdef)] = convert(named.inline(_kind_schema(rdef, prefix)))
        if "/" not in rdef.plural:
            out[schema_name(rdef) + "List"] = _list_schema(rdef, prefix)
    if any("scale" in d.subresources for d in defs):
        out.update(_scale_schemas(prefix))
    for name, schema in named.schemas.items():
        if name == INT_OR_STRING:
            out.setdefault(name, _int_or_string(schema, v3=prefix.startswith("#/components/")))
        else:
            out.setdefault(name, convert(schema))
    return dict(sorted(out.items()))


def _scale_schemas(prefix: str) -> dict[str, Schema]:
    """autoscaling/v1 Scale, ScaleSpec and ScaleStatus as kube-apiserver publishes them."""
    spec_doc = f"spec defines the behavior of the scale. More info: {_CONVENTIONS}#spec-and-status."
    status_doc = f"status is the current status of the scale. More info: {_CONVENTIONS}#spec-and-status. Read-only."
    replicas = {"format": "int32", "type": "integer"}
    return {
        SCALE: {"description": "Scale represents a scaling request for a resource.", "type": "object",
                "properties": {"apiVersion": _string(_API_VERSION_DOC), "kind": _string(_KIND_DOC),
                               "metadata": _meta_ref(prefix, OBJECT_META, "Standard object metadata; More info: "
                                                     f"{_CONVENTIONS}#metadata."),
                               "spec": _meta_ref(prefix, SCALE + "Spec", spec_doc),
                               "status": _meta_ref(prefix, SCALE + "Status", status_doc)},
                "x-kubernetes-group-version-kind": [_gvk("autoscaling", "v1", "Scale")]},
        SCALE + "Spec": {"description": "ScaleSpec describes the attributes of a scale subresource.", "type": "object",
                         "properties": {"replicas": {"description": "replicas is the desired number of instances "
                                                     "for the scaled object.", **replicas}}},
        SCALE + "Status": {
            "description": "ScaleStatus represents the current status of a scale subresource.", "type": "object",
            "properties": {
                "replicas": {"description": "replicas is the actual number of observed instances of the scaled "
                                            "object.", **replicas},
                "selector": _string("selector is the label query over pods that should match the replicas count. "
                                    "This is same as the label selector but in the string format to avoid "
                                    "introspection by clients. The string will be in the same format as the "
                                    "query-param syntax. More info about label selectors: "
                                    "https://kubernetes.io/docs/concepts/overview/working-with-objects/"
                                    "labels#label-selectors")},
            "required": ["replicas"]},
    }


# ---- parameters -------------------------------------------------------------------------------

_PARAM_DOCS = {
    "allowWatchBookmarks": "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that "
                           "do not implement bookmarks may ignore this flag and bookmarks are sent at the "
                           "server's discretion. If this is not a watch, this field is ignored.",
    "continue": "The continue option should be set when retrieving more results from the server. Since this "
                "value is server defined, clients may only use the continue value from a previous query "
                "result with identical query parameters (except for the value of continue).",
    "dryRun": "When present, indicates that modifications should not be persisted. An invalid or "
              "unrecognized dryRun directive will result in an error response and no further processing of "
              "the request. Valid values are: - All: all dry run stages will be processed",
    "fieldManager": "fieldManager is a name associated with the actor or entity that is making these "
                    "changes. The value must be less than or 128 characters long, and only contain printable "
                    "characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
    "fieldSelector": "A selector to restrict the list of returned objects by their fields. Defaults to "
                     "everything.",
    "fieldValidation": "fieldValidation instructs the server on how to handle objects in the request "
                       "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: "
                       "This will ignore any unknown fields that are silently dropped from the object, and "
                       "will ignore all but the last duplicate field that the decoder encounters. This is "
                       "the default behavior prior to v1.23. - Warn: This will send a warning via the "
                       "standard warning response header for each unknown field that is dropped from the "
                       "object, and for each duplicate field that is encountered. The request will still "
                       "succeed if there are no other errors, and will only persist the last of any "
                       "duplicate fields. This is the default in v1.23+ - Strict: This will fail the request "
                       "with a BadRequest error if any unknown fields would be dropped from the object, or "
                       "if any duplicate fields are present. The error returned from the server will contain "
                       "all unknown and duplicate fields encountered.",
    "force": "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields "
             "owned by other people. Force flag must be unset for non-apply patch requests.",
    "gracePeriodSeconds": "The duration in seconds before the object should be deleted. Value must be "
                          "non-negative integer. The value zero indicates delete immediately. If this value "
                          "is nil, the default grace period for the specified type will be used. Defaults to "
                          "a per object value if not specified. zero means delete immediately.",
    "ignoreStoreReadErrorWithClusterBreakingPotential":
        "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow "
        "fails with a corrupt object error. A resource is considered corrupt if it can not be retrieved from "
        "the underlying storage successfully because of a) its data can not be transformed e.g. decryption "
        "failure, or b) it fails to decode into an object. NOTE: unsafe deletion ignores finalizer "
        "constraints, skips precondition checks, and removes the object from the storage. WARNING: This may "
        "potentially break the cluster if the workload associated with the resource being unsafe-deleted "
        "relies on normal deletion flow. Use only if you REALLY know what you are doing. The default value "
        "is false, and the user must opt in to enable it",
    "labelSelector": "A selector to restrict the list of returned objects by their labels. Defaults to "
                     "everything.",
    "limit": "limit is a maximum number of responses to return for a list call. If more items exist, the "
             "server will set the `continue` field on the list metadata to a value that can be used with the "
             "same initial query to retrieve the next set of results.",
    "orphanDependents": "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. "
                        "Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer "
                        "will be added to/removed from the object's finalizers list. Either this field or "
                        "PropagationPolicy may be set, but not both.",
    "pretty": "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent "
              "indicates a browser or command-line HTTP tool (curl and wget).",
    "propagationPolicy": "Whether and how garbage collection will be performed. Either this field or "
                         "OrphanDependents may be set, but not both. The default policy is decided by the "
                         "existing finalizer set in the metadata.finalizers and the resource-specific "
                         "default policy. Acceptable values are: 'Orphan' - orphan the dependents; "
                         "'Background' - allow the garbage collector to delete the dependents in the "
                         "background; 'Foreground' - a cascading policy that deletes all dependents in the "
                         "foreground.",
    "resourceVersion": "resourceVersion sets a constraint on what resource versions a request may be served "
                       "from. See "
                       "https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for "
                       "details.\n\nDefaults to unset",
    "resourceVersionMatch": "resourceVersionMatch determines how resourceVersion is applied to list calls. "
                            "It is highly recommended that resourceVersionMatch be set for list calls where "
                            "resourceVersion is set See "
                            "https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions "
                            "for details.\n\nDefaults to unset",
    "sendInitialEvents": "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the "
                         "watch stream will begin with synthetic events to produce the current state of "
                         "objects in the collection. Once all such events have been sent, a synthetic "
                         "\"Bookmark\" event  will be sent.",
    "timeoutSeconds": "Timeout for the list/watch call. This limits the duration of the call, regardless of "
                      "any activity or inactivity.",
    "watch": "Watch for changes to the described resources and return them as a stream of add, update, and "
             "remove notifications. Specify resourceVersion.",
}
_PARAM_TYPES = {"allowWatchBookmarks": "boolean", "force": "boolean", "orphanDependents": "boolean",
                "sendInitialEvents": "boolean", "watch": "boolean",
                "ignoreStoreReadErrorWithClusterBreakingPotential": "boolean",
                "gracePeriodSeconds": "integer", "limit": "integer", "timeoutSeconds": "integer"}

_LIST_PARAMS = ["allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
                "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch"]
_WRITE_PARAMS = ["dryRun", "fieldManager", "fieldValidation"]
_PATCH_PARAMS = ["dryRun", "fieldManager", "fieldValidation", "force"]
_DELETE_PARAMS = ["dryRun", "gracePeriodSeconds", "ignoreStoreReadErrorWithClusterBreakingPotential",
                  "orphanDependents", "propagationPolicy"]
_DELETE_COLLECTION_PARAMS = _DELETE_PARAMS + ["continue", "fieldSelector", "labelSelector", "limit",
                                              "resourceVersion", "resourceVersionMatch", "sendInitialEvents",
                                              "timeoutSeconds"]

_PATCH_TYPES = ["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json"]
_OBJECT_MEDIA = ["application/json", "application/vnd.kubernetes.protobuf", "application/yaml"]
_WATCH_MEDIA = ["application/json", "application/json;stream=watch", "application/vnd.kubernetes.protobuf",
                "application/vnd.kubernetes.protobuf;stream=watch", "application/yaml"]


def _query_param(name: str, v3: bool) -> Schema:
    type_ = _PARAM_TYPES.get(name, "string")
    if v3:
        return {"description": _PARAM_DOCS[name], "in": "query", "name": name,
                "schema": {"type": type_, "uniqueItems": True}}
    return {"description": _PARAM_DOCS[name], "in": "query", "name": name, "type": type_, "uniqueItems": True}


def _path_param(name: str, description: str, v3: bool) -> Schema:
    if v3:
        return {"description": description, "in": "path", "name": name, "required": True,
                "schema": {"type": "string", "uniqueItems": True}}
    return {"description": description, "in": "path", "name": name, "required": True, "type": "string",
            "uniqueItems": True}


# ---- paths ------------------------------------------------------------------------------------


class _Paths:
    """Builds the path items of one document (v2 or v3 flavour)."""

    def __init__(self, v3: bool):
        self.v3 = v3
        self.kinds: dict[tuple[str, str], str] = {}  # (group-version path, plural) -> kind
        self.prefix = "#/components/schemas/" if v3 else "#/definitions/"
        self.paths: dict[str, Schema] = {}

    def _responses(self, schema_ref: str, codes: dict[str, str], media: list[str]) -> Schema:
        ref = {"$ref": self.prefix + schema_ref}
        out: Schema = {}
        for code, text in codes.items():
            if self.v3:
                out[code] = {"content": {m: {"schema": ref} for m in media}, "description": text}
            else:
                out[code] = {"description": text, "schema": ref}
        if not self.v3:
            out["401"] = {"description": "Unauthorized"}
        return out

    def operation(self, rdef: ResourceDef | None, *, action: str, op_id: str, description: str,
                  response: str, codes: dict[str, str], params: list[str], body: str | None = None,
                  body_media: list[str] | None = None, media: list[str] | None = None,
                  tag: str = "", gvk: dict[str, str] | None = None) -> Schema:
        media = media or _OBJECT_MEDIA
        op: Schema = {"description": description, "operationId": op_id}
        parameters = [_query_param(p, self.v3) for p in params]
        if body is not None:
            body_media = body_media or ["application/json"]
            if self.v3:
                body_ref = {"schema": {"$ref": self.prefix + body}}
                op["requestBody"] = {"content": {m: body_ref for m in body_media}}
                if action not in ("delete", "deletecollection"):
                    op["requestBody"]["required"] = True
            else:
                parameters.insert(0, {"in": "body", "name": "body", "required": action not in (
                    "delete", "deletecollection"), "schema": {"$ref": self.prefix + body}})
                op["consumes"] = body_media if action == "patch" else ["*/*"]
        if parameters:
            op["parameters"] = parameters
        if not self.v3:
            op["produces"] = media
            op["schemes"] = ["https"]
        op["responses"] = self._responses(response, codes, media)
        op["tags"] = [tag or (_tag(rdef) if rdef else "")]
        if action:
            op["x-kubernetes-action"] = action
        if gvk is not None:
            op["x-kubernetes-group-version-kind"] = gvk
        return op

    def add(self, path: str, method: str, op: Schema, path_params: list[Schema]) -> None:
        item = self.paths.setdefault(path, {})
        item[method] = op
        if path_params:
            item["parameters"] = path_params

    def _add_subresource_def(self, rdef: ResourceDef, base: str, ns_path: str, prefix: str, scoped: str,
                             name: str, gvk: dict[str, str]) -> None:
        """A create-only subresource with a def of its own (TokenRequest at serviceaccounts/token):
        POST .../<parent>/{name}/<sub>, named as upstream (createCoreV1NamespacedServiceAccountToken)."""
        parent, sub = rdef.plural.split("/", 1)
        parent_kind = self.kinds.get((base.lstrip("/"), parent), parent.capitalize())
        params = [_path_param("name", f"name of the {rdef.kind}", self.v3)]
        if rdef.namespaced:
            params.append(_path_param("namespace", "object name and auth scope, such as for teams and projects",
                                      self.v3))
        if "create" in rdef.verbs:
            self.add(f"{ns_path}/{parent}/{{name}}/{sub}", "post", self.operation(
                rdef, action="post", op_id=f"create{prefix}{scoped}{parent_kind}{sub.capitalize()}",
                params=_WRITE_PARAMS, body=name, description=f"create {rdef.kind} of a {parent_kind}",
                response=name, codes={"200": "OK", "201": "Created", "202": "Accepted"}, gvk=gvk),
                params + [_query_param("pretty", self.v3)])

    def add_resource(self, rdef: ResourceDef, base: str) -> None:
        name = schema_name(rdef)
        gvk = _gvk(rdef.group, rdef.version, rdef.kind)
        kind, prefix, verbs = rdef.kind, _op_prefix(rdef), set(rdef.verbs)
        scoped = "Namespaced" if rdef.namespaced else ""
        ns_path = f"{base}/namespaces/{{namespace}}" if rdef.namespaced else base
        if "/" in rdef.plural:
            self._add_subresource_def(rdef, base, ns_path, prefix, scoped, name, gvk)
            return
        collection, item = f"{ns_path}/{rdef.plural}", f"{ns_path}/{rdef.plural}/{{name}}"
        pretty = _query_param("pretty", self.v3)
        ns_param = [_path_param("namespace", "object name and auth scope, such as for teams and projects",
                                self.v3)] if rdef.namespaced else []
        name_param = _path_param("name", f"name of the {kind}", self.v3)
        common = {"rdef": rdef, "gvk": gvk}

        if "list" in verbs:
            self.add(collection, "get", self.operation(
                action="list", op_id=f"list{prefix}{scoped}{kind}", params=_LIST_PARAMS,
                description=f"list or watch objects of kind {kind}", response=name + "List",
                codes={"200": "OK"}, media=_WATCH_MEDIA, **common), ns_param + [pretty])
        if "create" in verbs:
            self.add(collection, "post", self.operation(
                action="post", op_id=f"create{prefix}{scoped}{kind}", params=_WRITE_PARAMS, body=name,
                description=f"create {_article(kind)} {kind}", response=name,
                codes={"200": "OK", "201": "Created", "202": "Accepted"}, **common), ns_param + [pretty])
        if "deletecollection" in verbs:
            self.add(collection, "delete", self.operation(
                action="deletecollection", op_id=f"delete{prefix}Collection{scoped}{kind}",
                params=_DELETE_COLLECTION_PARAMS, body=DELETE_OPTIONS,
                description=f"delete collection of {kind}", response=STATUS, codes={"200": "OK"}, **common),
                ns_param + [pretty])
        item_params = [name_param] + ns_param + [pretty]
        if "get" in verbs:
            self.add(item, "get", self.operation(
                action="get", op_id=f"read{prefix}{scoped}{kind}", params=[], response=name,
                description=f"read the specified {kind}", codes={"200": "OK"}, **common), item_params)
        if "update" in verbs:
            self.add(item, "put", self.operation(
                action="put", op_id=f"replace{prefix}{scoped}{kind}", params=_WRITE_PARAMS, body=name,
                description=f"replace the specified {kind}", response=name,
                codes={"200": "OK", "201": "Created"}, **common), item_params)
        if "patch" in verbs:
            self.add(item, "patch", self.operation(
                action="patch", op_id=f"patch{prefix}{scoped}{kind}", params=_PATCH_PARAMS, body=PATCH,
                body_media=_patch_media(rdef), description=f"partially update the specified {kind}",
                response=name, codes={"200": "OK", "201": "Created"}, **common), item_params)
        if "delete" in verbs:
            self.add(item, "delete", self.operation(
                action="delete", op_id=f"delete{prefix}{scoped}{kind}", params=_DELETE_PARAMS,
                body=DELETE_OPTIONS, description=f"delete {_article(kind)} {kind}", response=STATUS,
                codes={"200": "OK", "202": "Accepted"}, **common), item_params)
        if "watch" in verbs:
            self._add_watches(rdef, base, prefix, scoped, name_param, ns_param, pretty, gvk)
        if rdef.namespaced and "list" in verbs:
            self.add(f"{base}/{rdef.plural}", "get", self.operation(
                action="list", op_id=f"list{prefix}{kind}ForAllNamespaces", params=[],
                description=f"list or watch objects of kind {kind}", response=name + "List",
                codes={"200": "OK"}, media=_WATCH_MEDIA, **common),
                [_query_param(p, self.v3) for p in _LIST_PARAMS] + [pretty])
        for sub in rdef.subresources:
            self._add_subresource(rdef, sub, item, item_params, prefix, scoped, gvk)

    def _add_watches(self, rdef: ResourceDef, base: str, prefix: str, scoped: str, name_param: Schema,
                     ns_param: list[Schema], pretty: Schema, gvk: dict[str, str]) -> None:
        kind, plural = rdef.kind, rdef.plural
        watch_base = f"{base}/watch/namespaces/{{namespace}}" if rdef.namespaced else f"{base}/watch"
        list_params = [_query_param(p, self.v3) for p in _LIST_PARAMS]
        deprecated = "deprecated: use the 'watch' parameter with a list operation instead"
        watch = {"rdef": rdef, "gvk": gvk, "params": [], "response": WATCH_EVENT, "codes": {"200": "OK"},
                 "media": _WATCH_MEDIA}
        self.add(f"{watch_base}/{plural}", "get", self.operation(
            action="watchlist", op_id=f"watch{prefix}{scoped}{kind}List",
            description=f"watch individual changes to a list of {kind}. {deprecated}.", **watch),
            ns_param + list_params[:] + [pretty])
        self.add(f"{watch_base}/{plural}/{{name}}", "get", self.operation(
            action="watch", op_id=f"watch{prefix}{scoped}{kind}",
            description=f"watch changes to an object of kind {kind}. {deprecated}, filtered to a single item "
                        "with the 'fieldSelector' parameter.", **watch),
            [name_param] + ns_param + list_params + [pretty])
        if rdef.namespaced:
            self.add(f"{base}/watch/{plural}", "get", self.operation(
                action="watchlist", op_id=f"watch{prefix}{kind}ListForAllNamespaces",
                description=f"watch individual changes to a list of {kind}. {deprecated}.", **watch),
                list_params + [pretty])

    def _add_subresource(self, rdef: ResourceDef, sub: str, item: str, item_params: list[Schema],
                         prefix: str, scoped: str, gvk: dict[str, str]) -> None:
        name, kind, title = schema_name(rdef), rdef.kind, sub[:1].upper() + sub[1:]
        path, common = f"{item}/{sub}", {"rdef": rdef, "gvk": gvk, "response": schema_name(rdef)}
        if sub == "scale":  # reads and writes an autoscaling/v1 Scale, not the object
            name = SCALE
            common.update(gvk=_gvk("autoscaling", "v1", "Scale"), response=SCALE)
        if sub == "finalize":
            # Upstream serves only PUT on a namespace's /finalize.
            self.add(path, "put", self.operation(
                action="put", op_id=f"replace{prefix}{scoped}{kind}{title}", params=_WRITE_PARAMS, body=name,
                description=f"replace {sub} of the specified {kind}", codes={"200": "OK", "201": "Created"},
                **common), item_params)
            return
        self.add(path, "get", self.operation(
            action="get", op_id=f"read{prefix}{scoped}{kind}{title}", params=[],
            description=f"read {sub} of the specified {kind}", codes={"200": "OK"}, **common), item_params)
        self.add(path, "put", self.operation(
            action="put", op_id=f"replace{prefix}{scoped}{kind}{title}", params=_WRITE_PARAMS, body=name,
            description=f"replace {sub} of the specified {kind}", codes={"200": "OK", "201": "Created"},
            **common), item_params)
        self.add(path, "patch", self.operation(
            action="patch", op_id=f"patch{prefix}{scoped}{kind}{title}", params=_PATCH_PARAMS, body=PATCH,
            body_media=_patch_media(rdef), description=f"partially update {sub} of the specified {kind}",
            codes={"200": "OK", "201": "Created"}, **common), item_params)

    def add_discovery(self, base: str, rdef: ResourceDef) -> None:
        self.add(base + "/", "get", self.operation(
            None, action="", op_id=f"get{_op_prefix(rdef)}APIResources", params=[], tag=_tag(rdef),
            description="get available resources", response=API_RESOURCE_LIST, codes={"200": "OK"}), [])


def _patch_media(rdef: ResourceDef) -> list[str]:
    return _PATCH_TYPES if rdef.strategic_merge else [t for t in _PATCH_TYPES if "strategic" not in t]


def _article(kind: str) -> str:
    return "an" if kind[:1] in "AEIOU" else "a"


def _paths(defs: list[ResourceDef], v3: bool) -> dict[str, Schema]:
    builder = _Paths(v3)
    # A subresource served by its own def (serviceaccounts/token) is named after its parent's kind.
    builder.kinds = {(group_version_path(d), d.plural): d.kind for d in defs if "/" not in d.plural}
    seen_gv: set[str] = set()
    for rdef in sorted(defs, key=lambda d: (group_version_path(d), d.plural)):
        base = "/" + group_version_path(rdef)
        if base not in seen_gv:
            seen_gv.add(base)
            builder.add_discovery(base, rdef)
        builder.add_resource(rdef, base)
    return dict(sorted(builder.paths.items()))


# ---- v2 schema conversion ---------------------------------------------------------------------


def _to_v2(schema: Any) -> Any:
    """OpenAPI v3 structural schema -> Swagger 2.0: int-or-string becomes a typed string format."""
    if isinstance(schema, list):
        return [_to_v2(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _to_v2(v) for k, v in schema.items() if k not in ("nullable", "x-kubernetes-int-or-string")}
    if schema.get("x-kubernetes-int-or-string"):
        out.update({"type": "string", "format": "int-or-string"})
    if "allOf" in out and len(out["allOf"]) == 1 and "$ref" in out["allOf"][0]:
        out["$ref"] = out.pop("allOf")[0]["$ref"]
    return out


def _identity(schema: Schema) -> Schema:
    return schema


_SECURITY = {"BearerToken": {"description": "Bearer Token authentication", "in": "header",
                             "name": "authorization", "type": "apiKey"}}


def openapi_v2(defs: Iterable[ResourceDef], info_version: str) -> dict[str, Any]:
    """The /openapi/v2 Swagger 2.0 document for every def."""
    defs = list(defs)
    return {
        "definitions": _definitions(defs, "#/definitions/", _to_v2),
        "info": {"title": "Kubernetes", "version": info_version},
        "paths": _paths(defs, v3=False),
        "security": [{"BearerToken": []}],
        "securityDefinitions": _SECURITY,
        "swagger": "2.0",
    }


def openapi_v3_document(defs: Iterable[ResourceDef]) -> dict[str, Any]:
    """The OpenAPI 3.0 document of one group-version (all `defs` share it)."""
    defs = list(defs)
    return {
        "components": {
            "schemas": _definitions(defs, "#/components/schemas/", _identity),
            "securitySchemes": _SECURITY,
        },
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "openapi": "3.0.0",
        "paths": _paths(defs, v3=True),
        "security": [{"BearerToken": []}],
    }


def document_hash(document: dict[str, Any]) -> str:
    """Upstream's ETag of a v3 document: the upper-case hex SHA-512 of its JSON."""
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha512(data).hexdigest().upper()


def openapi_v3_index(defs: Iterable[ResourceDef]) -> dict[str, Any]:
    """/openapi/v3: one entry per group-version, each URL pinned to its document's hash."""
    by_gv: dict[str, list[ResourceDef]] = {}
    for rdef in defs:
        by_gv.setdefault(group_version_path(rdef), []).append(rdef)
    return {"paths": {
        gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={document_hash(openapi_v3_document(gv_defs))}"}
        for gv, gv_defs in sorted(by_gv.items())}}
