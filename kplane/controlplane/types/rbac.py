"""rbac.authorization.k8s.io/v1 Role, ClusterRole, RoleBinding and ClusterRoleBinding.

Schemas as upstream publishes them, defaulting (pkg/apis/rbac/v1/defaults.go), validation
(pkg/apis/rbac/validation) and Table columns (Role/ClusterRole use the default table: Name and
Created At; the bindings have printers in pkg/printers/internalversion). Escalation prevention and
the authorizer live in kplane.controlplane.authorization.
"""

from __future__ import annotations

from typing import Any

from kplane.apimachinery.errors import Cause, StatusError, field_invalid, field_not_supported, field_required
from kplane.apimachinery.selectors import label_selector_from_dict
from kplane.apimachinery.typeschema import array, described, kind_schema, obj, string
from kplane.apimachinery.validation import is_dns1123_subdomain, is_valid_path_segment_name
from kplane.apiserver.resource import Column, Obj, ResourceDef
from kplane.controlplane.types.printing import AGE_DOC, age_column, name_column

GROUP = "rbac.authorization.k8s.io"

LABEL_SELECTOR_REQUIREMENT = obj(
    "A label selector requirement is a selector that contains values, a key, and an operator that "
    "relates the key and values.", {
        "key": string("key is the label key that the selector applies to.", default=""),
        "operator": string(
            "operator represents a key's relationship to a set of values. Valid operators are In, NotIn, "
            "Exists and DoesNotExist.", default=""),
        "values": array({"type": "string", "default": ""},
                        "values is an array of string values. If the operator is In or NotIn, the values "
                        "array must be non-empty. If the operator is Exists or DoesNotExist, the values "
                        "array must be empty. This array is replaced during a strategic merge patch.",
                        list_type="atomic"),
    }, required=["key", "operator"], name="io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement")

LABEL_SELECTOR = obj(
    "A label selector is a label query over a set of resources. The result of matchLabels and "
    "matchExpressions are ANDed. An empty label selector matches all objects. A null label selector "
    "matches no objects.", {
        "matchExpressions": array(LABEL_SELECTOR_REQUIREMENT,
                                  "matchExpressions is a list of label selector requirements. The "
                                  "requirements are ANDed.", list_type="atomic"),
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string", "default": ""},
                        "description": "matchLabels is a map of {key,value} pairs. A single {key,value} in "
                                       "the matchLabels map is equivalent to an element of matchExpressions, "
                                       "whose key field is \"key\", the operator is \"In\", and the values "
                                       "array contains only \"value\". The requirements are ANDed."},
    }, map_type="atomic", name="io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector")


def _strings(description: str) -> dict[str, Any]:
    return array({"type": "string", "default": ""}, description)


POLICY_RULE = obj(
    "PolicyRule holds information that describes a policy rule, but does not contain information about "
    "who the rule applies to or which namespace the rule applies to.", {
        "apiGroups": _strings(
            "APIGroups is the name of the APIGroup that contains the resources.  If multiple API groups "
            "are specified, any action requested against one of the enumerated resources in any API group "
            "will be allowed. \"\" represents the core API group and \"*\" represents all API groups."),
        "nonResourceURLs": _strings(
            "NonResourceURLs is a set of partial urls that a user should have access to.  *s are allowed, "
            "but only as the full, final step in the path Since non-resource URLs are not namespaced, this "
            "field is only applicable for ClusterRoles referenced from a ClusterRoleBinding. Rules can "
            "either apply to API resources (such as \"pods\" or \"secrets\") or non-resource URL paths "
            "(such as \"/api\"),  but not both."),
        "resourceNames": _strings(
            "ResourceNames is an optional white list of names that the rule applies to.  An empty set "
            "means that everything is allowed."),
        "resources": _strings(
            "Resources is a list of resources this rule applies to. '*' represents all resources."),
        "verbs": _strings(
            "Verbs is a list of Verbs that apply to ALL the ResourceKinds contained in this rule. '*' "
            "represents all verbs."),
    }, required=["verbs"], name="io.k8s.api.rbac.v1.PolicyRule")

