"""A small JSONPath evaluator for the expressions kubectl and CRD printer columns use.

Supported (the subset of k8s.io/client-go/util/jsonpath that additionalPrinterColumns and
`kubectl get -o jsonpath` use in practice):

    .spec.foo   $.spec.foo   {.spec.foo}      fields (surrounding braces and `$` tolerated)
    ['key.with.dots']  ["k"]  ['a','b']       bracketed keys / unions of keys
    [0]  [-1]  [1:3]  [::2]  [*]  .*          indexes, slices, wildcards
    ..name                                    recursive descent
    [?(@.type=="Ready")]  [?(@.x)]            filters: == != < <= > >=, existence

`evaluate` returns every match (an empty list when nothing matches: printer columns render a
missing value as empty rather than failing). Malformed expressions raise JSONPathError.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


class JSONPathError(ValueError):
    pass


# ---------------------------------------------------------------------------------------------
# Steps: each maps a list of current nodes to the list of next nodes
# ---------------------------------------------------------------------------------------------

Step = Callable[[list[Any]], list[Any]]


def _map_values(node: Any) -> list[Any]:
    """Children of a node in the order kubectl prints them (maps by sorted key)."""
    if isinstance(node, dict):
        return [node[k] for k in sorted(node)]
    if isinstance(node, list):
        return list(node)
    return []


def _field_step(names: list[str]) -> Step:
    def step(nodes: list[Any]) -> list[Any]:
        return [n[name] for n in nodes if isinstance(n, dict) for name in names if name in n]
    return step


def _wildcard_step(nodes: list[Any]) -> list[Any]:
    return [child for n in nodes for child in _map_values(n)]


def _descendants(node: Any) -> Iterator[Any]:
    yield node
    for child in _map_values(node):
        yield from _descendants(child)


def _recursive_step(inner: Step) -> Step:
    def step(nodes: list[Any]) -> list[Any]:
        return inner([d for n in nodes for d in _descendants(n)])
    return step


def _index_step(index: int) -> Step:
    def step(nodes: list[Any]) -> list[Any]:
        out = []
        for n in nodes:
            if isinstance(n, list) and -len(n) <= index < len(n):
                out.append(n[index])
        return out
    return step


def _slice_step(start: int | None, stop: int | None, stride: int | None) -> Step:
    if stride == 0:
        raise JSONPathError("step must be > 0")

    def step(nodes: list[Any]) -> list[Any]:
        return [x for n in nodes if isinstance(n, list) for x in n[start:stop:stride]]
    return step


# ---------------------------------------------------------------------------------------------
# Filters: [?(@.path OP literal)] and [?(@.path)]
# ---------------------------------------------------------------------------------------------

_FILTER_RE = re.compile(r"^\s*(@[^=!<>\s]*)\s*(?:(==|!=|<=|>=|<|>|=)\s*(.+?))?\s*$", re.DOTALL)
_NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


@dataclass(frozen=True)
class _Operand:
    path: list[Step] | None = None  # set for @-relative operands
    literal: Any = None

    def values(self, item: Any) -> list[Any]:
        return _run(self.path, item) if self.path is not None else [self.literal]


def _parse_operand(text: str) -> _Operand:
    text = text.strip()
    if text.startswith("@"):
        return _Operand(path=_parse_steps(text[1:]))
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return _Operand(literal=text[1:-1])
    if _NUMBER_RE.match(text):
        return _Operand(literal=float(text) if any(c in text for c in ".eE") else int(text))
    if text in ("true", "false"):
        return _Operand(literal=text == "true")
    if text == "null":
        return _Operand(literal=None)
    raise JSONPathError(f"unrecognized filter operand {text!r}")


def _compare(op: str, left: Any, right: Any) -> bool:
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
    if op in ("==", "="):
        return left == right if numeric or type(left) is type(right) else False
    if op == "!=":
        return not _compare("==", left, right)
    if not (numeric or (isinstance(left, str) and isinstance(right, str))):
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def _filter_step(expr: str) -> Step:
    m = _FILTER_RE.match(expr)
    if m is None:
        raise JSONPathError(f"unrecognized filter {expr!r}")
    left = _parse_operand(m.group(1))
    op, right_text = m.group(2), m.group(3)
    right = _parse_operand(right_text) if op else None

    def keep(item: Any) -> bool:
        lvals = left.values(item)
        if right is None:
            return bool(lvals)
        rvals = right.values(item)
        return any(_compare(op, lv, rv) for lv in lvals for rv in rvals)

    def step(nodes: list[Any]) -> list[Any]:
        return [item for n in nodes for item in _map_values(n) if keep(item)]
    return step


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------

_NAME_END = ".[ "


def _read_name(path: str, i: int) -> tuple[str, int]:
    j = i
    while j < len(path) and path[j] not in _NAME_END:
        j += 1
    return path[i:j], j


def _read_bracket(path: str, i: int) -> tuple[str, int]:
    """Contents of the [...] opening at path[i], honouring quotes and nested parentheses."""
    depth, quote, j = 0, "", i + 1
    while j < len(path):
        c = path[j]
        if quote:
            if c == "\\":
                j += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "]" and depth == 0:
            return path[i + 1:j], j + 1
        j += 1
    raise JSONPathError(f"unterminated [ in {path!r}")


def _split_union(text: str) -> list[str]:
    parts, cur, quote = [], "", ""
    for c in text:
        if quote:
            cur += c
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
            cur += c
        elif c == ",":
            parts.append(cur.strip())
            cur = ""
        else:
            cur += c
    parts.append(cur.strip())
    return parts


def _unquote(s: str) -> str | None:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return None


def _parse_int(s: str) -> int | None:
    s = s.strip()
    if s == "":
        return None
    try:
        return int(s)
    except ValueError:
        raise JSONPathError(f"invalid array index {s!r}") from None


def _bracket_step(body: str) -> Step:
    body = body.strip()
    if body == "*":
        return _wildcard_step
    if body.startswith("?"):
        inner = body[1:].strip()
        if not (inner.startswith("(") and inner.endswith(")")):
            raise JSONPathError(f"invalid filter [{body}]")
        return _filter_step(inner[1:-1])
    parts = _split_union(body)
    keys = [_unquote(p) for p in parts]
    if all(k is not None for k in keys):
        return _field_step([k for k in keys if k is not None])
    if len(parts) == 1 and ":" in body:
        bounds = body.split(":")
        if len(bounds) > 3:
            raise JSONPathError(f"invalid slice [{body}]")
        start, stop, stride = (_parse_int(b) for b in (bounds + ["", ""])[:3])
        return _slice_step(start, stop, stride)
    if len(parts) == 1:
        index = _parse_int(body)
        if index is None:
            raise JSONPathError("empty array index")
        return _index_step(index)
    indexes = [_parse_int(p) for p in parts]
    steps = [_index_step(i) for i in indexes if i is not None]
    return lambda nodes: [x for n in nodes for s in steps for x in s([n])]


def _normalise(path: str) -> str:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1].strip()
    path = path.removeprefix("$")
    return path


def _parse_steps(path: str) -> list[Step]:
    path = _normalise(path)
    steps: list[Step] = []
    i = 0
    while i < len(path):
        c = path[i]
        if path.startswith("..", i):
            i += 2
            if i < len(path) and path[i] == "[":
                body, i = _read_bracket(path, i)
                steps.append(_recursive_step(_bracket_step(body)))
            else:
                name, i = _read_name(path, i)
                if not name:
                    raise JSONPathError(f"missing name after '..' in {path!r}")
                inner = _wildcard_step if name == "*" else _field_step([name])
                steps.append(_recursive_step(inner))
        elif c == ".":
            name, i = _read_name(path, i + 1)
            if name == "*":
                steps.append(_wildcard_step)
            elif name:
                steps.append(_field_step([name]))
            # A lone "." (the whole object) adds no step.
        elif c == "[":
            body, i = _read_bracket(path, i)
            steps.append(_bracket_step(body))
        elif c.isspace():
            i += 1
        elif i == 0:
            # Tolerate a missing leading dot: "spec.replicas".
            name, i = _read_name(path, i)
            steps.append(_field_step([name]))
        else:
            raise JSONPathError(f"unexpected {c!r} at position {i} in {path!r}")
    return steps


def _run(steps: list[Step], obj: Any) -> list[Any]:
    nodes = [obj]
    for step in steps:
        nodes = step(nodes)
        if not nodes:
            break
    return nodes


def compile_path(path: str) -> Callable[[Any], list[Any]]:
    """Parse once, evaluate many times (printer columns run the same path for every row)."""
    steps = _parse_steps(path)
    return lambda obj: _run(steps, obj)


def evaluate(obj: Any, path: str) -> list[Any]:
    """All values `path` selects in `obj`."""
    return _run(_parse_steps(path), obj)


def first_value(obj: Any, path: str, default: Any = None) -> Any:
    """The first match, or `default` when the path selects nothing."""
    matches = evaluate(obj, path)
    return matches[0] if matches else default


__all__ = ["JSONPathError", "compile_path", "evaluate", "first_value"]
