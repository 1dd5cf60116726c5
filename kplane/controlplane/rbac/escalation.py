"""RBAC escalation prevention, as pkg/registry/rbac (escalation_check.go, the policybased storages)
and pkg/registry/rbac/validation (policy_comparator.go, rule.go) do it.

A user may write a Role/ClusterRole only if they already hold every permission in it, or have the
`escalate` verb on roles/clusterroles. A user may write a (Cluster)RoleBinding only if they have the
`bind` verb on the referenced role, or already hold every permission of that role. `system:masters`
skips both checks. Failures are 403 Forbidden StatusErrors with upstream's wording.

The caller skips these checks for updates that only touch metadata the garbage collector owns
(rbacregistry.IsOnlyMutatingGCFields), exactly as upstream does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kplane.apimachinery.errors import forbidden
from kplane.apimachinery.validation import go_quote
from kplane.apiserver.auth import ALLOW, RequestAttributes, UserInfo

from .authorizer import RBAC_GROUP, SYSTEM_MASTERS, non_resource_url_matches

Rule = dict[str, Any]
Authorize = Callable[[RequestAttributes], tuple[str, str]]
# RBACAuthorizer.policy_rules_for: (rules held in namespace, aggregated resolution error or "").
RulesFor = Callable[[UserInfo, str], tuple[list[Rule], str]]

# What it takes to set an aggregationRule: "*" on everything.
FULL_AUTHORITY: list[Rule] = [
    {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
    {"verbs": ["*"], "nonResourceURLs": ["*"]},
]


# ---------------------------------------------------------------------------------------------
# Covers (policy_comparator.go)
# ---------------------------------------------------------------------------------------------


def breakdown_rule(rule: Rule) -> list[Rule]:
    """Split a rule into atoms of one group, resource, verb and (optional) resource name, and one
    non-resource URL per verb. Each atom is then covered by a single owner rule or not at all."""
    atoms: list[Rule] = []
    names = rule.get("resourceNames") or []
    for group in rule.get("apiGroups") or ():
        for resource in rule.get("resources") or ():
            for verb in rule.get("verbs") or ():
                if names:
                    atoms.extend({"apiGroups": [group], "resources": [resource], "verbs": [verb],
                                  "resourceNames": [n]} for n in names)
                else:
                    atoms.append({"apiGroups": [group], "resources": [resource], "verbs": [verb]})
    for url in rule.get("nonResourceURLs") or ():
        for verb in rule.get("verbs") or ():
            atoms.append({"nonResourceURLs": [url], "verbs": [verb]})
    return atoms


def _has_all(owned: list[str], wanted: list[str]) -> bool:
    return set(wanted) <= set(owned)


def _resources_cover(owned: list[str], wanted: list[str]) -> bool:
    if "*" in owned or _has_all(owned, wanted):
        return True
    for path in wanted:
        if path in owned:
            continue
        # Only a subresource can be covered by "*/<subresource>".
        if "/" not in path or "*/" + path.split("/", 1)[1] not in owned:
            return False
    return True


def _urls_cover(owned: list[str], wanted: list[str]) -> bool:
    # nonResourceURLCovers: equal, or the owner ends in "*" and prefixes the path ("*" covers all).
    return all(non_resource_url_matches({"nonResourceURLs": owned}, path) for path in wanted)


def rule_covers(owner: Rule, atom: Rule) -> bool:
    owner_verbs = owner.get("verbs") or []
    owner_groups = owner.get("apiGroups") or []
    owner_names = owner.get("resourceNames") or []
    atom_names = atom.get("resourceNames") or []
    # An owner limited to names never covers an unrestricted atom; an unrestricted owner covers any.
    names_ok = not owner_names if not atom_names else (not owner_names or _has_all(owner_names, atom_names))
    return ("*" in owner_verbs or _has_all(owner_verbs, atom.get("verbs") or []))\
        and ("*" in owner_groups or _has_all(owner_groups, atom.get("apiGroups") or []))\
        and _resources_cover(owner.get("resources") or [], atom.get("resources") or [])\
        and _urls_cover(owner.get("nonResourceURLs") or [], atom.get("nonResourceURLs") or [])\
        and names_ok


def covers(owner_rules: list[Rule], requested_rules: list[Rule]) -> tuple[bool, list[Rule]]:
    """Covers(owner, servant): whether the owner holds every permission requested, and the atoms
    (see breakdown_rule) it does not hold, in breakdown order."""
    uncovered = [atom for rule in requested_rules for atom in breakdown_rule(rule)
                 if not any(rule_covers(owner, atom) for owner in owner_rules)]
    return not uncovered, uncovered


# ---------------------------------------------------------------------------------------------
# The escalation message
# ---------------------------------------------------------------------------------------------


def compact_rules(rules: list[Rule]) -> list[Rule]:
    """CompactRules: merge "simple" rules (one group, one resource, at most one name, nothing else)
    that differ only in verbs. Others pass through untouched."""
    compacted: list[Rule] = []
    simple: dict[tuple, Rule] = {}
    for rule in rules:
        groups, resources = rule.get("apiGroups") or [], rule.get("resources") or []
        names = rule.get("resourceNames") or []
        is_simple = (len(groups) == 1 and len(resources) == 1 and len(names) <= 1
                     and not rule.get("nonResourceURLs"))
        if not is_simple:
            compacted.append(rule)
            continue
        key = (groups[0], resources[0], bool(names), names[0] if names else "")
        existing = simple.get(key)
        if existing is None:
            simple[key] = {**rule, "verbs": list(rule.get("verbs") or [])}
        else:
            existing["verbs"].extend(v for v in rule.get("verbs") or () if v not in existing["verbs"])
    return compacted + list(simple.values())


def _go_slice(values: list[str]) -> str:
    # fmt's %q of a []string: ["a" "b"].
    return "[" + " ".join(go_quote(v) for v in values) + "]"


def compact_string(rule: Rule) -> str:
    """rbacv1helpers.CompactString: {APIGroups:[""], Resources:["pods"], Verbs:["get"]}."""
    parts = [f"{label}:{_go_slice(rule[key])}"
             for label, key in (("APIGroups", "apiGroups"), ("Resources", "resources"),
                                ("NonResourceURLs", "nonResourceURLs"), ("ResourceNames", "resourceNames"),
                                ("Verbs", "verbs"))
             if rule.get(key)]
    return "{" + ", ".join(parts) + "}"


def escalation_message(user: UserInfo, missing: list[Rule], resolution_error: str = "") -> str:
    """ConfirmNoEscalation's error text: sorted, de-duplicated compact descriptions, one per line."""
    lines = sorted({compact_string(r) for r in compact_rules(missing)})
    msg = (f"user {go_quote(user.name)} (groups={_go_slice(list(user.groups))}) is attempting to grant "
           f"RBAC permissions not currently held:\n" + "\n".join(lines))
    if resolution_error:
        # %v of a one-element []error holding the aggregate.
        msg += f"; resolution errors: [{resolution_error}]"
    return msg


