"""RBAC authorizer, aggregation, bootstrap policy and forbidden messages."""

from __future__ import annotations

import pytest

from kplane.apiserver.auth import ALLOW, DENY, NO_OPINION, RequestAttributes, UserInfo
from kplane.controlplane.rbac.aggregation import aggregate, aggregate_all
from kplane.controlplane.rbac.authorizer import (
    RBACAuthorizer,
    aggregate_errors,
    allow_masters,
    forbidden_error,
    forbidden_message,
    rule_allows,
    union_authorize,
)
from kplane.controlplane.rbac.bootstrap import bootstrap_objects, cluster_roles, restrict_rules


class FakeRoles:
    """A RoleSource over a flat list of rbac objects."""

    def __init__(self, objects: list[dict]) -> None:
        self.objects = objects

    def _of(self, kind: str, namespace: str | None = None) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind
                and (namespace is None or o["metadata"].get("namespace") == namespace)]

    def cluster_roles(self) -> list[dict]:
        return self._of("ClusterRole")

    def cluster_role_bindings(self) -> list[dict]:
        return self._of("ClusterRoleBinding")

    def roles(self, namespace: str) -> list[dict]:
        return self._of("Role", namespace)

    def role_bindings(self, namespace: str) -> list[dict]:
        return self._of("RoleBinding", namespace)

    def cluster_role(self, name: str) -> dict | None:
        return next((o for o in self.cluster_roles() if o["metadata"]["name"] == name), None)

    def role(self, namespace: str, name: str) -> dict | None:
        return next((o for o in self.roles(namespace) if o["metadata"]["name"] == name), None)


def binding(kind: str, name: str, role_kind: str, role: str, subjects: list[dict], namespace: str = "") -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "subjects": subjects,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}}


def user(name: str, *groups: str) -> UserInfo:
    return UserInfo(name=name, groups=groups)


def res(u: UserInfo, verb: str, resource: str, namespace: str = "", name: str = "", group: str = "",
        subresource: str = "") -> RequestAttributes:
    return RequestAttributes(user=u, verb=verb, is_resource_request=True, path="", api_group=group,
                             api_version="v1", resource=resource, subresource=subresource,
                             namespace=namespace, name=name)


def nonres(u: UserInfo, verb: str, path: str) -> RequestAttributes:
    return RequestAttributes(user=u, verb=verb, is_resource_request=False, path=path)


ALICE = user("alice", "devs")
BOB = user("bob")
SA = user("system:serviceaccount:ns1:builder", "system:serviceaccounts", "system:serviceaccounts:ns1",
          "system:authenticated")

OBJECTS = bootstrap_objects() + [
    {"kind": "ClusterRole", "metadata": {"name": "cm-reader-named"},
     "rules": [{"verbs": ["get", "update"], "apiGroups": [""], "resources": ["configmaps"],
                "resourceNames": ["app-config"]}]},
    {"kind": "ClusterRole", "metadata": {"name": "log-reader"},
     "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["*/log"]},
               {"verbs": ["get"], "apiGroups": [""], "resources": ["pods/status"]}]},
    {"kind": "ClusterRole", "metadata": {"name": "metrics"},
     "rules": [{"verbs": ["get"], "nonResourceURLs": ["/metrics", "/debug/*"]}]},
    {"kind": "Role", "metadata": {"name": "secret-lister", "namespace": "ns1"},
     "rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["secrets"]}]},
    # alice: view in ns1 only, via a RoleBinding to the ClusterRole
    binding("RoleBinding", "alice-view", "ClusterRole", "view", [{"kind": "User", "name": "alice"}], "ns1"),
    # the "devs" group: a named configmap anywhere
    binding("ClusterRoleBinding", "devs-named", "ClusterRole", "cm-reader-named",
            [{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}]),
    binding("ClusterRoleBinding", "bob-logs", "ClusterRole", "log-reader", [{"kind": "User", "name": "bob"}]),
    binding("ClusterRoleBinding", "bob-metrics", "ClusterRole", "metrics", [{"kind": "User", "name": "bob"}]),
    # SA subject without a namespace: defaults to the RoleBinding's namespace
    binding("RoleBinding", "builder-secrets", "Role", "secret-lister",
            [{"kind": "ServiceAccount", "name": "builder"}], "ns1"),
    # the same SA bound in another namespace with an explicit namespace
    binding("RoleBinding", "builder-edit", "ClusterRole", "edit",
            [{"kind": "ServiceAccount", "name": "builder", "namespace": "ns1"}], "ns2"),
    # every service account of ns1 can read configmaps in ns3 via the group
    binding("RoleBinding", "ns1-sas-view", "ClusterRole", "view",
            [{"kind": "Group", "name": "system:serviceaccounts:ns1"}], "ns3"),
]

