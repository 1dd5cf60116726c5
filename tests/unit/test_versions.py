"""Kubernetes-aware version ordering (CompareKubeAwareVersionStrings)."""

from __future__ import annotations

import pytest

from kplane.apimachinery.versions import (
    compare_kube_aware_version_strings,
    parse_kube_version,
    sort_versions,
    version_priority_key,
)


def test_upstream_documented_order() -> None:
    # The example ordering from the CustomResourceDefinition versioning docs.
    expected = ["v10", "v2", "v1", "v11beta2", "v10beta3", "v3beta1", "v12alpha1", "v11alpha2",
                "foo1", "foo10"]
    shuffled = ["foo10", "v11alpha2", "v1", "v3beta1", "foo1", "v10beta3", "v2", "v12alpha1", "v10",
                "v11beta2"]
    assert sort_versions(shuffled) == expected


@pytest.mark.parametrize(
    ("v1", "v2", "sign"),
    [
        ("v1", "v1", 0),
        ("v1", "v1beta1", 1),
        ("v1beta1", "v1alpha1", 1),
        ("v1alpha1", "v1", -1),
        ("v2", "v1", 1),
        ("v1beta2", "v1beta1", 1),
        ("v2beta1", "v1beta2", 1),
        ("v1alpha1", "foo", 1),
        ("foo", "v1alpha1", -1),
        ("abc", "abd", 1),  # non-conforming: alphabetically earlier has higher priority
        ("v1.0", "v1", -1),
        ("V1", "v1alpha1", -1),
    ],
)
def test_compare(v1: str, v2: str, sign: int) -> None:
    result = compare_kube_aware_version_strings(v1, v2)
    assert (result > 0) - (result < 0) == sign


@pytest.mark.parametrize(
    ("v", "parsed"),
    [
        ("v1", (1, 2, 0)),
        ("v2beta3", (2, 1, 3)),
        ("v10alpha1", (10, 0, 1)),
        ("v1gamma1", None),
        ("v1beta", None),
        ("1", None),
        ("v", None),
        ("v1 ", None),
        ("v99999999999999999999", None),  # does not fit strconv.Atoi
        ("v\u0661", None),  # non-ASCII digit
    ],
)
def test_parse_kube_version(v: str, parsed: tuple[int, int, int] | None) -> None:
    assert parse_kube_version(v) == parsed


def test_key_agrees_with_compare() -> None:
    versions = ["v1", "v2", "v1beta1", "v1beta2", "v2alpha1", "v3alpha3", "zeta", "alpha", "v0"]
    for a in versions:
        for b in versions:
            cmp = compare_kube_aware_version_strings(a, b)
            ka, kb = version_priority_key(a), version_priority_key(b)
            assert (cmp > 0) == (ka < kb) and (cmp == 0) == (ka == kb), (a, b)