AGGREGATION_RULE = obj(
    "AggregationRule describes how to locate ClusterRoles to aggregate into the ClusterRole", {
        "clusterRoleSelectors": array(
            LABEL_SELECTOR,
            "ClusterRoleSelectors holds a list of selectors which will be used to find ClusterRoles and "
            "create the rules. If any of the selectors match, then the ClusterRole's permissions will be "
            "added"),
    }, name="io.k8s.api.rbac.v1.AggregationRule")

ROLE_REF = obj("RoleRef contains information that points to the role being used", {
    "apiGroup": string("APIGroup is the group for the resource being referenced", default=""),
    "kind": string("Kind is the type of resource being referenced", default=""),
    "name": string("Name is the name of resource being referenced", default=""),
}, required=["apiGroup", "kind", "name"], map_type="atomic", name="io.k8s.api.rbac.v1.RoleRef")

SUBJECT = obj(
    "Subject contains a reference to the object or user identities a role binding applies to.  This can "
    "either hold a direct API object reference, or a value for non-objects such as user and group names.", {
        "apiGroup": string(
            "APIGroup holds the API group of the referenced subject. Defaults to \"\" for ServiceAccount "
            "subjects. Defaults to \"rbac.authorization.k8s.io\" for User and Group subjects."),
        "kind": string(
            "Kind of object being referenced. Values defined by this API group are \"User\", \"Group\", and "
            "\"ServiceAccount\". If the Authorizer does not recognized the kind value, the Authorizer should "
            "report an error.", default=""),
        "name": string("Name of the object being referenced.", default=""),
        "namespace": string(
            "Namespace of the referenced object.  If the object kind is non-namespace, such as \"User\" or "
            "\"Group\", and this value is not empty the Authorizer should report an error."),
    }, required=["kind", "name"], map_type="atomic", name="io.k8s.api.rbac.v1.Subject")

META_DOC = "Standard object's metadata."
SUBJECTS_DOC = "Subjects holds references to the objects the role applies to."

ROLE = kind_schema(
    "Role is a namespaced, logical grouping of PolicyRules that can be referenced as a unit by a RoleBinding.",
    {"rules": array(POLICY_RULE, "Rules holds all the PolicyRules for this Role")}, metadata_doc=META_DOC)

CLUSTER_ROLE = kind_schema(
    "ClusterRole is a cluster level, logical grouping of PolicyRules that can be referenced as a unit by a "
    "RoleBinding or ClusterRoleBinding.", {
        "aggregationRule": described(
            AGGREGATION_RULE,
            "AggregationRule is an optional field that describes how to build the Rules for this "
            "ClusterRole. If AggregationRule is set, then the Rules are controller managed and direct "
            "changes to Rules will be stomped by the controller."),
        "rules": array(POLICY_RULE, "Rules holds all the PolicyRules for this ClusterRole"),
    }, metadata_doc=META_DOC)

ROLE_BINDING_REF_DOC = ("RoleRef can reference a Role in the current namespace or a ClusterRole in the global "
                        "namespace. If the RoleRef cannot be resolved, the Authorizer must return an error.")
CLUSTER_ROLE_BINDING_REF_DOC = ("RoleRef can only reference a ClusterRole in the global namespace. If the "
                                "RoleRef cannot be resolved, the Authorizer must return an error.")

ROLE_BINDING = kind_schema(
    "RoleBinding references a role, but does not contain it.  It can reference a Role in the same "
    "namespace or a ClusterRole in the global namespace. It adds who information via Subjects and "
    "namespace information by which namespace it exists in.  RoleBindings in a given namespace only have "
    "effect in that namespace.", {
        "roleRef": described(ROLE_REF, ROLE_BINDING_REF_DOC),
        "subjects": array(SUBJECT, SUBJECTS_DOC, list_type="atomic"),
    }, required=["roleRef"], metadata_doc=META_DOC)

CLUSTER_ROLE_BINDING = kind_schema(
    "ClusterRoleBinding references a ClusterRole, but not contain it.  It can reference a ClusterRole in "
    "the global namespace, and adds who information via Subject.", {
        "roleRef": described(ROLE_REF, CLUSTER_ROLE_BINDING_REF_DOC),
        "subjects": array(SUBJECT, SUBJECTS_DOC, list_type="atomic"),
    }, required=["roleRef"], metadata_doc=META_DOC)


