"""The bootstrap RBAC policy, as data: plugin/pkg/auth/authorizer/rbac/bootstrappolicy (policy.go,
namespace_policy.go; their testdata/*.yaml is what this mirrors).

Only the roles a kplane cluster has a use for are here (no node, kubelet, scheduler, controller
roles). The aggregate-to-* roles keep upstream's rules restricted to the resources kplane serves
(`SERVED_RESOURCES`), so `kubectl get clusterrole view -o yaml` lists nothing kplane cannot serve;
pass `served=None` to get upstream's full lists.
"""

from __future__ import annotations

import copy
from typing import Any

from .aggregation import aggregate_all

RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_V1 = "rbac.authorization.k8s.io/v1"
BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
BOOTSTRAP_ANNOTATIONS = {"rbac.authorization.kubernetes.io/autoupdate": "true"}

AGGREGATE_TO_ADMIN = "rbac.authorization.k8s.io/aggregate-to-admin"
AGGREGATE_TO_EDIT = "rbac.authorization.k8s.io/aggregate-to-edit"
AGGREGATE_TO_VIEW = "rbac.authorization.k8s.io/aggregate-to-view"

# (group, resource[/subresource]) pairs kplane serves; extend as resources are added.
SERVED_RESOURCES: frozenset[tuple[str, str]] = frozenset({
    ("", "configmaps"), ("", "secrets"), ("", "services"), ("", "services/status"), ("", "endpoints"),
    ("", "serviceaccounts"), ("", "serviceaccounts/token"), ("", "events"), ("", "namespaces"),
    ("", "namespaces/status"),
    ("coordination.k8s.io", "leases"), ("discovery.k8s.io", "endpointslices"),
    (RBAC_GROUP, "roles"), (RBAC_GROUP, "rolebindings"),
    ("authorization.k8s.io", "localsubjectaccessreviews"),
})

READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete", "deletecollection"]
READ_WRITE = READ + WRITE


def _rule(verbs: list[str], groups: list[str] | None = None, resources: list[str] | None = None,
          names: list[str] | None = None, urls: list[str] | None = None) -> dict[str, Any]:
    # PolicyRuleBuilder stores every list as a sorted set; field order is rbacv1.PolicyRule's.
    rule: dict[str, Any] = {"verbs": sorted(set(verbs))}
    if groups is not None:
        rule["apiGroups"] = sorted(set(groups))
    if resources is not None:
        rule["resources"] = sorted(set(resources))
    if names is not None:
        rule["resourceNames"] = sorted(set(names))
    if urls is not None:
        rule["nonResourceURLs"] = sorted(set(urls))
    return rule


def _aggregate_to_admin_rules() -> list[dict]:
    return [
        _rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
        _rule(READ_WRITE, [RBAC_GROUP], ["roles", "rolebindings"]),
    ]


