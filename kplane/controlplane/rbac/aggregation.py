"""ClusterRole aggregation, as pkg/controller/clusterroleaggregation does it.

A ClusterRole with an `aggregationRule` owns no rules of its own: its `rules` are the union of the
rules of every other ClusterRole whose labels match one of its `clusterRoleSelectors`. The caller
(a controller) writes the result back into the role; the authorizer only ever reads `rules`.
"""

from __future__ import annotations

from typing import Any

from kplane.apimachinery.selectors import label_selector_from_dict

Rule = dict[str, Any]

_RULE_FIELDS = ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs")


def _normalized(rule: Rule) -> tuple:
    # equality.Semantic.DeepEqual: a missing list, null and [] are the same rule.
    return tuple(tuple(rule.get(f) or ()) for f in _RULE_FIELDS)


def aggregate(cluster_role: dict, all_cluster_roles: list[dict]) -> list[Rule] | None:
    """The rules `cluster_role` should hold, or None if it has no aggregationRule.

    Selectors are visited in order; within one selector the matching roles are visited by name.
    The role itself is skipped, and a rule already collected (semantically equal) is not repeated.
    Matching roles contribute their *current* rules, so nested aggregation (admin <- edit <- view)
    settles over several passes, exactly like the controller; `aggregate_all` runs it to a fixpoint.
    An invalid selector raises the selector module's 400 StatusError.
    """
    rule_spec = cluster_role.get("aggregationRule")
    if rule_spec is None:
        return None
    own_name = (cluster_role.get("metadata") or {}).get("name", "")
    by_name = sorted(all_cluster_roles, key=lambda r: (r.get("metadata") or {}).get("name", ""))
    collected: list[Rule] = []
    seen: set[tuple] = set()
    for selector_dict in rule_spec.get("clusterRoleSelectors") or ():
        # A present selector is never "nil": {} selects every ClusterRole.
        selector = label_selector_from_dict(selector_dict or {})
        for other in by_name:
            meta = other.get("metadata") or {}
            if meta.get("name", "") == own_name or not selector.matches(meta.get("labels") or {}):
                continue
            for rule in other.get("rules") or ():
                key = _normalized(rule)
                if key not in seen:
                    seen.add(key)
                    collected.append(rule)
    return collected


def aggregate_all(cluster_roles: list[dict], max_passes: int = 10) -> dict[str, list[Rule]]:
    """Aggregate every aggregated ClusterRole until nothing changes (or `max_passes`, which guards
    against selector cycles). Returns {name: rules} for the aggregated roles only; inputs are not
    mutated. Useful at bootstrap, where admin/edit/view nest."""
    current = {(r.get("metadata") or {}).get("name", ""): dict(r) for r in cluster_roles}
    result: dict[str, list[Rule]] = {}
    for _ in range(max_passes):
        changed = False
        for name, role in current.items():
            rules = aggregate(role, list(current.values()))
            if rules is None:
                continue
            result[name] = rules
            if [_normalized(r) for r in rules] != [_normalized(r) for r in role.get("rules") or ()]:
                role["rules"] = rules
                changed = True
        if not changed:
            break
    return result
