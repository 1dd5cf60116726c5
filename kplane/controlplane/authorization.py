"""Authorization wired into the running control plane.

- `RegistryRoleSource`: the RBAC authorizer's view of roles and bindings, read synchronously from
  the four RBAC registries' watch caches (upstream reads informer listers the same way).
- `ControlPlaneAuthorizer`: the union authorizer of `--authorization-mode` (system:masters first,
  then RBAC, or AlwaysAllow), async as GenericAPIServer wants it.
- Escalation prevention as registry hooks on create/update of roles and bindings
  (pkg/registry/rbac/*/policybased).
- `AggregationController`: writes aggregated rules into ClusterRoles with an aggregationRule
  (pkg/controller/clusterroleaggregation).
- `reconcile_bootstrap_policy`: creates the bootstrap roles and bindings at startup and adds what
  is missing to existing ones whose `rbac.authorization.kubernetes.io/autoupdate` is not "false"
  (the rbac/bootstrap-roles post-start hook).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from kplane.apimachinery import errors
from kplane.apiserver.auth import ALLOW, RequestAttributes, UserInfo
from kplane.apiserver.registry import ListOptions, Registry, WriteOptions
from kplane.controlplane.controller import Controller
from kplane.controlplane.rbac.aggregation import aggregate
from kplane.controlplane.rbac.authorizer import (
    RBACAuthorizer,
    RoleResolutionError,
    allow_masters,
    union_authorize,
)
from kplane.controlplane.rbac.bootstrap import bootstrap_objects
from kplane.controlplane.rbac.escalation import check_binding, check_role_create, covers

log = logging.getLogger("kplane.rbac")

RBAC_GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
Obj = dict[str, Any]

MODES = ("RBAC", "AlwaysAllow", "AlwaysDeny")


_RBAC_PLURALS = ("clusterroles", "clusterrolebindings", "roles", "rolebindings")


class RegistryRoleSource:
    """RoleSource over the RBAC registries' watch caches. Lists are memoised per cache revision."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self._memo: dict[str, tuple[int, list[dict]]] = {}
        self._revision = server.caches_revision([(RBAC_GROUP, "v1", plural) for plural in _RBAC_PLURALS])

    def _registry(self, plural: str) -> Registry | None:
        return self._server.registries.get((RBAC_GROUP, "v1", plural))

    def _list(self, plural: str, namespace: str = "") -> list[dict]:
        reg = self._registry(plural)
        if reg is None or reg.cacher is None:
            return []
        prefix = reg.rdef.key_prefix(namespace or None)
        revision = reg.cacher.revision
        hit = self._memo.get(prefix)
        if hit is not None and hit[0] == revision:
            return hit[1]
        items = [obj for _kv, obj in reg.cacher.list(prefix)[0]]
        self._memo[prefix] = (revision, items)
        return items

    def _get(self, plural: str, namespace: str, name: str) -> dict | None:
        reg = self._registry(plural)
        if reg is None or reg.cacher is None or not name:
            return None
        hit = reg.cacher.get(reg.rdef.key(namespace or None, name))
        return hit[1] if hit is not None else None

    def revision(self) -> int:
        """Changes whenever any role or binding may have (-1 while a cache is not there)."""
        return self._revision()

    def cluster_roles(self) -> list[dict]:
        return self._list("clusterroles")

    def cluster_role_bindings(self) -> list[dict]:
        return self._list("clusterrolebindings")

    def roles(self, namespace: str) -> list[dict]:
        return self._list("roles", namespace) if namespace else []

    def role_bindings(self, namespace: str) -> list[dict]:
        return self._list("rolebindings", namespace) if namespace else []

    def cluster_role(self, name: str) -> dict | None:
        return self._get("clusterroles", "", name)

    def role(self, namespace: str, name: str) -> dict | None:
        return self._get("roles", namespace, name) if namespace else None


def _always_allow(_attrs: RequestAttributes) -> tuple[str, str]:
    return ALLOW, ""


def _always_deny(_attrs: RequestAttributes) -> tuple[str, str]:
    return "Deny", ""