def _aggregate_to_edit_rules() -> list[dict]:
    return [
        # read on escalating resources
        _rule(READ, [""], ["pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets",
                           "services/proxy"]),
        _rule(["impersonate"], [""], ["serviceaccounts"]),
        _rule(WRITE, [""], ["pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"]),
        _rule(["create"], [""], ["pods/eviction"]),
        # endpoints are deliberately absent since 1.22 (CVE-2021-25740).
        _rule(WRITE, [""], ["replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
                            "services", "services/proxy", "persistentvolumeclaims", "configmaps", "secrets",
                            "events"]),
        _rule(["create"], [""], ["serviceaccounts/token"]),
        _rule(WRITE, ["apps"], ["statefulsets", "statefulsets/scale", "daemonsets", "deployments",
                                "deployments/scale", "deployments/rollback", "replicasets",
                                "replicasets/scale"]),
        _rule(WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
        _rule(WRITE, ["batch"], ["jobs", "cronjobs"]),
        _rule(WRITE, ["extensions"], ["daemonsets", "deployments", "deployments/scale", "deployments/rollback",
                                      "ingresses", "replicasets", "replicasets/scale",
                                      "replicationcontrollers/scale", "networkpolicies"]),
        _rule(WRITE, ["policy"], ["poddisruptionbudgets"]),
        _rule(WRITE, ["networking.k8s.io"], ["networkpolicies", "ingresses"]),
        _rule(READ_WRITE, ["coordination.k8s.io"], ["leases"]),
    ]


def _aggregate_to_view_rules() -> list[dict]:
    return [
        _rule(READ, [""], ["pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
                           "services", "services/status", "endpoints", "persistentvolumeclaims",
                           "persistentvolumeclaims/status", "configmaps"]),
        _rule(READ, [""], ["limitranges", "resourcequotas", "bindings", "events", "pods/status",
                           "resourcequotas/status", "namespaces/status", "replicationcontrollers/status",
                           "pods/log"]),
        # Reading namespaces at namespace scope means reading *this* namespace.
        _rule(READ, [""], ["namespaces"]),
        _rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
        _rule(READ, ["apps"], ["controllerrevisions", "statefulsets", "statefulsets/status", "statefulsets/scale",
                               "daemonsets", "daemonsets/status", "deployments", "deployments/status",
                               "deployments/scale", "replicasets", "replicasets/status", "replicasets/scale"]),
        _rule(READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
        _rule(READ, ["batch"], ["jobs", "cronjobs", "cronjobs/status", "jobs/status"]),
        _rule(READ, ["extensions"], ["daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                                     "deployments/status", "ingresses", "ingresses/status", "replicasets",
                                     "replicasets/scale", "replicasets/status", "replicationcontrollers/scale",
                                     "networkpolicies"]),
        _rule(READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        _rule(READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
    ]


def restrict_rules(rules: list[dict], served: frozenset[tuple[str, str]]) -> list[dict]:
    """Keep only the resources in `served` (per group); drop rules left with nothing."""
    out = []
    for rule in rules:
        groups = rule.get("apiGroups") or []
        resources = [r for r in rule.get("resources") or () if any((g, r) in served for g in groups)]
        if resources:
            out.append({**rule, "resources": resources})
    return out


def _meta(name: str, namespace: str = "", labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = {**BOOTSTRAP_LABELS, **(labels or {})}
    meta["annotations"] = dict(BOOTSTRAP_ANNOTATIONS)
    return meta


def _cluster_role(name: str, rules: list[dict] | None = None, labels: dict[str, str] | None = None,
                  aggregate_label: str = "") -> dict[str, Any]:
    role: dict[str, Any] = {"apiVersion": RBAC_V1, "kind": "ClusterRole", "metadata": _meta(name, labels=labels),
                            "rules": rules or []}
    if aggregate_label:
        role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {aggregate_label: "true"}}]}
    return role


def _subject(kind: str, name: str) -> dict[str, str]:
    return {"kind": kind, "apiGroup": RBAC_GROUP, "name": name}


def _cluster_binding(role: str, *groups: str) -> dict[str, Any]:
    return {"apiVersion": RBAC_V1, "kind": "ClusterRoleBinding", "metadata": _meta(role),
            "subjects": [_subject("Group", g) for g in groups],
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role}}


def cluster_roles(served: frozenset[tuple[str, str]] | None = SERVED_RESOURCES) -> list[dict]:
    """The bootstrap ClusterRoles with aggregated roles' `rules` left empty (the controller's job)."""
    def limit(rules: list[dict]) -> list[dict]:
        return rules if served is None else restrict_rules(rules, served)

    return [
        _cluster_role("cluster-admin", [_rule(["*"], ["*"], ["*"]), _rule(["*"], urls=["*"])]),
        _cluster_role("system:discovery", [_rule(["get"], urls=[
            "/livez", "/readyz", "/healthz", "/version", "/version/", "/openapi", "/openapi/*",
            "/api", "/api/*", "/apis", "/apis/*"])]),
        _cluster_role("system:monitoring", [_rule(["get"], urls=[
            "/livez", "/readyz", "/healthz", "/livez/*", "/readyz/*", "/healthz/*", "/metrics",
            "/metrics/slis"])]),
        _cluster_role("system:basic-user", [
            _rule(["create"], ["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
            _rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
        ]),
        _cluster_role("system:public-info-viewer", [_rule(["get"], urls=[
            "/livez", "/readyz", "/healthz", "/version", "/version/"])]),
        _cluster_role("admin", aggregate_label=AGGREGATE_TO_ADMIN),
        _cluster_role("edit", labels={AGGREGATE_TO_ADMIN: "true"}, aggregate_label=AGGREGATE_TO_EDIT),
        _cluster_role("view", labels={AGGREGATE_TO_EDIT: "true"}, aggregate_label=AGGREGATE_TO_VIEW),
        _cluster_role("system:aggregate-to-admin", limit(_aggregate_to_admin_rules()),
                      labels={AGGREGATE_TO_ADMIN: "true"}),
        _cluster_role("system:aggregate-to-edit", limit(_aggregate_to_edit_rules()),
                      labels={AGGREGATE_TO_EDIT: "true"}),
        _cluster_role("system:aggregate-to-view", limit(_aggregate_to_view_rules()),
                      labels={AGGREGATE_TO_VIEW: "true"}),
        _cluster_role("system:auth-delegator", [
            _rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
            _rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
        ]),
        _cluster_role("system:kube-aggregator", [_rule(READ, [""], ["services", "endpoints"])]),
        _cluster_role("system:service-account-issuer-discovery", [_rule(["get"], urls=[
            "/.well-known/openid-configuration", "/openid/v1/jwks"])]),
    ]


def cluster_role_bindings() -> list[dict]:
    return [
        _cluster_binding("cluster-admin", "system:masters"),
        _cluster_binding("system:monitoring", "system:monitoring"),
        _cluster_binding("system:discovery", "system:authenticated"),
        _cluster_binding("system:basic-user", "system:authenticated"),
        _cluster_binding("system:public-info-viewer", "system:authenticated", "system:unauthenticated"),
        _cluster_binding("system:service-account-issuer-discovery", "system:serviceaccounts"),
    ]


def namespaced_objects() -> list[dict]:
    """kube-system's extension-apiserver-authentication-reader Role and its upstream RoleBinding."""
    reader = "extension-apiserver-authentication-reader"
    return [
        {"apiVersion": RBAC_V1, "kind": "Role", "metadata": _meta(reader, "kube-system"),
         "rules": [_rule(READ, [""], ["configmaps"], names=["extension-apiserver-authentication"])]},
        {"apiVersion": RBAC_V1, "kind": "RoleBinding",
         "metadata": _meta("system::" + reader, "kube-system"),
         "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": reader},
         "subjects": [_subject("User", "system:kube-controller-manager"),
                      _subject("User", "system:kube-scheduler")]},
    ]


def bootstrap_objects(served: frozenset[tuple[str, str]] | None = SERVED_RESOURCES,
                      aggregated: bool = True) -> list[dict]:
    """Every bootstrap object, ClusterRoles first. With `aggregated`, admin/edit/view already carry
    the rules the aggregation controller would give them. Fresh copies on every call."""
    roles = cluster_roles(served)
    if aggregated:
        rules = aggregate_all(roles)
        for role in roles:
            name = role["metadata"]["name"]
            if name in rules:
                role["rules"] = copy.deepcopy(rules[name])
    return roles + cluster_role_bindings() + namespaced_objects()
