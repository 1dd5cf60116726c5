"""Name and ObjectMeta validation with upstream's exact messages."""

from __future__ import annotations

import pytest

from kplane.apimachinery.errors import Cause
from kplane.apimachinery.validation import (
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    is_valid_path_segment_name,
    is_valid_path_segment_prefix,
    validate_object_meta,
    validate_object_meta_update,
)

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    r"validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
    "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation "
    "is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("example.com", []),
        ("a", []),
        ("0-a.b-9", []),
        ("Example.com", [SUBDOMAIN_MSG]),
        ("a..b", [SUBDOMAIN_MSG]),
        ("-a", [SUBDOMAIN_MSG]),
        ("a.", [SUBDOMAIN_MSG]),
        ("", [SUBDOMAIN_MSG]),
        ("a\n", [SUBDOMAIN_MSG]),  # Go's $ does not accept a trailing newline
        ("a" * 253, []),
        ("a" * 254, ["must be no more than 253 characters"]),
        ("A" * 254, ["must be no more than 253 characters", SUBDOMAIN_MSG]),
    ],
)
def test_is_dns1123_subdomain(value: str, errors: list[str]) -> None:
    assert is_dns1123_subdomain(value) == errors


@pytest.mark.parametrize(
    ("fn", "value", "errors"),
    [
        (is_dns1123_label, "my-name", []),
        (is_dns1123_label, "123-abc", []),
        (is_dns1123_label, "a.b", [LABEL_MSG]),
        (is_dns1123_label, "a" * 64, ["must be no more than 63 characters"]),
        (is_dns1035_label, "my-name", []),
        (is_dns1035_label, "1abc", [DNS1035_MSG]),
        (is_dns1035_label, "abc-", [DNS1035_MSG]),
        (is_dns1035_label, "a" * 64, ["must be no more than 63 characters"]),
    ],
)
def test_dns_labels(fn, value: str, errors: list[str]) -> None:
    assert fn(value) == errors


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("app", []),
        ("example.com/App_1.x", []),
        ("/a", ["prefix part must be non-empty"]),
        ("a/", ["name part must be non-empty", "name part " + QNAME_MSG]),
        ("Example.com/a", ["prefix part " + SUBDOMAIN_MSG]),
        ("a/b/c", ["a qualified name " + QNAME_MSG
                   + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]),
        ("-a", ["name part " + QNAME_MSG]),
        ("a" * 64, ["name part must be no more than 63 characters"]),
    ],
)
def test_is_qualified_name(value: str, errors: list[str]) -> None:
    assert is_qualified_name(value) == errors


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("", []),
        ("My_Value-1.2", []),
        ("a b", [LABEL_VALUE_MSG]),
        ("a" * 64, ["must be no more than 63 characters"]),
    ],
)
def test_is_valid_label_value(value: str, errors: list[str]) -> None:
    assert is_valid_label_value(value) == errors


@pytest.mark.parametrize(
    ("value", "errors", "prefix_errors"),
    [
        ("system:admin", [], []),
        (".", ["may not be '.'"], []),
        ("..", ["may not be '..'"], []),
        ("a/b", ["may not contain '/'"], ["may not contain '/'"]),
        ("a%/b", ["may not contain '/'", "may not contain '%'"], ["may not contain '/'", "may not contain '%'"]),
    ],
)
def test_path_segment_names(value: str, errors: list[str], prefix_errors: list[str]) -> None:
    assert is_valid_path_segment_name(value) == errors
    assert is_valid_path_segment_prefix(value) == prefix_errors


def _causes(causes: list[Cause]) -> list[tuple[str, str, str]]:
    return [(c.type, c.field, c.message) for c in causes]


def _obj(**meta) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


