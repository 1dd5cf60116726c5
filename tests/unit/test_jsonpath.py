"""The JSONPath subset printer columns and kubectl use."""

from __future__ import annotations

import pytest

from kplane.apimachinery.jsonpath import JSONPathError, compile_path, evaluate, first_value

OBJ = {
    "metadata": {"name": "web", "labels": {"app": "nginx", "app.kubernetes.io/name": "web"}},
    "spec": {
        "replicas": 3,
        "items": [{"name": "a", "port": 80}, {"name": "b", "port": 443}, {"name": "c", "port": 8080}],
        "empty": [],
        "flag": False,
    },
    "status": {"conditions": [
        {"type": "Available", "status": "False"},
        {"type": "Ready", "status": "True", "reason": "Ok"},
    ]},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".metadata.name", ["web"]),
        ("metadata.name", ["web"]),
        ("$.metadata.name", ["web"]),
        ("{.metadata.name}", ["web"]),
        ("{ .spec.replicas }", [3]),
        (".metadata.labels.app", ["nginx"]),
        (".metadata.labels['app.kubernetes.io/name']", ["web"]),
        ('.metadata.labels["app.kubernetes.io/name"]', ["web"]),
        (".spec.items[0].name", ["a"]),
        (".spec.items[-1].name", ["c"]),
        (".spec.items[5].name", []),
        (".spec.items[*].name", ["a", "b", "c"]),
        (".spec.items[0:2].port", [80, 443]),
        (".spec.items[::2].name", ["a", "c"]),
        (".spec.items[0,2].name", ["a", "c"]),
        (".spec.items[0]['name','port']", ["a", 80]),
        ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
        (".status.conditions[?(@.type=='Ready')].reason", ["Ok"]),
        ('.status.conditions[?(@.type!="Ready")].type', ["Available"]),
        (".status.conditions[?(@.reason)].type", ["Ready"]),
        (".spec.items[?(@.port > 100)].name", ["b", "c"]),
        (".spec.items[?(@.port<=443)].name", ["a", "b"]),
        (".spec.items[?(@.port==80)].name", ["a"]),
        (".spec.flag", [False]),
        (".spec.empty", [[]]),
        (".spec.empty[0]", []),
        (".metadata.missing", []),
        (".metadata.name.deeper", []),
        (".metadata.labels.*", ["nginx", "web"]),
        ("..name", ["web", "a", "b", "c"]),
        (".", [OBJ]),
    ],
)
def test_evaluate(path: str, expected: list) -> None:
    assert evaluate(OBJ, path) == expected


def test_first_value() -> None:
    assert first_value(OBJ, ".spec.replicas") == 3
    assert first_value(OBJ, ".spec.items[*].name") == "a"
    assert first_value(OBJ, ".spec.nothing") is None
    assert first_value(OBJ, ".spec.nothing", default="<none>") == "<none>"
    assert first_value(OBJ, ".spec.flag", default="x") is False


def test_compile_path_reuse() -> None:
    fn = compile_path(".metadata.name")
    assert [fn(OBJ), fn({"metadata": {"name": "other"}}), fn({})] == [["web"], ["other"], []]


@pytest.mark.parametrize("path", [".spec.items[", ".spec.items[abc]", ".spec.items[?(@.a ~ 1)]",
                                  ".spec.items[?@.a]", ".spec.items[1:2:0]", ".a..", ".spec.items[]"])
def test_invalid_paths(path: str) -> None:
    with pytest.raises(JSONPathError):
        evaluate(OBJ, path)