def confirm_no_escalation(user: UserInfo, namespace: str, rules: list[Rule], rules_for: RulesFor) -> str:
    """"" if the user holds every rule in `namespace` (cluster-wide grants included), else the
    upstream error message. Resolution errors do not fail the check by themselves."""
    owner_rules, resolution_error = rules_for(user, namespace)
    ok, missing = covers(owner_rules, rules)
    return "" if ok else escalation_message(user, missing, resolution_error)


# ---------------------------------------------------------------------------------------------
# The storage-level checks
# ---------------------------------------------------------------------------------------------


def is_privileged(user: UserInfo) -> bool:
    """rbacregistry.EscalationAllowed: system:masters is used for privileged loopback connections."""
    return SYSTEM_MASTERS in user.groups


def check_role_create(user: UserInfo, role_rules: list[Rule], namespace: str, rules_for: RulesFor,
                      authorize: Authorize, *, name: str = "", request_name: str = "",
                      has_aggregation_rule: bool = False) -> None:
    """Raise 403 unless `user` may write a role with `role_rules`.

    namespace: the Role's namespace, or "" for a ClusterRole (which also picks the resource
        checked for `escalate`: roles or clusterroles).
    name: the object's name, for the error message.
    request_name: the name in the URL (empty on create), used for the `escalate` check as upstream.
    has_aggregation_rule: a ClusterRole (new or old, on update) carries an aggregationRule, which
        additionally requires "*" on everything.
    """
    resource = "roles" if namespace else "clusterroles"
    if is_privileged(user):
        return
    escalate = RequestAttributes(user=user, verb="escalate", is_resource_request=True, path="",
                                 api_group=RBAC_GROUP, api_version="*", resource=resource,
                                 namespace=namespace, name=request_name)
    if authorize(escalate)[0] == ALLOW:
        return
    message = confirm_no_escalation(user, namespace, role_rules, rules_for)
    if message:
        raise forbidden(_forbidden_text(resource, name, message), resource, name, RBAC_GROUP)
    if has_aggregation_rule and confirm_no_escalation(user, namespace, FULL_AUTHORITY, rules_for):
        raise forbidden(_forbidden_text(resource, name, "must have cluster-admin privileges to use the "
                                        "aggregationRule"), resource, name, RBAC_GROUP)


