"""RBAC types (validation, defaulting, columns), bootstrap reconciliation, bearer tokens and the
impersonation filter, without a server."""

from __future__ import annotations

import asyncio

import pytest
from multidict import CIMultiDict

from kplane.apimachinery.errors import StatusError
from kplane.apiserver.auth import ALLOW, NO_OPINION, UserInfo
from kplane.controlplane.authentication import Impersonation, TokenAuthenticator, TokenError, bearer_token
from kplane.controlplane.authn.tokenfile import TokenFileAuthenticator
from kplane.controlplane.authorization import _reconcile_binding, _reconcile_role, only_gc_fields_changed
from kplane.controlplane.types import rbac


def _messages(causes):
    return [f"{c.field}: {c.message}" for c in causes]


def test_policy_rule_validation() -> None:
    role = {"rules": [{"apiGroups": [""], "resources": ["pods"]},
                      {"verbs": ["get"], "nonResourceURLs": ["/x"], "resources": ["pods"]},
                      {"verbs": ["get"]}]}
    assert _messages(rbac.validate_role(role)) == [
        "rules[0].verbs: Required value: verbs must contain at least one value",
        'rules[1].nonResourceURLs: Invalid value: "array": namespaced rules cannot apply to non-resource URLs',
        'rules[1].nonResourceURLs: Invalid value: "array": rules cannot apply to both regular resources and '
        'non-resource URLs',
        "rules[2].apiGroups: Required value: resource rules must supply at least one api group",
        "rules[2].resources: Required value: resource rules must supply at least one resource",
    ]
    assert rbac.validate_cluster_role({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]}) == []
    assert _messages(rbac.validate_cluster_role({"aggregationRule": {}})) == [
        "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if "
        "aggregationRule is non-nil"]


def test_binding_defaults_and_validation() -> None:
    binding = {"roleRef": {"kind": "Role", "name": "r"},
               "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "sa"},
                            {"kind": "Robot", "name": "x"}]}
    rbac.default_binding(binding)
    assert binding["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert [s.get("apiGroup") for s in binding["subjects"]] == ["rbac.authorization.k8s.io", "", None]
    defs = {d.kind: d for d in rbac.resources()}
    assert _messages(defs["ClusterRoleBinding"].validate_create(binding)) == [
        'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"',
        "subjects[1].namespace: Required value",
        'subjects[2].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"',
    ]
    changed = dict(binding, roleRef={**binding["roleRef"], "name": "other"})
    assert "roleRef: Invalid value" in _messages(defs["RoleBinding"].validate_update(changed, binding))[-1]


def test_binding_columns() -> None:
    defs = {d.kind: d for d in rbac.resources()}
    cols = defs["RoleBinding"].columns
    obj = {"metadata": {"name": "b", "creationTimestamp": "2024-01-01T00:00:00Z"},
           "roleRef": {"kind": "ClusterRole", "name": "view"},
           "subjects": [{"kind": "User", "name": "a"}, {"kind": "Group", "name": "g"},
                        {"kind": "ServiceAccount", "name": "s", "namespace": "ns"}, {"kind": "User", "name": "b"}]}
    assert [c.name for c in cols] == ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]
    assert [c.value(obj) for c in cols if c.name != "Age"] == ["b", "ClusterRole/view", "a, b", "g", "ns/s"]
    assert [c.name for c in defs["ClusterRole"].columns] == ["Name", "Created At"]


def test_reconcile_adds_missing_rules_and_subjects_only() -> None:
    expected = {"metadata": {"name": "r", "labels": {"a": "1"}},
                "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}
    existing = {"metadata": {"name": "r", "labels": {"a": "custom"}},
                "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                          {"verbs": ["*"], "apiGroups": ["x"], "resources": ["y"]}]}
    updated = _reconcile_role(existing, expected)
    assert updated is not None
    assert updated["metadata"]["labels"] == {"a": "custom"}
    assert updated["rules"][-1] == {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}
    assert _reconcile_role(updated, expected) is None
    b_expected = {"metadata": {"name": "b"}, "subjects": [{"kind": "Group", "name": "g"}]}
    b_existing = {"metadata": {"name": "b"}, "subjects": [{"kind": "User", "name": "u"}]}
    assert _reconcile_binding(b_existing, b_expected)["subjects"] == [
        {"kind": "User", "name": "u"}, {"kind": "Group", "name": "g"}]


def test_only_gc_fields_changed() -> None:
    old = {"metadata": {"name": "r", "resourceVersion": "1"}, "rules": []}
    assert only_gc_fields_changed({"metadata": {"name": "r", "finalizers": ["x"]}, "rules": []}, old)
    assert not only_gc_fields_changed({"metadata": {"name": "r"}, "rules": [{"verbs": ["get"]}]}, old)


class _Req:
    def __init__(self, headers: dict[str, str] | list[tuple[str, str]]) -> None:
        self.headers = CIMultiDict(headers)


def test_bearer_tokens() -> None:
    assert bearer_token(_Req({"Authorization": "Bearer abc"})) == "abc"
    assert bearer_token(_Req({"Authorization": "bearer abc"})) == "abc"
    assert bearer_token(_Req({"Authorization": "Basic abc"})) is None
    assert bearer_token(_Req({})) is None
    tokens = TokenAuthenticator(TokenFileAuthenticator.from_csv('t1,carol,1,"a,b"\n'), None)
    assert tokens.authenticate("t1") == UserInfo("carol", ("a", "b", "system:authenticated"), "1")
    with pytest.raises(TokenError, match="^invalid bearer token$"):
        tokens.authenticate("nope")


def test_impersonation() -> None:
    seen = []

    def authorize(attrs):
        seen.append((attrs.verb, attrs.api_group, attrs.resource, attrs.subresource, attrs.namespace, attrs.name))
        return (ALLOW, "") if attrs.name != "forbidden-group" else (NO_OPINION, "")

    imp = Impersonation(authorize)
    me = UserInfo("alice", ("system:authenticated",))
    run = asyncio.run
    assert run(imp(_Req({}), me)) is me
    user = run(imp(_Req([("Impersonate-User", "system:serviceaccount:ns:sa"),
                         ("Impersonate-Extra-Scope%2Fx", "s1")]), me))
    assert user == UserInfo("system:serviceaccount:ns:sa",
                            ("system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"),
                            "", {"scope/x": ("s1",)})
    assert seen == [("impersonate", "", "serviceaccounts", "", "ns", "sa"),
                    ("impersonate", "authentication.k8s.io", "userextras", "scope/x", "", "s1")]
    user = run(imp(_Req([("Impersonate-User", "bob"), ("Impersonate-Group", "g1"),
                         ("Impersonate-Group", "g2")]), me))
    assert user.groups == ("g1", "g2", "system:authenticated")
    with pytest.raises(StatusError) as e:
        run(imp(_Req([("Impersonate-User", "bob"), ("Impersonate-Group", "forbidden-group")]), me))
    assert e.value.code == 403
    assert e.value.message == ('groups "forbidden-group" is forbidden: User "alice" cannot impersonate resource '
                               '"groups" in API group "" at the cluster scope')
    with pytest.raises(StatusError) as e:
        run(imp(_Req({"Impersonate-Group": "g"}), me))
    assert e.value.code == 400  # upstream says 500; a client mistake is a 400 here