RBAC = RBACAuthorizer(FakeRoles(OBJECTS))


@pytest.mark.parametrize("attrs, decision", [
    # view (RoleBinding -> ClusterRole) in ns1 only
    (res(ALICE, "list", "configmaps", "ns1"), ALLOW),
    (res(ALICE, "get", "configmaps", "ns1", "x"), ALLOW),
    (res(ALICE, "watch", "services", "ns1"), ALLOW),
    (res(ALICE, "create", "configmaps", "ns1"), NO_OPINION),
    (res(ALICE, "delete", "configmaps", "ns1", "x"), NO_OPINION),
    (res(ALICE, "get", "secrets", "ns1", "s"), NO_OPINION),  # view never reads secrets
    (res(ALICE, "list", "configmaps", "ns2"), NO_OPINION),
    (res(ALICE, "list", "configmaps"), NO_OPINION),  # all-namespaces list is cluster scope
    (res(ALICE, "list", "leases", "ns1", group="coordination.k8s.io"), NO_OPINION),  # leases: edit only
    (res(ALICE, "list", "endpointslices", "ns1", group="discovery.k8s.io"), ALLOW),
    (res(ALICE, "list", "endpointslices", "ns1", group=""), NO_OPINION),  # group must match
    # resourceNames: only that name; never list (name "")
    (res(ALICE, "update", "configmaps", "ns9", "app-config"), ALLOW),
    (res(ALICE, "update", "configmaps", "ns9", "other"), NO_OPINION),
    (res(ALICE, "list", "configmaps", "ns9"), NO_OPINION),
    # "*/log" matches any parent's log subresource; exact "pods/status" only pods
    (res(BOB, "get", "pods", "ns1", "p", subresource="log"), ALLOW),
    (res(BOB, "get", "nodes", "", "n", subresource="log"), ALLOW),
    (res(BOB, "get", "pods", "ns1", "p"), NO_OPINION),
    (res(BOB, "get", "pods", "ns1", "p", subresource="status"), ALLOW),
    (res(BOB, "get", "services", "ns1", "p", subresource="status"), NO_OPINION),
    # nonResourceURLs, with a trailing "*" prefix match
    (nonres(BOB, "get", "/metrics"), ALLOW),
    (nonres(BOB, "get", "/metrics/slis"), NO_OPINION),
    (nonres(BOB, "get", "/debug/pprof/heap"), ALLOW),
    (nonres(BOB, "get", "/debug/"), ALLOW),
    (nonres(BOB, "get", "/debug"), NO_OPINION),
    (nonres(BOB, "post", "/metrics"), NO_OPINION),
    # ServiceAccount subjects and groups
    (res(SA, "list", "secrets", "ns1"), ALLOW),
    (res(SA, "get", "secrets", "ns1", "x"), NO_OPINION),
    (res(SA, "create", "configmaps", "ns2"), ALLOW),
    (res(SA, "create", "configmaps", "ns1"), NO_OPINION),
    (res(SA, "get", "configmaps", "ns3", "c"), ALLOW),
    (res(user("system:serviceaccount:ns2:builder", "system:serviceaccounts:ns2"), "list", "secrets", "ns1"),
     NO_OPINION),
    # bootstrap bindings: discovery and basic-user for system:authenticated
    (nonres(user("carol", "system:authenticated"), "get", "/apis/apps/v1"), ALLOW),
    (nonres(user("carol", "system:authenticated"), "get", "/version"), ALLOW),
    (nonres(user("system:anonymous", "system:unauthenticated"), "get", "/healthz"), ALLOW),
    (nonres(user("system:anonymous", "system:unauthenticated"), "get", "/apis"), NO_OPINION),
    (res(user("carol", "system:authenticated"), "create", "selfsubjectaccessreviews",
         group="authorization.k8s.io"), ALLOW),
    (nonres(user("prom", "system:monitoring"), "get", "/metrics"), ALLOW),
    (nonres(user("prom", "system:monitoring"), "get", "/readyz/etcd"), ALLOW),
    # system:masters is bound to cluster-admin by the bootstrap policy
    (res(user("admin", "system:masters"), "deletecollection", "widgets", "ns1", group="example.com"), ALLOW),
    (nonres(user("admin", "system:masters"), "put", "/anything"), ALLOW),
])
def test_authorize(attrs: RequestAttributes, decision: str) -> None:
    assert RBAC.authorize(attrs)[0] == decision


