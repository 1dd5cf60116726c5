"""RBAC escalation prevention: Covers, the compact message, role and binding checks."""

from __future__ import annotations

import pytest

from kplane.apimachinery.errors import StatusError
from kplane.apiserver.auth import UserInfo
from kplane.controlplane.rbac.authorizer import RBACAuthorizer, allow_masters, union_authorize
from kplane.controlplane.rbac.bootstrap import bootstrap_objects
from kplane.controlplane.rbac.escalation import (
    breakdown_rule,
    check_binding,
    check_role_create,
    compact_rules,
    compact_string,
    covers,
)
from tests.unit.test_rbac import FakeRoles, binding


def rule(verbs: list[str], groups: list[str] | None = None, resources: list[str] | None = None,
         names: list[str] | None = None, urls: list[str] | None = None) -> dict:
    r: dict = {"verbs": verbs}
    if groups is not None:
        r["apiGroups"] = groups
    if resources is not None:
        r["resources"] = resources
    if names is not None:
        r["resourceNames"] = names
    if urls is not None:
        r["nonResourceURLs"] = urls
    return r


# ---------------------------------------------------------------------------------------------
# Covers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("owner, requested, ok", [
    ([rule(["*"], ["*"], ["*"])], [rule(["get", "delete"], ["apps"], ["deployments", "deployments/scale"])], True),
    ([rule(["get", "list"], [""], ["pods"])], [rule(["get"], [""], ["pods"])], True),
    ([rule(["get"], [""], ["pods"])], [rule(["get", "list"], [""], ["pods"])], False),
    ([rule(["get"], [""], ["pods"]), rule(["list"], [""], ["pods"])], [rule(["get", "list"], [""], ["pods"])],
     True),
    ([rule(["get"], [""], ["pods"])], [rule(["get"], ["apps"], ["pods"])], False),
    # "*/subresource" covers any parent's subresource, not the parent
    ([rule(["get"], [""], ["*/status"])], [rule(["get"], [""], ["pods/status", "services/status"])], True),
    ([rule(["get"], [""], ["*/status"])], [rule(["get"], [""], ["pods"])], False),
    # resourceNames: named owner never covers unnamed; unnamed owner covers named
    ([rule(["get"], [""], ["configmaps"], ["a"])], [rule(["get"], [""], ["configmaps"])], False),
    ([rule(["get"], [""], ["configmaps"], ["a", "b"])], [rule(["get"], [""], ["configmaps"], ["a"])], True),
    ([rule(["get"], [""], ["configmaps"], ["a"])], [rule(["get"], [""], ["configmaps"], ["a", "c"])], False),
    ([rule(["get"], [""], ["configmaps"])], [rule(["get"], [""], ["configmaps"], ["z"])], True),
    # non-resource URLs, "*" suffix prefix-match
    ([rule(["get"], urls=["/api/*"])], [rule(["get"], urls=["/api/v1", "/api/"])], True),
    ([rule(["get"], urls=["/api/*"])], [rule(["get"], urls=["/api"])], False),
    ([rule(["*"], urls=["*"])], [rule(["get", "post"], urls=["/anything"])], True),
    ([rule(["*"], urls=["*"])], [rule(["get"], [""], ["pods"])], False),
    ([rule(["*"], ["*"], ["*"])], [rule(["get"], urls=["/healthz"])], False),
    ([], [], True),
])
def test_covers(owner: list[dict], requested: list[dict], ok: bool) -> None:
    assert covers(owner, requested)[0] is ok


def test_covers_returns_uncovered_atoms() -> None:
    ok, missing = covers([rule(["get"], [""], ["pods"])],
                         [rule(["get", "delete"], [""], ["pods", "secrets"]), rule(["get"], urls=["/x"])])
    assert not ok
    assert missing == [rule(["delete"], [""], ["pods"]), rule(["get"], [""], ["secrets"]),
                       rule(["delete"], [""], ["secrets"]), rule(["get"], urls=["/x"])]


def test_breakdown_and_compact() -> None:
    atoms = breakdown_rule(rule(["get", "list"], [""], ["configmaps"], ["a", "b"]))
    assert atoms == [rule(["get"], [""], ["configmaps"], ["a"]), rule(["get"], [""], ["configmaps"], ["b"]),
                     rule(["list"], [""], ["configmaps"], ["a"]), rule(["list"], [""], ["configmaps"], ["b"])]
    assert compact_rules(atoms) == [rule(["get", "list"], [""], ["configmaps"], ["a"]),
                                    rule(["get", "list"], [""], ["configmaps"], ["b"])]
    assert compact_string(rule(["get", "list"], [""], ["configmaps"], ["a"])) == \
        '{APIGroups:[""], Resources:["configmaps"], ResourceNames:["a"], Verbs:["get" "list"]}'
    assert compact_string(rule(["get"], urls=["/x"])) == '{NonResourceURLs:["/x"], Verbs:["get"]}'