# ---------------------------------------------------------------------------------------------
# Defaulting (SetDefaults_RoleBinding, SetDefaults_ClusterRoleBinding, SetDefaults_Subject)
# ---------------------------------------------------------------------------------------------


def default_binding(binding: Obj, _old: Obj | None = None) -> None:
    ref = binding.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = GROUP
    for subject in binding.get("subjects") or ():
        if isinstance(subject, dict) and not subject.get("apiGroup"):
            if subject.get("kind") == "ServiceAccount":
                subject["apiGroup"] = ""
            elif subject.get("kind") in ("User", "Group"):
                subject["apiGroup"] = GROUP


# ---------------------------------------------------------------------------------------------
# Validation (pkg/apis/rbac/validation/validation.go)
# ---------------------------------------------------------------------------------------------


def validate_policy_rule(rule: Any, namespaced: bool, path: str) -> list[Cause]:
    if not isinstance(rule, dict):
        return [field_invalid(path, rule, "must be an object")]
    causes: list[Cause] = []
    if not rule.get("verbs"):
        causes.append(field_required(f"{path}.verbs", "Required value: verbs must contain at least one value"))
    urls = rule.get("nonResourceURLs") or []
    if urls:
        if namespaced:
            causes.append(field_invalid(f"{path}.nonResourceURLs", urls,
                                        "namespaced rules cannot apply to non-resource URLs"))
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            causes.append(field_invalid(f"{path}.nonResourceURLs", urls,
                                        "rules cannot apply to both regular resources and non-resource URLs"))
        return causes
    if not rule.get("apiGroups"):
        causes.append(field_required(f"{path}.apiGroups",
                                     "Required value: resource rules must supply at least one api group"))
    if not rule.get("resources"):
        causes.append(field_required(f"{path}.resources",
                                     "Required value: resource rules must supply at least one resource"))
    return causes


