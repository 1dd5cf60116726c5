"""The RBAC authorizer, as plugin/pkg/auth/authorizer/rbac (rbac.go) and
pkg/registry/rbac/validation/rule.go (the rule resolver) do it.

Roles and bindings are plain rbac.authorization.k8s.io/v1 dicts supplied by a `RoleSource`; the
authorizer never aggregates ClusterRoles itself: like upstream it reads the `rules` the aggregation
controller has already written into aggregated roles (see aggregation.py).

`system:masters` is not special here. Upstream allows it through a separate "privileged groups"
authorizer placed before RBAC in the chain; `allow_masters` is that authorizer, and
`union_authorize` chains authorizers the way the union authorizer does:

    decision, reason = union_authorize([allow_masters, rbac.authorize], attrs)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, Protocol

from kplane.apimachinery.errors import StatusError
from kplane.apimachinery.validation import go_quote
from kplane.apiserver.auth import ALLOW, DENY, NO_OPINION, RequestAttributes, UserInfo

Rule = dict[str, Any]  # an rbac/v1 PolicyRule
Authorize = Callable[[RequestAttributes], tuple[str, str]]

SYSTEM_MASTERS = "system:masters"
RBAC_GROUP = "rbac.authorization.k8s.io"
SA_PREFIX = "system:serviceaccount:"

VERB_ALL = "*"
API_GROUP_ALL = "*"
RESOURCE_ALL = "*"
NON_RESOURCE_ALL = "*"


class RoleSource(Protocol):
    """Where the authorizer reads roles and bindings from (a watch cache / lister upstream)."""

    def cluster_roles(self) -> list[dict]: ...
    def cluster_role_bindings(self) -> list[dict]: ...
    def roles(self, namespace: str) -> list[dict]: ...
    def role_bindings(self, namespace: str) -> list[dict]: ...
    def cluster_role(self, name: str) -> dict | None: ...
    def role(self, namespace: str, name: str) -> dict | None: ...


# ---------------------------------------------------------------------------------------------
# Rule matching (pkg/apis/rbac/v1/evaluation_helpers.go)
# ---------------------------------------------------------------------------------------------


def verb_matches(rule: Rule, verb: str) -> bool:
    return any(v == VERB_ALL or v == verb for v in rule.get("verbs") or ())


def api_group_matches(rule: Rule, group: str) -> bool:
    return any(g == API_GROUP_ALL or g == group for g in rule.get("apiGroups") or ())


def resource_matches(rule: Rule, combined_resource: str, subresource: str) -> bool:
    """`combined_resource` is "resource" or "resource/subresource"; "*/sub" matches any parent."""
    for r in rule.get("resources") or ():
        if r == RESOURCE_ALL or r == combined_resource:
            return True
        if subresource and r == "*/" + subresource:
            return True
    return False


def resource_name_matches(rule: Rule, name: str) -> bool:
    # No resourceNames means "every name"; a list / create request (name "") only matches that.
    names = rule.get("resourceNames") or ()
    return not names or name in names


def non_resource_url_matches(rule: Rule, path: str) -> bool:
    for url in rule.get("nonResourceURLs") or ():
        if url == NON_RESOURCE_ALL or url == path:
            return True
        # A trailing "*" is a prefix match; upstream trims every trailing "*" (strings.TrimRight).
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(attrs: RequestAttributes, rule: Rule) -> bool:
    if attrs.is_resource_request:
        combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        return (verb_matches(rule, attrs.verb)
                and api_group_matches(rule, attrs.api_group)
                and resource_matches(rule, combined, attrs.subresource)
                and resource_name_matches(rule, attrs.name))
    return verb_matches(rule, attrs.verb) and non_resource_url_matches(rule, attrs.path)


# ---------------------------------------------------------------------------------------------
# Subjects
# ---------------------------------------------------------------------------------------------


def service_account_username(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def applies_to_user(user: UserInfo, subject: dict, namespace: str) -> bool:
    """Whether a binding subject names this user. `namespace` is the RoleBinding's namespace ("" for
    ClusterRoleBindings): it defaults a ServiceAccount subject's namespace. ServiceAccount subjects
    match by user name only; the system:serviceaccounts[:ns] groups are Group subjects."""
    kind = subject.get("kind", "")
    name = subject.get("name", "")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        sa_namespace = subject.get("namespace") or namespace
        if not sa_namespace:
            return False
        return user.name == service_account_username(sa_namespace, name)
    return False


def _first_applying_subject(user: UserInfo, binding: dict, namespace: str) -> dict | None:
    for subject in binding.get("subjects") or ():
        if applies_to_user(user, subject, namespace):
            return subject
    return None


def describe_subject(subject: dict, binding_namespace: str) -> str:
    kind, name = subject.get("kind", ""), subject.get("name", "")
    if kind == "ServiceAccount":
        return f"{kind} {go_quote(name + '/' + (subject.get('namespace') or binding_namespace))}"
    return f"{kind} {go_quote(name)}"


def _describe_binding(binding: dict, subject: dict, namespace: str) -> str:
    """The `source` in "RBAC: allowed by <source>" (clusterRoleBindingDescriber / roleBindingDescriber);
    `namespace` is "" for a ClusterRoleBinding."""
    meta = binding.get("metadata") or {}
    ref = binding.get("roleRef") or {}
    if namespace:
        # Upstream prints "name/namespace" here, in that order.
        return (f"RoleBinding {go_quote(meta.get('name', '') + '/' + namespace)} of {ref.get('kind', '')} "
                f"{go_quote(ref.get('name', ''))} to {describe_subject(subject, namespace)}")
    return (f"ClusterRoleBinding {go_quote(meta.get('name', ''))} of {ref.get('kind', '')} "
            f"{go_quote(ref.get('name', ''))} to {describe_subject(subject, '')}")


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class RoleResolutionError(Exception):
    """A binding whose roleRef cannot be resolved; str() is the upstream error text."""


def aggregate_errors(messages: Iterable[str]) -> str:
    """utilerrors.NewAggregate(errs).Error(): one message as is, several de-duplicated in "[a, b]"."""
    msgs = list(messages)
    if not msgs:
        return ""
    if len(msgs) == 1:
        return msgs[0]
    unique = list(dict.fromkeys(msgs))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


# ---------------------------------------------------------------------------------------------
# The authorizer
# ---------------------------------------------------------------------------------------------


class RulesReview(NamedTuple):
    """What SelfSubjectRulesReview's status is built from (authorizer.RuleResolver.RulesFor)."""

    resource_rules: list[dict]  # authorization/v1 ResourceRule dicts
    non_resource_rules: list[dict]  # authorization/v1 NonResourceRule dicts
    incomplete: bool  # always False for RBAC, as upstream
    evaluation_error: str  # "" when every binding resolved; goes to status.evaluationError


