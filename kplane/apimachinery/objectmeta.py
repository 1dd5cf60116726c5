"""metav1 ObjectMeta and ListMeta schemas, shared by every kind.

Extensions follow upstream's 1.32 OpenAPI: ownerReferences merge by uid,
finalizers merge as a set of strings (patchStrategy merge, no list-type yet).
"""

from __future__ import annotations

from kplane.apimachinery.typeschema import (
                                              META,
                                              array,
                                              boolean,
                                              described,
                                              free_form,
                                              integer,
                                              obj,
                                              string,
                                              string_map,
                                              timestamp,
)

FIELDS_V1 = free_form(
    "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON format.\n\nEach key is either a "
    "'.' representing the field itself, and will always map to an empty set, or a string representing a "
    "sub-field or item. The string will follow one of these four formats: 'f:<name>', where <name> is the name "
    "of a field in a struct, or key in a map 'v:<value>', where <value> is the exact json formatted value of a "
    "list item 'i:<index>', where <index> is integer index of a list item 'k:<keys>', where <keys> is a map of  "
    "a list item's key fields to their unique values If a key maps to an empty Fields value, the field that key "
    "represents is part of the set.\n\nThe exact format is defined in sigs.k8s.io/structured-merge-diff",
    name=META + "FieldsV1")

MANAGED_FIELDS_ENTRY = obj(
    "ManagedFieldsEntry is a workflow-id, a FieldSet and the group version of the resource that "
    "the fieldset applies to.", {
    'apiVersion': string(
        'APIVersion defines the version of this resource that this field set applies to. The format '
        'is "group/version" just like the top-level APIVersion field.'),
    'fieldsType': string(
        'FieldsType is the discriminator for the different fields format and version. There is '
        'currently only one possible value: "FieldsV1"'),
    'fieldsV1': described(
        FIELDS_V1, 'FieldsV1 holds the first JSON version format as described in the "FieldsV1" type.'),
    'manager': string("Manager is an identifier of the workflow managing these fields."),
    'operation': string(
        "Operation is the type of operation which lead to this ManagedFieldsEntry being created. The "
        "only valid values for this field are 'Apply' and 'Update'."),
    'subresource': string(
        "Subresource is the name of the subresource used to update that object, or empty string if "
        "the object was updated through the main resource. The value of this field is used to "
        "distinguish between managers, even if they share the same name."),
    'time': timestamp(
        "Time is the timestamp of when the ManagedFields entry was added. The timestamp will also be "
        "updated if a field is added, the manager changes any of the owned fields value or removes a "
        "field."),
}, name=META + "ManagedFieldsEntry")

OWNER_REFERENCE = obj(
    "OwnerReference contains enough information to let you identify an owning object. An owning "
    "object must be in the same namespace as the dependent, or be cluster-scoped, so there is no "
    "namespace field.", {
    'apiVersion': string("API version of the referent."),
    'blockOwnerDeletion': boolean(
        'If true, AND if the owner has the "foregroundDeletion" finalizer, then the owner cannot be '
        'deleted from the key-value store until this reference is removed. See '
        'https://kubernetes.io/docs/concepts/architecture/garbage-collection/#foreground-deletion for '
        'how the garbage collector interacts with this field and enforces the foreground deletion.'),
    'controller': boolean("If true, this reference points to the managing controller."),
    'kind': string("Kind of the referent."),
    'name': string("Name of the referent."),
    'uid': string("UID of the referent."),
}, required=['apiVersion', 'kind', 'name', 'uid'], map_type="atomic", name=META + "OwnerReference")

OBJECT_META = obj(
    "ObjectMeta is metadata that all persisted resources must have, which includes all objects "
    "users must create.", {
    'annotations': string_map(
        "Annotations is an unstructured key value map stored with a resource that may be set by "
        "external tools to store and retrieve arbitrary metadata. They are not queryable and should "
        "be preserved when modifying objects."),
    'creationTimestamp': timestamp(
        "CreationTimestamp is a timestamp representing the server time when this object was created. "
        "It is not guaranteed to be set in happens-before order across separate operations."),
    'deletionGracePeriodSeconds': integer(
        "Number of seconds allowed for this object to gracefully terminate before it will be removed "
        "from the system. Only set when deletionTimestamp is also set.", fmt="int64"),
    'deletionTimestamp': timestamp(
        "DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted. This "
        "field is set by the server when a graceful deletion is requested by the user, and is not "
        "directly settable by a client."),
    'finalizers': array(string(),
        "Must be empty before the object is deleted from the registry. Each entry is an identifier "
        "for the responsible component that will remove the entry from the list.", strategy="merge"),
    'generateName': string(
        "GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF "
        "the Name field has not been provided. If this field is used, the name returned to the client "
        "will be different than the name passed."),
    'generation': integer(
        "A sequence number representing a specific generation of the desired state. Populated by the "
        "system.", fmt="int64"),
    'labels': string_map(
        "Map of string keys and values that can be used to organize and categorize (scope and select) "
        "objects. May match selectors of replication controllers and services."),
    'managedFields': array(MANAGED_FIELDS_ENTRY,
        "ManagedFields maps workflow-id and version to the set of fields that are managed by that "
        "workflow. This is mostly for internal housekeeping, and users typically shouldn't need to "
        "set or understand this field."),
    'name': string(
        "Name must be unique within a namespace. Is required when creating resources, although some "
        "resources may allow a client to request the generation of an appropriate name automatically."),
    'namespace': string(
        'Namespace defines the space within which each name must be unique. An empty namespace is '
        'equivalent to the "default" namespace, but "default" is the canonical representation.'),
    'ownerReferences': array(OWNER_REFERENCE,
        "List of objects depended by this object. If ALL objects in the list have been deleted, this "
        "object will be garbage collected.", merge_key="uid", strategy="merge"),
    'resourceVersion': string(
        "An opaque value that represents the internal version of this object that can be used by "
        "clients to determine when objects have changed. May be used for optimistic concurrency, "
        "change detection, and the watch operation on a resource or set of resources."),
    'selfLink': string(
        "Deprecated: selfLink is a legacy read-only field that is no longer populated by the system."),
    'uid': string(
        "UID is the unique in time and space value for this object. It is typically generated by the "
        "server on successful creation of a resource and is not allowed to change on PUT operations."),
}, name=META + "ObjectMeta")

LIST_META = obj(
    "ListMeta describes metadata that synthetic resources must have, including lists and various "
    "status objects. A resource may have only one of {ObjectMeta, ListMeta}.", {
    'continue': string(
        "continue may be set if the user set a limit on the number of items returned, and indicates "
        "that the server has more data available. The value is opaque and may be used to issue "
        "another request to the endpoint that served this list to retrieve the next set of available "
        "objects."),
    'remainingItemCount': integer(
        "remainingItemCount is the number of subsequent items in the list which are not included in "
        "this list response. If the list request contained label or field selectors, then the number "
        "of remaining items is unknown and the field will be left unset and omitted during "
        "serialization.", fmt="int64"),
    'resourceVersion': string(
        "String that identifies the server's internal version of this object that can be used by "
        "clients to determine when objects have changed. Value must be treated as opaque by clients "
        "and passed unmodified back to the server."),
    'selfLink': string(
        "Deprecated: selfLink is a legacy read-only field that is no longer populated by the system."),
})