def _validate_rules(obj_: Obj, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    for i, rule in enumerate(obj_.get("rules") or []):
        causes += validate_policy_rule(rule, namespaced, f"rules[{i}]")
    return causes


def validate_role(role: Obj) -> list[Cause]:
    return _validate_rules(role, True)


def validate_cluster_role(role: Obj) -> list[Cause]:
    causes = _validate_rules(role, False)
    rule = role.get("aggregationRule")
    if rule is not None:
        selectors = (rule or {}).get("clusterRoleSelectors") or []
        if not selectors:
            causes.append(field_required(
                "aggregationRule.clusterRoleSelectors",
                "Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"))
        for i, sel in enumerate(selectors):
            try:
                label_selector_from_dict(sel or {})
            except (StatusError, ValueError, TypeError, AttributeError) as e:
                causes.append(field_invalid(f"aggregationRule.clusterRoleSelectors[{i}]", sel, str(e)))
    return causes


def _validate_subject(subject: Any, namespaced: bool, path: str) -> list[Cause]:
    if not isinstance(subject, dict):
        return [field_invalid(path, subject, "must be an object")]
    causes: list[Cause] = []
    name, kind, group = subject.get("name", ""), subject.get("kind", ""), subject.get("apiGroup", "")
    if not name:
        causes.append(field_required(f"{path}.name"))
    if kind == "ServiceAccount":
        if name:
            causes += [field_invalid(f"{path}.name", name, m) for m in is_dns1123_subdomain(name)]
        if group:
            causes.append(field_not_supported(f"{path}.apiGroup", group, [""]))
        if not namespaced and not subject.get("namespace"):
            causes.append(field_required(f"{path}.namespace"))
    elif kind in ("User", "Group"):
        if group != GROUP:
            causes.append(field_not_supported(f"{path}.apiGroup", group, [GROUP]))
    else:
        causes.append(field_not_supported(f"{path}.kind", kind, ["ServiceAccount", "User", "Group"]))
    return causes


def _validate_binding(binding: Obj, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    ref = binding.get("roleRef") or {}
    if ref.get("apiGroup", "") != GROUP:
        causes.append(field_not_supported("roleRef.apiGroup", ref.get("apiGroup", ""), [GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.get("kind", "") not in kinds:
        causes.append(field_not_supported("roleRef.kind", ref.get("kind", ""), kinds))
    name = ref.get("name", "")
    if not name:
        causes.append(field_required("roleRef.name"))
    else:
        causes += [field_invalid("roleRef.name", name, m) for m in is_valid_path_segment_name(name)]
    for i, subject in enumerate(binding.get("subjects") or []):
        causes += _validate_subject(subject, namespaced, f"subjects[{i}]")
    return causes


def _validate_binding_update(new: Obj, old: Obj, namespaced: bool) -> list[Cause]:
    causes = _validate_binding(new, namespaced)
    if (new.get("roleRef") or {}) != (old.get("roleRef") or {}):
        causes.append(field_invalid("roleRef", new.get("roleRef"), "cannot change roleRef"))
    return causes


# ---------------------------------------------------------------------------------------------
# Table columns
# ---------------------------------------------------------------------------------------------


def _created_at(o: Obj) -> str:
    # DefaultTableConvertor: creationTimestamp.UTC().Format(time.RFC3339).
    return (o.get("metadata") or {}).get("creationTimestamp") or ""


def _role_ref(o: Obj) -> str:
    ref = o.get("roleRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def subjects_strings(subjects: list[dict] | None) -> tuple[list[str], list[str], list[str]]:
    """rbac.SubjectsStrings: users, groups and "namespace/name" service accounts."""
    users, groups, sas = [], [], []
    for s in subjects or ():
        kind = s.get("kind")
        if kind == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
        elif kind == "User":
            users.append(s.get("name", ""))
        elif kind == "Group":
            groups.append(s.get("name", ""))
    return users, groups, sas


def _role_columns() -> list[Column]:
    return [name_column(), Column("Created At", "date", _created_at, description=AGE_DOC)]


def _binding_columns(what: str, ref_doc: str) -> list[Column]:
    return [
        name_column(),
        Column("Role", "string", _role_ref, description=ref_doc),
        age_column(),
        Column("Users", "string", lambda o: ", ".join(subjects_strings(o.get("subjects"))[0]),
               description=f"Users in the {what}", priority=1),
        Column("Groups", "string", lambda o: ", ".join(subjects_strings(o.get("subjects"))[1]),
               description=f"Groups in the {what}", priority=1),
        Column("ServiceAccounts", "string", lambda o: ", ".join(subjects_strings(o.get("subjects"))[2]),
               description=f"ServiceAccounts in the {what}", priority=1),
    ]


def resources() -> list[ResourceDef]:
    # ValidateRBACName: names only need to be valid path segments.
    # AllowCreateOnUpdate is true for all four upstream: a PUT may create one (the escalation
    # checks of a create apply to it).
    common: dict[str, Any] = {"group": GROUP, "version": "v1", "name_validation": "path",
                              "allow_create_on_update": True}
    return [
        ResourceDef(kind="ClusterRole", plural="clusterroles", namespaced=False, schema=CLUSTER_ROLE,
                    openapi_name="io.k8s.api.rbac.v1.ClusterRole", columns=_role_columns(),
                    validate_create=validate_cluster_role,
                    validate_update=lambda new, _old: validate_cluster_role(new), **common),
        ResourceDef(kind="ClusterRoleBinding", plural="clusterrolebindings", namespaced=False,
                    schema=CLUSTER_ROLE_BINDING, openapi_name="io.k8s.api.rbac.v1.ClusterRoleBinding",
                    columns=_binding_columns("clusterRoleBinding", CLUSTER_ROLE_BINDING_REF_DOC),
                    prepare_create=default_binding, prepare_update=default_binding,
                    validate_create=lambda o: _validate_binding(o, False),
                    validate_update=lambda new, old: _validate_binding_update(new, old, False), **common),
        ResourceDef(kind="Role", plural="roles", schema=ROLE, openapi_name="io.k8s.api.rbac.v1.Role",
                    columns=_role_columns(), validate_create=validate_role,
                    validate_update=lambda new, _old: validate_role(new), **common),
        ResourceDef(kind="RoleBinding", plural="rolebindings", schema=ROLE_BINDING,
                    openapi_name="io.k8s.api.rbac.v1.RoleBinding",
                    columns=_binding_columns("roleBinding", ROLE_BINDING_REF_DOC),
                    prepare_create=default_binding, prepare_update=default_binding,
                    validate_create=lambda o: _validate_binding(o, True),
                    validate_update=lambda new, old: _validate_binding_update(new, old, True), **common),
    ]