@pytest.mark.parametrize(
    ("meta", "namespaced", "name_validation", "expected"),
    [
        ({"name": "ok", "namespace": "default"}, True, "subdomain", []),
        ({"name": "ok"}, False, "subdomain", []),
        ({"generateName": "ok-", "namespace": "default"}, True, "dns1035", []),
        ({"namespace": "default"}, True, "subdomain",
         [("FieldValueRequired", "metadata.name", "Required value: name or generateName is required")]),
        ({"name": "Bad"}, False, "subdomain",
         [("FieldValueInvalid", "metadata.name", f'Invalid value: "Bad": {SUBDOMAIN_MSG}')]),
        ({"name": "a.b"}, False, "label",
         [("FieldValueInvalid", "metadata.name", f'Invalid value: "a.b": {LABEL_MSG}')]),
        ({"name": "1svc", "namespace": "default"}, True, "dns1035",
         [("FieldValueInvalid", "metadata.name", f'Invalid value: "1svc": {DNS1035_MSG}')]),
        ({"name": "system:a/b"}, False, "path",
         [("FieldValueInvalid", "metadata.name", "Invalid value: \"system:a/b\": may not contain '/'")]),
        ({"generateName": "Bad-", "namespace": "default"}, True, "subdomain",
         [("FieldValueInvalid", "metadata.generateName", f'Invalid value: "Bad-": {SUBDOMAIN_MSG}')]),
        ({"name": "x"}, True, "subdomain", [("FieldValueRequired", "metadata.namespace", "Required value")]),
        ({"name": "x", "namespace": "ns"}, False, "subdomain",
         [("FieldValueForbidden", "metadata.namespace", "Forbidden: not allowed on this type")]),
        ({"name": "x", "namespace": "Bad_NS"}, True, "subdomain",
         [("FieldValueInvalid", "metadata.namespace", f'Invalid value: "Bad_NS": {LABEL_MSG}')]),
        ({"name": "x", "labels": {"a/b/c": "ok", "k": "a b"}}, False, "subdomain",
         [("FieldValueInvalid", "metadata.labels",
           'Invalid value: "a/b/c": a qualified name ' + QNAME_MSG
           + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
          ("FieldValueInvalid", "metadata.labels", f'Invalid value: "a b": {LABEL_VALUE_MSG}')]),
        ({"name": "x", "annotations": {"Example.COM/Key": "v"}}, False, "subdomain", []),  # case-insensitive
        ({"name": "x", "annotations": {"-k": "v"}}, False, "subdomain",
         [("FieldValueInvalid", "metadata.annotations", 'Invalid value: "-k": name part ' + QNAME_MSG)]),
        ({"name": "x", "annotations": {"k": "v" * (256 * 1024)}}, False, "subdomain",
         [("FieldValueTooLong", "metadata.annotations", "Too long: may not be more than 262144 bytes")]),
        ({"name": "x", "finalizers": ["orphan", "foregroundDeletion"]}, False, "subdomain",
         [("FieldValueInvalid", "metadata.finalizers",
           ('Invalid value: []string{"orphan", "foregroundDeletion"}: '
           "finalizer orphan and foregroundDeletion cannot be both set"))]),
        ({"name": "x", "generation": -1}, False, "subdomain",
         [("FieldValueInvalid", "metadata.generation", "Invalid value: -1: must be greater than or equal to 0")]),
    ],
)
def test_validate_object_meta(meta: dict, namespaced: bool, name_validation: str,
                              expected: list[tuple[str, str, str]]) -> None:
    causes = validate_object_meta(_obj(**meta), namespaced=namespaced, name_validation=name_validation,
                                  is_create=True)
    assert _causes(causes) == expected


def test_generate_name_alone_is_not_enough_on_update() -> None:
    causes = validate_object_meta(_obj(generateName="x-"), namespaced=False, name_validation="subdomain",
                                  is_create=False)
    assert _causes(causes) == [
        ("FieldValueRequired", "metadata.name", "Required value: name or generateName is required")]


def test_annotation_size_limit_is_inclusive() -> None:
    ok = _obj(name="x", annotations={"k": "v" * (256 * 1024 - 1)})
    assert validate_object_meta(ok, namespaced=False, name_validation="subdomain", is_create=True) == []


def test_owner_references() -> None:
    refs = [{"apiVersion": "", "kind": "", "name": "", "uid": ""}]
    causes = validate_object_meta(_obj(name="x", ownerReferences=refs), namespaced=False,
                                  name_validation="subdomain", is_create=True)
    assert _causes(causes) == [
        ("FieldValueInvalid", "metadata.ownerReferences.apiVersion", 'Invalid value: "": version must not be empty'),
        ("FieldValueInvalid", "metadata.ownerReferences.kind", 'Invalid value: "": must not be empty'),
        ("FieldValueInvalid", "metadata.ownerReferences.name", 'Invalid value: "": must not be empty'),
        ("FieldValueInvalid", "metadata.ownerReferences.uid", 'Invalid value: "": must not be empty'),
    ]


def test_unknown_name_validation() -> None:
    with pytest.raises(ValueError):
        validate_object_meta(_obj(name="x"), namespaced=False, name_validation="nope", is_create=True)


OLD = {"metadata": {"name": "a", "namespace": "ns", "uid": "u1", "creationTimestamp": "2024-01-01T00:00:00Z",
                    "resourceVersion": "5"}}


@pytest.mark.parametrize(
    ("new_meta", "expected"),
    [
        ({"name": "a", "namespace": "ns", "uid": "u1"}, []),
        ({"name": "a", "namespace": "ns"}, []),  # uid/creationTimestamp absent: carried over
        ({"name": "b", "namespace": "ns"},
         [("FieldValueInvalid", "metadata.name", 'Invalid value: "b": field is immutable')]),
        ({"name": "a", "namespace": "other"},
         [("FieldValueInvalid", "metadata.namespace", 'Invalid value: "other": field is immutable')]),
        ({"name": "a", "namespace": "ns", "uid": "u2"},
         [("FieldValueInvalid", "metadata.uid", 'Invalid value: "u2": field is immutable')]),
        ({"name": "a", "namespace": "ns", "creationTimestamp": "2025-01-01T00:00:00Z"},
         [("FieldValueInvalid", "metadata.creationTimestamp",
           'Invalid value: "2025-01-01T00:00:00Z": field is immutable')]),
        ({"name": "a", "namespace": "ns", "labels": {"k": "a b"}},
         [("FieldValueInvalid", "metadata.labels", f'Invalid value: "a b": {LABEL_VALUE_MSG}')]),
    ],
)
def test_validate_object_meta_update(new_meta: dict, expected: list[tuple[str, str, str]]) -> None:
    assert _causes(validate_object_meta_update({"metadata": new_meta}, OLD)) == expected


def test_no_new_finalizers_while_deleting() -> None:
    old = {"metadata": {"name": "a", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x/a"]}}
    new = {"metadata": {"name": "a", "finalizers": ["x/a", "x/c", "x/b"]}}
    assert _causes(validate_object_meta_update(new, old)) == [
        ("FieldValueForbidden", "metadata.finalizers",
         ('Forbidden: no new finalizers can be added if the object is being deleted, '
         'found new finalizers []string{"x/b", "x/c"}'))]
    # Removing finalizers while deleting is how deletion completes, so it must be allowed.
    assert validate_object_meta_update({"metadata": {"name": "a"}}, old) == []