def test_allow_reason_names_the_binding() -> None:
    assert RBAC.authorize(res(ALICE, "list", "configmaps", "ns1")) == (
        ALLOW, 'RBAC: allowed by RoleBinding "alice-view/ns1" of ClusterRole "view" to User "alice"')
    assert RBAC.authorize(res(SA, "list", "secrets", "ns1")) == (
        ALLOW, ('RBAC: allowed by RoleBinding "builder-secrets/ns1" of Role "secret-lister" '
               'to ServiceAccount "builder/ns1"'))
    assert RBAC.authorize(nonres(BOB, "get", "/metrics")) == (
        ALLOW, 'RBAC: allowed by ClusterRoleBinding "bob-metrics" of ClusterRole "metrics" to User "bob"')


def test_missing_roles_are_the_denial_reason() -> None:
    rbac = RBACAuthorizer(FakeRoles([
        binding("ClusterRoleBinding", "b1", "ClusterRole", "gone", [{"kind": "User", "name": "u"}]),
        binding("RoleBinding", "b2", "Role", "gone-too", [{"kind": "User", "name": "u"}], "ns"),
        binding("RoleBinding", "b3", "Role", "gone-too", [{"kind": "User", "name": "u"}], "ns"),
    ]))
    u = user("u")
    assert rbac.authorize(res(u, "get", "pods", "ns", "p")) == (
        NO_OPINION, ('RBAC: [clusterrole.rbac.authorization.k8s.io "gone" not found, '
                    'role.rbac.authorization.k8s.io "gone-too" not found]'))
    assert rbac.authorize(res(u, "get", "pods", "", "p")) == (
        NO_OPINION, 'RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found')
    assert rbac.authorize(res(user("other"), "get", "pods", "ns", "p")) == (NO_OPINION, "")


def test_rule_allows_requires_every_field() -> None:
    rule = {"verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments/scale"]}
    assert rule_allows(res(BOB, "get", "deployments", "n", "d", "apps", "scale"), rule)
    assert not rule_allows(res(BOB, "get", "deployments", "n", "d", "apps"), rule)
    assert not rule_allows(res(BOB, "get", "deployments", "n", "d", "extensions", "scale"), rule)
    assert not rule_allows(nonres(BOB, "get", "/apis/apps"), rule)


def test_aggregate_errors_dedupes() -> None:
    assert aggregate_errors([]) == ""
    assert aggregate_errors(["a"]) == "a"
    assert aggregate_errors(["a", "a"]) == "a"
    assert aggregate_errors(["a", "b", "a"]) == "[a, b]"


def test_union_with_masters() -> None:
    rbac = RBACAuthorizer(FakeRoles([]))  # no bootstrap bindings at all
    masters = res(user("root", "system:masters"), "delete", "namespaces", "", "kube-system")
    assert rbac.authorize(masters) == (NO_OPINION, "")
    assert allow_masters(masters) == (ALLOW, "")
    assert union_authorize([allow_masters, rbac.authorize], masters) == (ALLOW, "")
    assert union_authorize([allow_masters, rbac.authorize], res(BOB, "get", "pods", "n")) == (NO_OPINION, "")

    def deny(attrs: RequestAttributes) -> tuple[str, str]:
        return DENY, "nope"

    assert union_authorize([lambda a: (NO_OPINION, "r1"), deny, allow_masters], masters) == (DENY, "nope")
    assert union_authorize([lambda a: (NO_OPINION, "r1"), lambda a: (NO_OPINION, "r2")], masters) == (
        NO_OPINION, "r1\nr2")


def test_rules_for_self_subject_rules_review() -> None:
    review = RBAC.rules_for(BOB, "ns1")
    assert review.incomplete is False and review.evaluation_error == ""
    assert review.resource_rules == [
        {"verbs": ["get"], "apiGroups": [""], "resources": ["*/log"]},
        {"verbs": ["get"], "apiGroups": [""], "resources": ["pods/status"]},
    ]
    assert review.non_resource_rules == [{"verbs": ["get"], "nonResourceURLs": ["/metrics", "/debug/*"]}]

    sa_review = RBAC.rules_for(SA, "ns1")
    assert {"verbs": ["list"], "apiGroups": [""], "resources": ["secrets"]} in sa_review.resource_rules
    named = RBAC.rules_for(ALICE, "")
    assert named.resource_rules == [{"verbs": ["get", "update"], "apiGroups": [""], "resources": ["configmaps"],
                                     "resourceNames": ["app-config"]}]

    broken = RBACAuthorizer(FakeRoles([
        binding("ClusterRoleBinding", "b1", "ClusterRole", "gone", [{"kind": "User", "name": "bob"}])]))
    assert broken.rules_for(BOB, "ns1") == ([], [], False, 'clusterrole.rbac.authorization.k8s.io "gone" not found')