class RBACAuthorizer:
    def __init__(self, get_roles: RoleSource) -> None:
        self._source = get_roles

    def role_ref_rules(self, role_ref: dict, binding_namespace: str) -> list[Rule]:
        """GetRoleReferenceRules: the rules a roleRef points at. Raises RoleResolutionError."""
        kind, name = role_ref.get("kind", ""), role_ref.get("name", "")
        if kind == "Role":
            role = self._source.role(binding_namespace, name)
            if role is None:
                # The lister's NotFound uses the singular resource, hence "role.rbac...".
                raise RoleResolutionError(f"role.{RBAC_GROUP} {go_quote(name)} not found")
            return list(role.get("rules") or [])
        if kind == "ClusterRole":
            cluster_role = self._source.cluster_role(name)
            if cluster_role is None:
                raise RoleResolutionError(f"clusterrole.{RBAC_GROUP} {go_quote(name)} not found")
            return list(cluster_role.get("rules") or [])
        raise RoleResolutionError(f"unsupported role reference kind: {go_quote(kind)}")

    def visit_rules_for(self, user: UserInfo, namespace: str) -> Iterator[tuple[str, Rule | None, str]]:
        """Yields (source description, rule, "") for every rule granted to `user` in `namespace`
        (cluster-wide bindings first, then the namespace's RoleBindings), and ("", None, error) for
        each binding whose role is missing. Lazy, so authorize() stops at the first allowing rule."""
        yield from self._visit_bindings(user, self._source.cluster_role_bindings(), "")
        if namespace:
            yield from self._visit_bindings(user, self._source.role_bindings(namespace), namespace)

    def _visit_bindings(self, user: UserInfo, bindings: list[dict],
                        namespace: str) -> Iterator[tuple[str, Rule | None, str]]:
        for binding in bindings:
            subject = _first_applying_subject(user, binding, namespace)
            if subject is None:
                continue
            try:
                rules = self.role_ref_rules(binding.get("roleRef") or {}, namespace)
            except RoleResolutionError as e:
                yield "", None, str(e)
                continue
            source = _describe_binding(binding, subject, namespace)
            for rule in rules:
                yield source, rule, ""

    def authorize(self, attrs: RequestAttributes) -> tuple[str, str]:
        """(ALLOW, "RBAC: allowed by ...") or (NO_OPINION, reason). RBAC never denies outright;
        the reason names unresolvable roles ("RBAC: clusterrole... not found") or is ""."""
        errors: list[str] = []
        for source, rule, error in self.visit_rules_for(attrs.user, attrs.namespace):
            if rule is not None and rule_allows(attrs, rule):
                return ALLOW, f"RBAC: allowed by {source}"
            if error:
                errors.append(error)
        reason = f"RBAC: {aggregate_errors(errors)}" if errors else ""
        return NO_OPINION, reason

    def policy_rules_for(self, user: UserInfo, namespace: str) -> tuple[list[Rule], str]:
        """DefaultRuleResolver.RulesFor: every PolicyRule the user holds in `namespace` (cluster-wide
        ones included) and the aggregated resolution error ("" if none). Escalation checks use this."""
        rules: list[Rule] = []
        errors: list[str] = []
        for _source, rule, error in self.visit_rules_for(user, namespace):
            if rule is not None:
                rules.append(rule)
            if error:
                errors.append(error)
        return rules, aggregate_errors(errors)

    def rules_for(self, user: UserInfo, namespace: str) -> RulesReview:
        """RBACAuthorizer.RulesFor, shaped as SelfSubjectRulesReview status entries."""
        rules, error = self.policy_rules_for(user, namespace)
        resource_rules: list[dict] = []
        non_resource_rules: list[dict] = []
        for rule in rules:
            if rule.get("resources"):
                rr: dict[str, Any] = {"verbs": list(rule.get("verbs") or [])}
                for key in ("apiGroups", "resources", "resourceNames"):  # omitempty
                    if rule.get(key):
                        rr[key] = list(rule[key])
                resource_rules.append(rr)
            if rule.get("nonResourceURLs"):
                non_resource_rules.append({"verbs": list(rule.get("verbs") or []),
                                           "nonResourceURLs": list(rule["nonResourceURLs"])})
        return RulesReview(resource_rules, non_resource_rules, False, error)