# ---------------------------------------------------------------------------------------------
# Role and binding checks
# ---------------------------------------------------------------------------------------------

DEV = UserInfo(name="dev", groups=("devs", "system:authenticated"))
ROOT = UserInfo(name="root", groups=("system:masters", "system:authenticated"))


def make(extra: list[dict]) -> tuple[RBACAuthorizer, object]:
    rbac = RBACAuthorizer(FakeRoles(bootstrap_objects() + extra))
    return rbac, (lambda attrs: union_authorize([allow_masters, rbac.authorize], attrs))


DEV_IS_EDITOR = [binding("RoleBinding", "dev-edit", "ClusterRole", "edit", [{"kind": "User", "name": "dev"}], "ns")]


def test_role_within_own_permissions_is_allowed() -> None:
    rbac, authorize = make(DEV_IS_EDITOR)
    check_role_create(DEV, [rule(["get", "create"], [""], ["configmaps"])], "ns", rbac.policy_rules_for, authorize,
                      name="r")


def test_role_escalation_is_forbidden_with_upstream_message() -> None:
    rbac, authorize = make(DEV_IS_EDITOR)
    with pytest.raises(StatusError) as err:
        check_role_create(DEV, [rule(["get", "create"], [""], ["configmaps", "nodes"]),
                                rule(["get"], urls=["/metrics"])],
                          "ns", rbac.policy_rules_for, authorize, name="r")
    e = err.value
    assert (e.code, e.reason) == (403, "Forbidden")
    assert e.details == {"name": "r", "group": "rbac.authorization.k8s.io", "kind": "roles"}
    assert e.message == (
        'roles.rbac.authorization.k8s.io "r" is forbidden: user "dev" '
        '(groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["nodes"], Verbs:["get" "create"]}\n'
        '{NonResourceURLs:["/metrics"], Verbs:["get"]}')


def test_role_in_other_namespace_is_escalation() -> None:
    rbac, authorize = make(DEV_IS_EDITOR)
    with pytest.raises(StatusError):
        check_role_create(DEV, [rule(["get"], [""], ["configmaps"])], "other", rbac.policy_rules_for, authorize)


def test_escalate_verb_allows_anything() -> None:
    escalate = [
        {"kind": "ClusterRole", "metadata": {"name": "escalator"},
         "rules": [rule(["escalate"], ["rbac.authorization.k8s.io"], ["clusterroles"])]},
        binding("ClusterRoleBinding", "dev-escalate", "ClusterRole", "escalator", [{"kind": "User", "name": "dev"}]),
    ]
    rbac, authorize = make(escalate)
    check_role_create(DEV, [rule(["*"], ["*"], ["*"])], "", rbac.policy_rules_for, authorize, name="big",
                      has_aggregation_rule=True)
    # escalate on clusterroles does not extend to namespaced roles
    with pytest.raises(StatusError):
        check_role_create(DEV, [rule(["*"], ["*"], ["*"])], "ns", rbac.policy_rules_for, authorize)


def test_aggregation_rule_needs_full_authority() -> None:
    rbac, authorize = make([binding("ClusterRoleBinding", "dev-view", "ClusterRole", "view",
                                    [{"kind": "User", "name": "dev"}])])
    with pytest.raises(StatusError) as err:
        check_role_create(DEV, [], "", rbac.policy_rules_for, authorize, name="agg", has_aggregation_rule=True)
    assert err.value.message == ('clusterroles.rbac.authorization.k8s.io "agg" is forbidden: must have '
                                 'cluster-admin privileges to use the aggregationRule')
    check_role_create(DEV, [rule(["get"], [""], ["configmaps"])], "", rbac.policy_rules_for, authorize, name="ok")


def test_masters_skip_every_check() -> None:
    _rbac, authorize = make([])
    check_role_create(ROOT, [rule(["*"], ["*"], ["*"])], "", lambda u, ns: ([], ""), authorize,
                      has_aggregation_rule=True)
    check_binding(ROOT, binding("ClusterRoleBinding", "x", "ClusterRole", "missing", []), None,
                  lambda u, ns: ([], ""), authorize)


def test_binding_to_role_within_permissions_is_allowed() -> None:
    rbac, authorize = make(DEV_IS_EDITOR)
    b = binding("RoleBinding", "friend-view", "ClusterRole", "view", [{"kind": "User", "name": "friend"}], "ns")
    check_binding(DEV, b, rbac.role_ref_rules(b["roleRef"], "ns"), rbac.policy_rules_for, authorize)