@pytest.mark.parametrize("attrs, reason, message", [
    (res(user("x"), "list", "configmaps", "y"), "",
     'User "x" cannot list resource "configmaps" in API group "" in the namespace "y"'),
    (res(user("x"), "get", "configmaps", "y", "cm1"), "",
     'User "x" cannot get resource "configmaps" in API group "" in the namespace "y"'),
    (res(user("x"), "list", "namespaces"), "",
     'User "x" cannot list resource "namespaces" in API group "" at the cluster scope'),
    (res(user("x"), "get", "pods", "y", "p", subresource="log"), "",
     'User "x" cannot get resource "pods/log" in API group "" in the namespace "y"'),
    (res(user("x"), "create", "clusterroles", group="rbac.authorization.k8s.io"), "",
     'User "x" cannot create resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope'),
    (nonres(user("x"), "get", "/foo"), "", 'User "x" cannot get path "/foo"'),
    (res(user("x"), "get", "pods", "y", "p"), 'RBAC: role.rbac.authorization.k8s.io "r" not found',
     ('User "x" cannot get resource "pods" in API group "" in the namespace "y": '
     'RBAC: role.rbac.authorization.k8s.io "r" not found')),
])
def test_forbidden_message(attrs: RequestAttributes, reason: str, message: str) -> None:
    assert forbidden_message(attrs, reason) == message


def test_forbidden_error_wraps_like_new_forbidden() -> None:
    err = forbidden_error(res(user("x"), "get", "configmaps", "y", "cm1"))
    assert (err.code, err.reason) == (403, "Forbidden")
    assert err.message == ('configmaps "cm1" is forbidden: User "x" cannot get resource "configmaps" '
                           'in API group "" in the namespace "y"')
    assert err.details == {"name": "cm1", "kind": "configmaps"}

    err = forbidden_error(res(user("x"), "list", "deployments", "y", group="apps", subresource="scale"))
    assert err.message == ('deployments.apps is forbidden: User "x" cannot list resource "deployments/scale" '
                           'in API group "apps" in the namespace "y"')
    assert err.details == {"group": "apps", "kind": "deployments"}

    err = forbidden_error(nonres(user("system:anonymous"), "get", "/"))
    assert err.message == 'forbidden: User "system:anonymous" cannot get path "/"'
    assert err.details == {}


# ---------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------


def cr(name: str, labels: dict | None = None, rules: list | None = None, selectors: list | None = None) -> dict:
    role: dict = {"kind": "ClusterRole", "metadata": {"name": name, "labels": labels or {}}, "rules": rules or []}
    if selectors is not None:
        role["aggregationRule"] = {"clusterRoleSelectors": selectors}
    return role


R1 = {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}
R2 = {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}
R3 = {"verbs": ["get"], "apiGroups": ["example.com"], "resources": ["widgets"]}


def test_aggregate_unions_matching_roles_by_name() -> None:
    parent = cr("parent", selectors=[{"matchLabels": {"agg": "yes"}}])
    roles = [
        parent,
        cr("z-child", {"agg": "yes"}, [R2, R1]),
        cr("a-child", {"agg": "yes"}, [R1]),
        cr("other", {"agg": "no"}, [R3]),
        cr("nolabels", None, [R3]),
    ]
    # a-child first (sorted by name), the duplicate R1 from z-child dropped
    assert aggregate(parent, roles) == [R1, R2]
    assert aggregate(cr("plain"), roles) is None


def test_aggregate_selectors_in_order_with_expressions() -> None:
    parent = cr("parent", {"tier": "x"}, selectors=[
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold", "silver"]}]},
        {"matchLabels": {"extra": "true"}},
    ])
    roles = [
        parent,
        cr("a", {"extra": "true"}, [R3]),
        cr("b", {"tier": "silver"}, [R2]),
        cr("c", {"tier": "bronze"}, [R1]),
    ]
    assert aggregate(parent, roles) == [R2, R3]
    # semantic equality: a missing list equals []
    dup = dict(R3, resourceNames=[])
    assert aggregate(parent, roles + [cr("d", {"extra": "true"}, [dup])]) == [R2, R3]