def check_binding(user: UserInfo, binding: dict, role_rules: list[Rule] | None, rules_for: RulesFor,
                  authorize: Authorize, *, namespace: str | None = None) -> None:
    """Raise 403 unless `user` may write `binding` (a RoleBinding or ClusterRoleBinding dict).

    role_rules: the rules of the referenced role (RBACAuthorizer.role_ref_rules), or None if it
        does not exist, which is only an error when the user cannot `bind` it.
    namespace: the request's namespace; defaults to the binding's metadata.namespace ("" for a
        ClusterRoleBinding). `bind` is checked in that namespace, on the role's resource and name.
    """
    meta = binding.get("metadata") or {}
    ns = meta.get("namespace", "") if namespace is None else namespace
    resource = "rolebindings" if binding.get("kind") == "RoleBinding" or ns else "clusterrolebindings"
    name = meta.get("name", "")
    if is_privileged(user):
        return
    ref = binding.get("roleRef") or {}
    ref_resource = {"ClusterRole": "clusterroles", "Role": "roles"}.get(ref.get("kind", ""))
    if ref_resource is not None:
        bind = RequestAttributes(user=user, verb="bind", is_resource_request=True, path="",
                                 api_group=ref.get("apiGroup", ""), resource=ref_resource,
                                 namespace=ns, name=ref.get("name", ""))
        if authorize(bind)[0] == ALLOW:
            return
    if role_rules is None:
        singular = "clusterrole" if ref.get("kind") == "ClusterRole" else "role"
        if ref_resource is None:
            why = f"unsupported role reference kind: {go_quote(ref.get('kind', ''))}"
        else:
            why = f"{singular}.{RBAC_GROUP} {go_quote(ref.get('name', ''))} not found"
        raise forbidden(_forbidden_text(resource, name, why), resource, name, RBAC_GROUP)
    message = confirm_no_escalation(user, ns, role_rules, rules_for)
    if message:
        raise forbidden(_forbidden_text(resource, name, message), resource, name, RBAC_GROUP)


def _forbidden_text(resource: str, name: str, why: str) -> str:
    # apierrors.NewForbidden(rbac group/resource, name, err).
    qualified = f"{resource}.{RBAC_GROUP}"
    if name:
        return f"{qualified} {go_quote(name)} is forbidden: {why}"
    return f"{qualified} is forbidden: {why}"