def test_binding_to_stronger_role_is_forbidden() -> None:
    rbac, authorize = make(DEV_IS_EDITOR)
    b = binding("RoleBinding", "me-admin", "ClusterRole", "admin", [{"kind": "User", "name": "dev"}], "ns")
    with pytest.raises(StatusError) as err:
        check_binding(DEV, b, rbac.role_ref_rules(b["roleRef"], "ns"), rbac.policy_rules_for, authorize)
    msg = err.value.message
    assert msg.startswith('rolebindings.rbac.authorization.k8s.io "me-admin" is forbidden: user "dev" '
                          '(groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions '
                          'not currently held:\n')
    assert msg.splitlines()[1:] == [
        '{APIGroups:["authorization.k8s.io"], Resources:["localsubjectaccessreviews"], Verbs:["create"]}',
        ('{APIGroups:["rbac.authorization.k8s.io"], Resources:["rolebindings"], '
        'Verbs:["create" "delete" "deletecollection" "get" "list" "patch" "update" "watch"]}'),
        ('{APIGroups:["rbac.authorization.k8s.io"], Resources:["roles"], '
        'Verbs:["create" "delete" "deletecollection" "get" "list" "patch" "update" "watch"]}'),
    ]
    # the same binding as a ClusterRoleBinding: dev holds nothing cluster-wide
    cb = binding("ClusterRoleBinding", "me-view", "ClusterRole", "view", [{"kind": "User", "name": "dev"}])
    with pytest.raises(StatusError) as err:
        check_binding(DEV, cb, rbac.role_ref_rules(cb["roleRef"], ""), rbac.policy_rules_for, authorize)
    assert err.value.message.startswith('clusterrolebindings.rbac.authorization.k8s.io "me-view" is forbidden: ')
    assert err.value.details == {"name": "me-view", "group": "rbac.authorization.k8s.io",
                                 "kind": "clusterrolebindings"}


def test_bind_verb_allows_binding_that_role_only() -> None:
    binder = DEV_IS_EDITOR + [
        {"kind": "ClusterRole", "metadata": {"name": "admin-binder"},
         "rules": [rule(["bind"], ["rbac.authorization.k8s.io"], ["clusterroles"], ["admin"])]},
        binding("RoleBinding", "dev-binder", "ClusterRole", "admin-binder", [{"kind": "User", "name": "dev"}], "ns"),
    ]
    rbac, authorize = make(binder)
    admin = binding("RoleBinding", "x", "ClusterRole", "admin", [{"kind": "User", "name": "other"}], "ns")
    check_binding(DEV, admin, rbac.role_ref_rules(admin["roleRef"], "ns"), rbac.policy_rules_for, authorize)
    # bind is checked in the binding's namespace
    elsewhere = binding("RoleBinding", "x", "ClusterRole", "admin", [{"kind": "User", "name": "other"}], "ns2")
    with pytest.raises(StatusError):
        check_binding(DEV, elsewhere, rbac.role_ref_rules(elsewhere["roleRef"], "ns2"), rbac.policy_rules_for,
                      authorize)
    # ... and only for the named role
    cadmin = binding("RoleBinding", "y", "ClusterRole", "cluster-admin", [{"kind": "User", "name": "o"}], "ns")
    with pytest.raises(StatusError):
        check_binding(DEV, cadmin, rbac.role_ref_rules(cadmin["roleRef"], "ns"), rbac.policy_rules_for, authorize)
    # with bind, a missing role is fine; without it, it is the error
    missing = binding("RoleBinding", "z", "ClusterRole", "admin", [], "ns")
    check_binding(DEV, missing, None, rbac.policy_rules_for, authorize)
    missing_role = binding("RoleBinding", "z", "Role", "nope", [], "ns")
    with pytest.raises(StatusError) as err:
        check_binding(DEV, missing_role, None, rbac.policy_rules_for, authorize)
    assert err.value.message == ('rolebindings.rbac.authorization.k8s.io "z" is forbidden: '
                                 'role.rbac.authorization.k8s.io "nope" not found')


def test_resolution_errors_are_appended() -> None:
    rbac, authorize = make(DEV_IS_EDITOR + [
        binding("RoleBinding", "dangling", "Role", "gone", [{"kind": "User", "name": "dev"}], "ns")])
    with pytest.raises(StatusError) as err:
        check_role_create(DEV, [rule(["get"], [""], ["nodes"])], "ns", rbac.policy_rules_for, authorize, name="r")
    assert err.value.message.endswith(
        '{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}; '
        'resolution errors: [role.rbac.authorization.k8s.io "gone" not found]')