class ControlPlaneAuthorizer:
    """--authorization-mode as a union: system:masters, then each mode in order."""

    # Anonymous requests RBAC does not allow get 403 (not 401), as upstream.
    authorizes_anonymous = True

    def __init__(self, server: Any, modes: list[str] | None = None) -> None:
        self.modes = list(modes or ["RBAC"])
        unknown = [m for m in self.modes if m not in MODES]
        if unknown:
            raise ValueError(f"unknown authorization mode(s) {unknown}; supported: {', '.join(MODES)}")
        self.source = RegistryRoleSource(server)
        self.rbac = RBACAuthorizer(self.source)
        chain = [allow_masters]
        for mode in self.modes:
            chain.append({"RBAC": self.rbac.authorize, "AlwaysAllow": _always_allow,
                          "AlwaysDeny": _always_deny}[mode])
        self._chain = chain

    def authorize_sync(self, attrs: RequestAttributes) -> tuple[str, str]:
        return union_authorize(self._chain, attrs)

    def revision(self) -> int | None:
        """What the decisions depend on besides the request: equal revisions, equal decisions
        for equal attributes. None when they cannot be told apart (no cache to read it from)."""
        if "RBAC" not in self.modes:
            return 0
        revision = self.source.revision()
        return None if revision < 0 else revision

    async def authorize(self, attrs: RequestAttributes) -> tuple[str, str]:
        return self.authorize_sync(attrs)

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[dict], list[dict], bool, str]:
        """The union rule resolver for SelfSubjectRulesReview: (resource rules, non-resource rules,
        incomplete, evaluation error)."""
        resource: list[dict] = []
        non_resource: list[dict] = []
        incomplete = False
        errs: list[str] = []
        # The system:masters authorizer is not a rule resolver upstream: masters see their RBAC
        # rules (the cluster-admin binding) only.
        for mode in self.modes:
            if mode == "RBAC":
                review = self.rbac.rules_for(user, namespace)
                resource += review.resource_rules
                non_resource += review.non_resource_rules
                if review.evaluation_error:
                    errs.append(review.evaluation_error)
            elif mode == "AlwaysAllow":
                resource.append({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
                non_resource.append({"verbs": ["*"], "nonResourceURLs": ["*"]})
            else:
                incomplete = True
        return resource, non_resource, incomplete, "; ".join(errs)


# ---------------------------------------------------------------------------------------------
# Escalation prevention
# ---------------------------------------------------------------------------------------------


def only_gc_fields_changed(new: Obj, old: Obj) -> bool:
    """rbacregistry.IsOnlyMutatingGCFields: nothing but ownerReferences/finalizers (and server-set
    bookkeeping) differ."""
    def strip(o: Obj) -> Obj:
        c = copy.deepcopy(o)
        m = c.get("metadata") or {}
        for k in ("ownerReferences", "finalizers", "resourceVersion", "managedFields", "selfLink"):
            m.pop(k, None)
        return c
    return strip(new) == strip(old)


class EscalationChecks:
    def __init__(self, authorizer: ControlPlaneAuthorizer) -> None:
        self.authorizer = authorizer
        self.rbac = authorizer.rbac

    def install(self, server: Any) -> None:
        for plural, create, update in (
                ("roles", self._role_create, self._role_update),
                ("clusterroles", self._role_create, self._role_update),
                ("rolebindings", self._binding_create, self._binding_update),
                ("clusterrolebindings", self._binding_create, self._binding_update)):
            reg = server.registries[(RBAC_GROUP, "v1", plural)]
            reg.before_create.append(create)
            reg.before_update.append(update)

    def _check_role(self, obj: Obj, opts: WriteOptions, old: Obj | None) -> None:
        user = opts.user
        if user is None:  # an in-process write (bootstrap, controllers): privileged loopback
            return
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace", "") if obj.get("kind") == "Role" else ""
        check_role_create(user, list(obj.get("rules") or []), namespace, self.rbac.policy_rules_for,
                          self.authorizer.authorize_sync, name=meta.get("name", ""),
                          request_name=opts.name if old is not None else "",
                          has_aggregation_rule=obj.get("aggregationRule") is not None
                          or (old is not None and old.get("aggregationRule") is not None))

    async def _role_create(self, obj: Obj, opts: WriteOptions) -> None:
        self._check_role(obj, opts, None)

    async def _role_update(self, new: Obj, old: Obj, opts: WriteOptions) -> None:
        if not only_gc_fields_changed(new, old):
            self._check_role(new, opts, old)

    def _check_binding(self, obj: Obj, opts: WriteOptions) -> None:
        user = opts.user
        if user is None:
            return
        namespace = (obj.get("metadata") or {}).get("namespace", "") if obj.get("kind") == "RoleBinding" else ""
        try:
            rules: list[dict] | None = self.rbac.role_ref_rules(obj.get("roleRef") or {}, namespace)
        except RoleResolutionError:
            rules = None
        check_binding(user, obj, rules, self.rbac.policy_rules_for, self.authorizer.authorize_sync,
                      namespace=namespace)

    async def _binding_create(self, obj: Obj, opts: WriteOptions) -> None:
        self._check_binding(obj, opts)

    async def _binding_update(self, new: Obj, old: Obj, opts: WriteOptions) -> None:
        if not only_gc_fields_changed(new, old):
            self._check_binding(new, opts)


# ---------------------------------------------------------------------------------------------
# ClusterRole aggregation
# ---------------------------------------------------------------------------------------------


def _normalized(rules: list[dict] | None) -> list[tuple]:
    fields = ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs")
    return [tuple(tuple(r.get(f) or ()) for f in fields) for r in rules or ()]


class AggregationController(Controller):
    """Keeps every aggregated ClusterRole's rules equal to the union of its selected roles."""

    def __init__(self, server: Any) -> None:
        super().__init__()
        self.registry: Registry = server.registries[(RBAC_GROUP, "v1", "clusterroles")]
        self._kick = asyncio.Event()

    async def sync_all(self) -> None:
        """Aggregate until nothing changes (nested aggregation settles over several passes)."""
        for _ in range(10):
            listed = await self.registry.list("", ListOptions())
            roles = listed.items
            changed = False
            for role in roles:
                rules = aggregate(role, roles)
                if rules is None or _normalized(rules) == _normalized(role.get("rules")):
                    continue
                role["rules"] = rules
                try:
                    await self.registry.update("", role["metadata"]["name"], role, WriteOptions(
                        field_manager="clusterrole-aggregation-controller"))
                    changed = True
                except errors.StatusError as e:
                    if e.code not in (404, 409):
                        raise
                    changed = True  # retry on the next pass
            if not changed:
                return

    async def _run(self) -> None:
        while True:
            try:
                await self.sync_all()
                listed = await self.registry.list("", ListOptions())
                async for _ev in self.registry.watch("", ListOptions(resource_version=listed.resource_version),
                                                     send_initial_events=False):
                    await self.sync_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("msg=%r", "clusterrole aggregation failed; retrying")
            await asyncio.sleep(1.0)


# ---------------------------------------------------------------------------------------------
# Bootstrap policy
# ---------------------------------------------------------------------------------------------


def _merge(expected: dict | None, existing: dict | None) -> dict:
    # reconciliation's merge(expected, existing): existing values win, missing keys are added.
    return {**(expected or {}), **(existing or {})}


def _reconcile_meta(existing: Obj, expected: Obj) -> bool:
    """Merge the expected labels and annotations into `existing`; whether that changed it."""
    m, em = existing.setdefault("metadata", {}), expected["metadata"]
    changed = False
    for key in ("labels", "annotations"):
        merged = _merge(em.get(key), m.get(key))
        if merged != (m.get(key) or {}):
            m[key] = merged
            changed = True
    return changed


def _reconcile_role(existing: Obj, expected: Obj) -> Obj | None:
    """The updated role if it needs changes, else None (pkg/registry/rbac/reconciliation)."""
    changed = _reconcile_meta(existing, expected)
    if expected.get("aggregationRule") is not None:
        rule = existing.get("aggregationRule") or {}
        selectors = list(rule.get("clusterRoleSelectors") or [])
        for sel in expected["aggregationRule"].get("clusterRoleSelectors") or []:
            if sel not in selectors:
                selectors.append(sel)
                changed = True
        existing["aggregationRule"] = {"clusterRoleSelectors": selectors}
    else:
        ok, missing = covers(list(existing.get("rules") or []), list(expected.get("rules") or []))
        if not ok:
            existing["rules"] = list(existing.get("rules") or []) + missing
            changed = True
    return existing if changed else None


def _reconcile_binding(existing: Obj, expected: Obj) -> Obj | None:
    changed = _reconcile_meta(existing, expected)
    subjects = list(existing.get("subjects") or [])
    for s in expected.get("subjects") or []:
        if s not in subjects:
            subjects.append(s)
            changed = True
    existing["subjects"] = subjects
    return existing if changed else None


_PLURALS = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings", "Role": "roles",
            "RoleBinding": "rolebindings"}


async def reconcile_bootstrap_policy(server: Any) -> None:
    """Create or top up every bootstrap object. In-process writes (no user): no escalation checks."""
    for expected in bootstrap_objects():
        kind = expected["kind"]
        reg: Registry = server.registries[(RBAC_GROUP, "v1", _PLURALS[kind])]
        meta = expected["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        try:
            existing = await reg.get(namespace, name)
        except errors.StatusError as e:
            if e.code != 404:
                raise
            try:
                await reg.create(namespace, copy.deepcopy(expected), WriteOptions(field_manager="kplane"))
            except errors.StatusError as ce:
                if ce.code != 409:
                    raise
            continue
        if (existing["metadata"].get("annotations") or {}).get(AUTOUPDATE) == "false":
            continue
        if kind.endswith("Binding"):
            if existing.get("roleRef") != expected.get("roleRef"):
                # roleRef is immutable: recreate, as upstream's reconciliation does.
                await reg.delete(namespace, name, {}, WriteOptions())
                await reg.create(namespace, copy.deepcopy(expected), WriteOptions(field_manager="kplane"))
                continue
            updated = _reconcile_binding(existing, expected)
        else:
            updated = _reconcile_role(existing, expected)
        if updated is not None:
            log.info("msg=%r kind=%s name=%s", "reconciled bootstrap RBAC object", kind, name)
            await reg.update(namespace, name, updated, WriteOptions(field_manager="kplane"))
