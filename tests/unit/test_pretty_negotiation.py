"""Pretty-printing as upstream negotiates it (negotiation.isPrettyPrint, NegotiateOutputMediaType)
and writes it (the JSON PrettySerializer: json.MarshalIndent with two spaces, no trailing newline)."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from kplane.apimachinery import errors
from kplane.apiserver import negotiation
from kplane.apiserver.handlers import status_response


def _request(target: str = "/api/v1/namespaces", **headers: str):
    return make_mocked_request("GET", target, headers=CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()}))


@pytest.mark.parametrize("target,agent,pretty", [
    ("/api/v1/namespaces", "", False),
    ("/api/v1/namespaces", "kubectl/v1.32.0 (linux/amd64) kubernetes/abc", False),
    ("/api/v1/namespaces", "curl/8.5.0", True),
    ("/api/v1/namespaces", "Wget/1.21.4", True),
    ("/api/v1/namespaces", "Mozilla/5.0 (Macintosh)", True),
    ("/api/v1/namespaces", "Mozilla/4.0", False),
    ("/api/v1/namespaces", "CURL/8.5.0", False),
    ("/api/v1/namespaces?pretty=true", "", True),
    ("/api/v1/namespaces?pretty=1", "kubectl/v1.32.0", True),
    ("/api/v1/namespaces?pretty=T", "", True),
    ("/api/v1/namespaces?pretty=false", "curl/8.5.0", False),
    ("/api/v1/namespaces?pretty=0", "Mozilla/5.0", False),
    ("/api/v1/namespaces?pretty=yes", "curl/8.5.0", False),  # ParseBool fails: false
    ("/api/v1/namespaces?pretty=", "curl/8.5.0", True),  # empty: the User-Agent decides
    ("/api/v1/namespaces?pretty=", "", False),
    ("/api/v1/namespaces?pretty=true&pretty=false", "", True),  # Query().Get: the first value
    ("/api/v1/namespaces?pretty=%74rue", "", True),  # decoded
    ("/api/v1/namespaces?prettyish=true", "", False),
])
def test_pretty_rule(target, agent, pretty):
    headers = {"User-Agent": agent} if agent else {}
    assert negotiation.negotiate(_request(target, **headers)).pretty is pretty


def test_accept_pretty_parameter_is_ored_and_only_one():
    assert negotiation.parse_accept("application/json;pretty=1").pretty
    assert not negotiation.parse_accept("application/json;pretty=true").pretty
    table = negotiation.parse_accept("application/json;as=Table;v=v1;g=meta.k8s.io;pretty=1")
    assert table.pretty and table.as_kind == "Table"
    choice = negotiation.negotiate(_request("/api/v1/namespaces?pretty=false", Accept="application/json;pretty=1"))
    assert choice.pretty
    # The media type is kept: a pretty Table is still a Table.
    choice = negotiation.negotiate(_request(User_Agent="curl/8", Accept="application/json;as=Table;v=v1;g=meta.k8s.io"))
    assert choice.pretty and choice.as_kind == "Table" and choice.meta_api_version == "meta.k8s.io/v1"


def test_negotiation_failures_still_raise_406():
    with pytest.raises(errors.StatusError) as e:
        negotiation.negotiate(_request(User_Agent="curl/8", Accept="application/vnd.kubernetes.protobuf"))
    assert e.value.code == 406
    assert negotiation.error_pretty(_request(Accept="application/vnd.kubernetes.protobuf"))  # WriteRawJSON
    assert not negotiation.error_pretty(_request())
    assert negotiation.error_pretty(_request(User_Agent="curl/8"))


def test_encode_pretty_is_marshal_indent_without_newline():
    obj = {"kind": "ConfigMap", "metadata": {"name": "x", "labels": {}}, "data": {"k": "é"}, "items": [], "n": [1, 2]}
    body, ctype = negotiation.encode(obj, negotiation.PRETTY)
    assert ctype == "application/json"
    assert body == json.dumps(obj, indent=2, ensure_ascii=False).encode()
    assert body.startswith(b'{\n  "kind": "ConfigMap",\n  "metadata": {\n    "name": "x",\n    "labels": {}')
    assert not body.endswith(b"\n")
    compact, _ = negotiation.encode(obj)
    assert compact.endswith(b"}\n") and compact.count(b"\n") == 1
    # YAML has no pretty form.
    yaml_pretty = negotiation.MediaChoice(yaml=True, pretty=True)
    assert negotiation.encode(obj, yaml_pretty) == negotiation.encode(obj, negotiation.MediaChoice(yaml=True))


def test_status_errors_pretty_and_not():
    err = errors.StatusError(404, "NotFound", 'configmaps "x" not found', {"name": "x", "kind": "configmaps"})
    pretty = status_response(err, pretty=True)
    assert pretty.body == json.dumps(err.to_status(), indent=2).encode() and pretty.status == 404
    plain = status_response(err)
    assert plain.body.endswith(b"}\n") and plain.body.count(b"\n") == 1