def test_aggregate_does_not_include_itself_and_empty_selector_matches_all() -> None:
    parent = cr("parent", {"self": "true"}, [R3], selectors=[{}])
    assert aggregate(parent, [parent, cr("a", None, [R1])]) == [R1]


def test_aggregate_all_reaches_nested_fixpoint() -> None:
    roles = cluster_roles()
    result = aggregate_all(roles)
    assert set(result) == {"admin", "edit", "view"}
    view_rules, edit_rules, admin_rules = result["view"], result["edit"], result["admin"]
    assert all(r in edit_rules for r in view_rules)
    assert all(r in admin_rules for r in edit_rules)
    assert {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
            "resources": ["localsubjectaccessreviews"]} in admin_rules
    assert not any("localsubjectaccessreviews" in (r.get("resources") or []) for r in edit_rules)
    assert next(r for r in roles if r["metadata"]["name"] == "admin")["rules"] == []  # inputs untouched


# ---------------------------------------------------------------------------------------------
# Bootstrap policy
# ---------------------------------------------------------------------------------------------


def by_name(kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in bootstrap_objects() if o["kind"] == kind}


def test_bootstrap_metadata_and_bindings() -> None:
    for obj in bootstrap_objects():
        assert obj["apiVersion"] == "rbac.authorization.k8s.io/v1"
        assert obj["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
        assert obj["metadata"]["annotations"] == {"rbac.authorization.kubernetes.io/autoupdate": "true"}
    bindings = {n: ([s["name"] for s in b["subjects"]], b["roleRef"]["name"])
                for n, b in by_name("ClusterRoleBinding").items()}
    assert bindings == {
        "cluster-admin": (["system:masters"], "cluster-admin"),
        "system:monitoring": (["system:monitoring"], "system:monitoring"),
        "system:discovery": (["system:authenticated"], "system:discovery"),
        "system:basic-user": (["system:authenticated"], "system:basic-user"),
        "system:public-info-viewer": (["system:authenticated", "system:unauthenticated"],
                                      "system:public-info-viewer"),
        "system:service-account-issuer-discovery": (["system:serviceaccounts"],
                                                    "system:service-account-issuer-discovery"),
    }
    role = by_name("Role")["extension-apiserver-authentication-reader"]
    assert role["metadata"]["namespace"] == "kube-system"
    assert role["rules"] == [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["configmaps"],
                              "resourceNames": ["extension-apiserver-authentication"]}]


def test_bootstrap_cluster_roles_match_upstream() -> None:
    roles = by_name("ClusterRole")
    assert roles["system:public-info-viewer"]["rules"] == [
        {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]}]
    assert roles["system:discovery"]["rules"][0]["nonResourceURLs"] == [
        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
        "/version", "/version/"]
    assert roles["system:basic-user"]["rules"] == [
        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
         "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
        {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]}]
    assert roles["view"]["aggregationRule"] == {
        "clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]}
    assert roles["view"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert roles["edit"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    # restricted to served resources by default, full upstream lists on request
    served = [r for rule in roles["system:aggregate-to-view"]["rules"] for r in rule["resources"]]
    assert "pods" not in served and "configmaps" in served
    full = {o["metadata"]["name"]: o for o in cluster_roles(served=None)}
    assert "pods" in full["system:aggregate-to-view"]["rules"][0]["resources"]
    # endpoints are readable but not writable by edit (CVE-2021-25740)
    sa = user("e", "editors")
    bound = FakeRoles(bootstrap_objects() + [binding("RoleBinding", "e", "ClusterRole", "edit",
                                                     [{"kind": "Group", "name": "editors"}], "n")])
    edit = RBACAuthorizer(bound)
    assert edit.authorize(res(sa, "get", "endpoints", "n", "e"))[0] == ALLOW
    assert edit.authorize(res(sa, "update", "endpoints", "n", "e"))[0] == NO_OPINION
    assert edit.authorize(res(sa, "create", "secrets", "n"))[0] == ALLOW
    assert edit.authorize(res(sa, "create", "roles", "n", group="rbac.authorization.k8s.io"))[0] == NO_OPINION


def test_restrict_rules_drops_unserved() -> None:
    rules = [{"verbs": ["get"], "apiGroups": ["", "apps"], "resources": ["pods", "configmaps", "deployments"]},
             {"verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments"]}]
    assert restrict_rules(rules, frozenset({("", "configmaps"), ("apps", "deployments")})) == [
        {"verbs": ["get"], "apiGroups": ["", "apps"], "resources": ["configmaps", "deployments"]},
        {"verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments"]}]
    assert restrict_rules(rules, frozenset()) == []
