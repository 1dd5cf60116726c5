"""Pretty-printing as upstream negotiates it (negotiation.isPrettyPrint, NegotiateOutputMediaType)
and writes it (the JSON PrettySerializer: json.MarshalIndent with two spaces, no trailing newline)."""

from __future__ import annotations

import json

import pytest
import yaml
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
    assert negotiation.error_choice(_request(Accept="application/vnd.kubernetes.protobuf")) is None  # WriteRawJSON
    assert negotiation.error_choice(_request()) == negotiation.MediaChoice()
    assert negotiation.error_choice(_request(User_Agent="curl/8")) == negotiation.PRETTY


@pytest.mark.parametrize("accept,choice", [
    ("", negotiation.MediaChoice()),
    ("application/yaml", negotiation.MediaChoice(yaml=True)),
    ("application/yaml, application/json", negotiation.MediaChoice(yaml=True)),
    ("application/json;pretty=1", negotiation.PRETTY),
    ("*/*", negotiation.MediaChoice()),
    # Errors are negotiated with the default endpoint restrictions: no conversion, so a Table
    # clause is passed over, and with nothing left the Status is written raw.
    ("application/json;as=Table;v=v1;g=meta.k8s.io, application/yaml", negotiation.MediaChoice(yaml=True)),
    ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", negotiation.MediaChoice()),
    ("application/yaml;as=Table;v=v1;g=meta.k8s.io", None),
    ("application/vnd.kubernetes.protobuf, application/yaml", negotiation.MediaChoice(yaml=True)),
])
def test_error_negotiation(accept, choice):
    assert negotiation.error_choice(_request(Accept=accept)) == choice


def test_status_errors_in_yaml_and_raw():
    err = errors.StatusError(404, "NotFound", 'configmaps "x" not found', {"name": "x", "kind": "configmaps"})
    resp = status_response(err, negotiation.MediaChoice(yaml=True))
    assert resp.content_type == "application/yaml" and resp.status == 404
    assert yaml.safe_load(resp.body) == err.to_status()
    raw = status_response(err, None)
    assert raw.content_type == "application/json" and raw.body == json.dumps(err.to_status(), indent=2).encode()


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
    pretty = status_response(err, negotiation.PRETTY)
    assert pretty.body == json.dumps(err.to_status(), indent=2).encode() and pretty.status == 404
    plain = status_response(err)
    assert plain.body.endswith(b"}\n") and plain.body.count(b"\n") == 1


def test_encoded_json_has_gos_escapes_and_decodes_to_the_same_text():
    import orjson

    from kplane.apiserver import negotiation

    text = "a\\<b>\\\\&\u2028\"\u2029é"  # backslashes before the escaped characters, a quote, non-ASCII
    for choice in (None, negotiation.PRETTY):
        body, _ = negotiation.encode({"k": text}, choice)
        assert not any(c in body for c in (b"<", b">", b"&", "\u2028".encode(), "\u2029".encode()))
        assert b"\\u003c" in body and "é".encode() in body  # other non-ASCII stays as it is, as in Go
        assert orjson.loads(body) == {"k": text}