# ---------------------------------------------------------------------------------------------
# The privileged-groups authorizer and the union
# ---------------------------------------------------------------------------------------------


def allow_masters(attrs: RequestAttributes) -> tuple[str, str]:
    """authorizerfactory.NewPrivilegedGroups(system:masters): allow members, no opinion otherwise."""
    if SYSTEM_MASTERS in attrs.user.groups:
        return ALLOW, ""
    return NO_OPINION, ""


def union_authorize(authorizers: Iterable[Authorize], attrs: RequestAttributes) -> tuple[str, str]:
    """The union authorizer: the first Allow or Deny wins; otherwise NoOpinion with every non-empty
    reason joined by newlines."""
    reasons: list[str] = []
    for authorize in authorizers:
        decision, reason = authorize(attrs)
        if decision in (ALLOW, DENY):
            return decision, reason
        if reason:
            reasons.append(reason)
    return NO_OPINION, "\n".join(reasons)


# ---------------------------------------------------------------------------------------------
# 403 messages (k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go)
# ---------------------------------------------------------------------------------------------


def forbidden_message(attrs: RequestAttributes, reason: str = "") -> str:
    """forbiddenMessage(attrs), plus ": <reason>" when the authorizer gave one."""
    user = go_quote(attrs.user.name)
    if not attrs.is_resource_request:
        msg = f"User {user} cannot {attrs.verb} path {go_quote(attrs.path)}"
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        what = f"User {user} cannot {attrs.verb} resource {go_quote(resource)} in API group {go_quote(attrs.api_group)}"
        if attrs.namespace:
            msg = f"{what} in the namespace {go_quote(attrs.namespace)}"
        else:
            msg = f"{what} at the cluster scope"
    return f"{msg}: {reason}" if reason else msg


def forbidden_error(attrs: RequestAttributes, reason: str = "") -> StatusError:
    """responsewriters.Forbidden: apierrors.NewForbidden(group/resource, name, forbiddenMessage).

    The details are {} for non-resource requests; upstream serialises that as "details": {}."""
    inner = forbidden_message(attrs, reason)
    resource, group, name = attrs.resource, attrs.api_group, attrs.name
    if not resource and not group:
        return StatusError(403, "Forbidden", f"forbidden: {inner}", {})
    qualified = f"{resource}.{group}" if group else resource
    message = f"{qualified} {go_quote(name)} is forbidden: {inner}" if name else f"{qualified} is forbidden: {inner}"
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = resource
    return StatusError(403, "Forbidden", message, details)
