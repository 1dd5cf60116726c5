"""Label and field selector parsing and matching, checked against upstream behaviour."""

from __future__ import annotations

import pytest

from kplane.apimachinery.errors import StatusError
from kplane.apimachinery.selectors import (
    EVERYTHING,
    label_selector_from_dict,
    parse_field_selector,
    parse_label_selector,
    unsupported_field_error,
)

_QNAME_REGEX_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation "
    "is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


@pytest.mark.parametrize(
    ("selector", "canonical"),
    [
        ("", ""),
        ("a=b", "a=b"),
        ("a==b", "a==b"),
        ("a!=b", "a!=b"),
        ("  a = b  ,  c  ", "a=b,c"),
        ("!a", "!a"),
        ("a", "a"),
        ("a in (y,x)", "a in (x,y)"),
        ("a notin (x)", "a notin (x)"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("a in (in,notin)", "a in (in,notin)"),
        ("b=c,a=d", "a=d,b=c"),  # requirements sorted by key
        ("a=", "a="),
        ("x>5,y<10", "x>5,y<10"),
        ("example.com/app=web", "example.com/app=web"),
        ("a\tin\t(b)", "a in (b)"),
    ],
)
def test_parse_label_selector_valid(selector: str, canonical: str) -> None:
    assert str(parse_label_selector(selector)) == canonical


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a,", "found '', expected: identifier after ','"),
        ("a=b,=c", "found '=', expected: identifier after ','"),
        ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a notin", "unable to parse requirement: found '' expected: '('"),
        ("a=(", "unable to parse requirement: found '(', expected: identifier"),
        ("a/b/c=d", "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name "
                    + _QNAME_REGEX_MSG + " with an optional DNS subdomain prefix and '/' "
                    "(e.g. 'example.com/MyName')"),
        ("-a", "unable to parse requirement: <nil>: Invalid value: \"-a\": name part " + _QNAME_REGEX_MSG),
        ("k=-x", "unable to parse requirement: values[0][k]: Invalid value: \"-x\": " + _LABEL_VALUE_MSG),
        ("x>a", ("unable to parse requirement: values[0]: Invalid value: \"a\": "
                "for 'Gt', 'Lt' operators, the value must be an integer")),
    ],
)
def test_parse_label_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(StatusError) as info:
        parse_label_selector(selector)
    assert (info.value.code, info.value.reason, info.value.message) == (400, "BadRequest", message)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        ("a=b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a=b", {}, False),
        ("a!=b", {}, True),  # != matches objects without the key
        ("a!=b", {"a": "b"}, False),
        ("a in (x,y)", {"a": "y"}, True),
        ("a in (x,y)", {"a": "z"}, False),
        ("a notin (x,y)", {}, True),
        ("a notin (x,y)", {"a": "x"}, False),
        ("a", {"a": ""}, True),
        ("a", {"b": "1"}, False),
        ("!a", {"b": "1"}, True),
        ("!a", {"a": "1"}, False),
        ("a=", {"a": ""}, True),
        ("x>5", {"x": "6"}, True),
        ("x>5", {"x": "5"}, False),
        ("x<5", {"x": "nope"}, False),
        ("a=b,c", {"a": "b"}, False),
        ("a=b,c", {"a": "b", "c": "d"}, True),
    ],
)
def test_label_selector_matches(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector).matches(labels) is expected


def test_empty_and_exact_match() -> None:
    assert parse_label_selector("").empty is True
    assert parse_label_selector("a").empty is False
    assert parse_label_selector("a=b,c in (d)").requires_exact_match("c") == "d"
    assert parse_label_selector("a!=b").requires_exact_match("a") is None


@pytest.mark.parametrize(
    ("sel", "labels", "expected"),
    [
        (None, {"a": "b"}, False),  # nil selector selects nothing
        ({}, {"a": "b"}, True),  # empty selector selects everything
        ({"matchLabels": {"a": "b"}}, {"a": "b", "x": "y"}, True),
        ({"matchLabels": {"a": "b"}}, {"a": "c"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x", "y"]}]}, {"a": "y"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}, {"a": "x"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
        ({"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "c", "operator": "Exists"}]},
         {"a": "b"}, False),
    ],
)
def test_label_selector_from_dict(sel: dict | None, labels: dict[str, str], expected: bool) -> None:
    assert label_selector_from_dict(sel).matches(labels) is expected


@pytest.mark.parametrize(
    ("sel", "message"),
    [
        ({"matchExpressions": [{"key": "a", "operator": "Foo"}]}, '"Foo" is not a valid label selector operator'),
        ({"matchExpressions": [{"key": "a", "operator": "In"}]},
         "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
         'values: Invalid value: []string{"x"}: values set must be empty for exists and does not exist'),
        ({"matchLabels": {"-a": "b"}}, 'key: Invalid value: "-a": name part ' + _QNAME_REGEX_MSG),
    ],
)
def test_label_selector_from_dict_errors(sel: dict, message: str) -> None:
    with pytest.raises(StatusError) as info:
        label_selector_from_dict(sel)
    assert (info.value.code, info.value.message) == (400, message)


def test_everything_constant() -> None:
    assert EVERYTHING.empty and EVERYTHING.matches(None)


@pytest.mark.parametrize(
    ("selector", "reqs"),
    [
        ("", []),
        ("metadata.name=foo", [("metadata.name", "=", "foo")]),
        ("metadata.name==foo", [("metadata.name", "=", "foo")]),
        ("status.phase!=Running,metadata.name=x", [("metadata.name", "=", "x"), ("status.phase", "!=", "Running")]),
        (r"a=x\,y\=z\\", [("a", "=", "x,y=z\\")]),
        ("a=", [("a", "=", "")]),
        ("a=b,,", [("a", "=", "b")]),
    ],
)
def test_parse_field_selector_valid(selector: str, reqs: list[tuple[str, str, str]]) -> None:
    sel = parse_field_selector(selector)
    assert [(r.field, r.operator, r.value) for r in sel.requirements] == reqs
    assert sel.fields == frozenset(r[0] for r in reqs)


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("foo", "invalid selector: 'foo'; can't understand 'foo'"),
        ("a=x,y", "invalid selector: 'a=x,y'; can't understand 'y'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        (r"a=\q", r"invalid field selector: invalid escape sequence: \q"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_parse_field_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(StatusError) as info:
        parse_field_selector(selector)
    assert (info.value.code, info.value.message) == (400, message)


def test_field_selector_matches() -> None:
    fields = {"metadata.name": "web", "status.phase": "Running"}
    assert parse_field_selector("metadata.name=web").matches(fields.get) is True
    assert parse_field_selector("metadata.name=db").matches(fields.get) is False
    assert parse_field_selector("status.phase!=Pending,metadata.name=web").matches(fields.get) is True
    assert parse_field_selector("spec.nodeName=").matches(fields.get) is True  # missing reads as ""
    assert parse_field_selector("spec.nodeName!=").matches(fields.get) is False
    assert parse_field_selector("").matches(fields.get) is True


def test_unsupported_field_error() -> None:
    err = unsupported_field_error("spec.foo")
    assert (err.code, err.reason, err.message) == (400, "BadRequest", "field label not supported: spec.foo")
