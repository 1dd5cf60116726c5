"""Request bodies a client controls: decoding refuses what would expand or nest out of bounds with a
400, never a 500 or an unbounded amount of memory and time."""

from __future__ import annotations

import time

import pytest

from kplane.apimachinery.errors import StatusError
from kplane.apiserver.negotiation import decode_body


def _laughs(levels: int) -> bytes:
    # Each level is a list of nine aliases of the level below: 9**levels scalars once expanded.
    doc = 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        doc += f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]\n"
    return doc.encode()


@pytest.mark.parametrize("mime", ["application/yaml", "application/apply-patch+yaml"])
def test_yaml_alias_expansion_is_refused_like_go_yaml(mime: str) -> None:
    started = time.monotonic()
    with pytest.raises(StatusError) as e:
        decode_body(_laughs(12), mime)  # 9**12 scalars: hours and terabytes if expanded
    assert e.value.code == 400
    assert e.value.message == "error decoding YAML: yaml: document contains excessive aliasing"
    assert time.monotonic() - started < 2
    with pytest.raises(StatusError, match="excessive aliasing"):
        decode_body(b"&a [*a, *a]", mime)  # an alias of itself


def test_yaml_ordinary_anchors_still_decode() -> None:
    doc = b"base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  z: 3\nl: [*b, *b]\n"
    assert decode_body(doc, "application/yaml") == {
        "base": {"x": 1, "y": 2}, "m": {"x": 1, "y": 2, "z": 3}, "l": [{"x": 1, "y": 2}, {"x": 1, "y": 2}]}
    assert len(decode_body(_laughs(2), "application/yaml")["l1"]) == 9


def test_deeply_nested_yaml_is_a_bad_request() -> None:
    with pytest.raises(StatusError) as e:
        decode_body(b"a: " + b"[" * 5000 + b"]" * 5000, "application/yaml")
    assert e.value.code == 400
