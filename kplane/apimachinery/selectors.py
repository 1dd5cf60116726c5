"""Label and field selectors, parsed exactly as k8s.io/apimachinery/pkg/labels and pkg/fields do.

The label selector parser is a port of the upstream lexer + recursive-descent parser so that
what is accepted, what is rejected and the wording of the rejection match kube-apiserver; the
messages are returned to clients verbatim as 400 BadRequest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kplane.apimachinery.errors import StatusError, bad_request
from kplane.apimachinery.validation import go_quote, go_string_slice, is_qualified_name, is_valid_label_value

# selection.Operator values, spelled as upstream prints them.
EQUALS = "="
DOUBLE_EQUALS = "=="
NOT_EQUALS = "!="
IN = "in"
NOT_IN = "notin"
EXISTS = "exists"
DOES_NOT_EXIST = "!"
GREATER_THAN = "gt"
LESS_THAN = "lt"

_BINARY_OPERATORS = [IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN]


# ---------------------------------------------------------------------------------------------
# Requirements and selectors
# ---------------------------------------------------------------------------------------------


def _parse_go_int64(s: str) -> int | None:
    """strconv.ParseInt(s, 10, 64): optional sign, decimal digits, int64 range."""
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body or not body.isascii() or not body.isdigit():
        return None
    n = int(s)
    return n if -(2**63) <= n < 2**63 else None


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            return self._matches_numeric(labels)
        return False

    def _matches_numeric(self, labels: Mapping[str, str]) -> bool:
        if self.key not in labels or len(self.values) != 1:
            return False
        have, want = _parse_go_int64(labels[self.key]), _parse_go_int64(self.values[0])
        if have is None or want is None:
            return False
        return have > want if self.operator == GREATER_THAN else have < want

    def __str__(self) -> str:
        prefix = "!" if self.operator == DOES_NOT_EXIST else ""
        if self.operator in (EXISTS, DOES_NOT_EXIST):
            return prefix + self.key
        values = ",".join(sorted(self.values)) if len(self.values) > 1 else "".join(self.values)
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({values})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{values}"


@dataclass(frozen=True)
class LabelSelector:
    """AND of requirements. `nothing` is labels.Nothing(): matches no object (a nil metav1 selector)."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @property
    def empty(self) -> bool:
        return not self.nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def requires_exact_match(self, key: str) -> str | None:
        """The single value `key` must have for a match, if the selector pins one (for index lookups)."""
        for r in self.requirements:
            if r.key == key:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)


# ---------------------------------------------------------------------------------------------
# field.Error rendering (the subset the selector code paths produce)
# ---------------------------------------------------------------------------------------------


class _Invalid(Exception):
    """A field.Invalid error; str() is field.Error.Error(): '<path>: Invalid value: <v>: <detail>'."""

    def __init__(self, path: str, rendered_value: str, detail: str) -> None:
        super().__init__(f"{path}: Invalid value: {rendered_value}: {detail}")


def _aggregate(errs: list[str]) -> str:
    """utilerrors.Aggregate.Error(): one message bare, several deduplicated inside brackets."""
    unique = list(dict.fromkeys(errs))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _validate_label_key(key: str, path: str) -> str | None:
    errs = is_qualified_name(key)
    return str(_Invalid(path, go_quote(key), "; ".join(errs))) if errs else None


def new_requirement(key: str, op: str, values: Iterable[str] | None, *, path: str = "") -> Requirement:
    """labels.NewRequirement. `path` prefixes field paths; "" means a nil path (key errors read 'key')."""
    vals = None if values is None else list(values)
    vlist = vals or []
    errs: list[str] = []
    key_path = f"{path}.key" if path else "key"
    value_path = f"{path}.values" if path else "values"
    if (e := _validate_label_key(key, key_path)) is not None:
        errs.append(e)
    if op in (IN, NOT_IN) and not vlist:
        errs.append(str(_Invalid(value_path, go_string_slice(vals),
                                 "for 'in', 'notin' operators, values set can't be empty")))
    elif op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS) and len(vlist) != 1:
        errs.append(str(_Invalid(value_path, go_string_slice(vals),
                                 "exact-match compatibility requires one single value")))
    elif op in (EXISTS, DOES_NOT_EXIST) and vlist:
        errs.append(str(_Invalid(value_path, go_string_slice(vals),
                                 "values set must be empty for exists and does not exist")))
    elif op in (GREATER_THAN, LESS_THAN):
        errs.extend(_numeric_value_errors(vlist, value_path))
    elif op not in _BINARY_OPERATORS and op not in (EXISTS, DOES_NOT_EXIST):
        supported = ", ".join(go_quote(o) for o in [*_BINARY_OPERATORS, EXISTS, DOES_NOT_EXIST])
        errs.append(f"{path + '.operator' if path else 'operator'}: Unsupported value: {go_quote(op)}: "
                    f"supported values: {supported}")
    for i, v in enumerate(vlist):
        msgs = is_valid_label_value(v)
        if msgs:
            errs.append(str(_Invalid(f"{value_path}[{i}][{key}]", go_quote(v), "; ".join(msgs))))
    if errs:
        raise _SelectorError(_aggregate(errs))
    return Requirement(key, op, tuple(vlist))


def _numeric_value_errors(vals: list[str], value_path: str) -> list[str]:
    errs = []
    if len(vals) != 1:
        errs.append(str(_Invalid(value_path, go_string_slice(vals),
                                 "for 'Gt', 'Lt' operators, exactly one value is required")))
    for i, v in enumerate(vals):
        if _parse_go_int64(v) is None:
            errs.append(str(_Invalid(f"{value_path}[{i}]", go_quote(v),
                                     "for 'Gt', 'Lt' operators, the value must be an integer")))
    return errs


class _SelectorError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Label selector lexer and parser (labels.Parse)
# ---------------------------------------------------------------------------------------------

_ERROR, _EOS, _CLOSE_PAR, _COMMA, _NOT, _DOUBLE_EQ, _EQ, _GT, _IDENT, _IN, _LT, _NEQ, _NOTIN, _OPEN_PAR = range(14)

_STRING_TO_TOKEN = {
    ")": _CLOSE_PAR, ",": _COMMA, "!": _NOT, "==": _DOUBLE_EQ, "=": _EQ, ">": _GT,
    "in": _IN, "<": _LT, "!=": _NEQ, "notin": _NOTIN, "(": _OPEN_PAR,
}
_SPECIAL = set("=!(),><")
_WHITESPACE = set(" \t\r\n")


def _lex(s: str) -> list[tuple[int, str]]:
    """Tokenise the whole selector up front, as the upstream Parser.scan does."""
    items: list[tuple[int, str]] = []
    pos = 0
    while True:
        while pos < len(s) and s[pos] in _WHITESPACE:
            pos += 1
        if pos >= len(s):
            items.append((_EOS, ""))
            return items
        if s[pos] in _SPECIAL:
            tok, lit, pos = _scan_special(s, pos)
        else:
            start = pos
            while pos < len(s) and s[pos] not in _SPECIAL and s[pos] not in _WHITESPACE:
                pos += 1
            lit = s[start:pos]
            tok = _STRING_TO_TOKEN.get(lit, _IDENT)
        items.append((tok, lit))


def _scan_special(s: str, pos: int) -> tuple[int, str, int]:
    """Longest run of operator characters that still forms a known token ('!=' over '!')."""
    buf = ""
    last: tuple[int, str] | None = None
    while pos < len(s) and s[pos] in _SPECIAL:
        buf += s[pos]
        pos += 1
        if buf in _STRING_TO_TOKEN:
            last = (_STRING_TO_TOKEN[buf], buf)
        elif last is not None:
            pos -= 1
            break
    if last is None:
        return _ERROR, f"error expected: keyword found '{buf}'", pos
    return last[0], last[1], pos


class _Parser:
    def __init__(self, selector: str) -> None:
        self.items = _lex(selector)
        self.pos = 0

    # In a values context 'in' and 'notin' are plain identifiers ("x in (in)").
    def lookahead(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        return (_IDENT if values and tok in (_IN, _NOTIN) else tok), lit

    def consume(self, values: bool = True) -> tuple[int, str]:
        result = self.lookahead(values)
        self.pos += 1
        return result

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok == _EOS:
                return reqs
            if tok not in (_IDENT, _NOT):
                raise _SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self.parse_requirement())
            except _SelectorError as e:
                raise _SelectorError(f"unable to parse requirement: {e}") from None
            tok, lit = self.consume()
            if tok == _EOS:
                return reqs
            if tok != _COMMA:
                raise _SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            tok2, lit2 = self.lookahead()
            if tok2 not in (_IDENT, _NOT):
                raise _SelectorError(f"found '{lit2}', expected: identifier after ','")

    def parse_requirement(self) -> Requirement:
        key, op = self.parse_key_and_infer_operator()
        if op in (EXISTS, DOES_NOT_EXIST):
            return new_requirement(key, op, [])
        op = self.parse_operator()
        values = self.parse_values() if op in (IN, NOT_IN) else self.parse_exact_value()
        # Upstream collects values in a sets.String and passes List(): sorted and de-duplicated.
        return new_requirement(key, op, sorted(values))

    def parse_key_and_infer_operator(self) -> tuple[str, str]:
        op = ""
        tok, lit = self.consume()
        if tok == _NOT:
            op = DOES_NOT_EXIST
            tok, lit = self.consume()
        if tok != _IDENT:
            raise _SelectorError(f"found '{lit}', expected: identifier")
        # The parser validates the key with a nil field path, hence upstream's '<nil>: ...'.
        if (e := _validate_label_key(lit, "<nil>")) is not None:
            raise _SelectorError(e)
        if self.lookahead()[0] in (_EOS, _COMMA) and op != DOES_NOT_EXIST:
            op = EXISTS
        return lit, op

    def parse_operator(self) -> str:
        tok, lit = self.consume(values=False)
        ops = {_IN: IN, _EQ: EQUALS, _DOUBLE_EQ: DOUBLE_EQUALS, _GT: GREATER_THAN, _LT: LESS_THAN,
               _NOTIN: NOT_IN, _NEQ: NOT_EQUALS}
        if tok not in ops:
            raise _SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        return ops[tok]

    def parse_values(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _OPEN_PAR:
            raise _SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in (_IDENT, _COMMA):
            values = self.parse_identifiers_list()
            if self.consume()[0] != _CLOSE_PAR:
                raise _SelectorError(f"found '{lit}', expected: ')'")
            return values
        if tok == _CLOSE_PAR:  # "()" means the single empty value
            self.consume()
            return {""}
        raise _SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def parse_identifiers_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _IDENT:
                values.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE_PAR:
                    return values
                raise _SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok != _COMMA:
                raise _SelectorError(f"found '{lit}', expected: ',', or identifier")
            # Empty entries such as "(,a" or "a,)" or "a,,b" stand for the empty value.
            if not values:
                values.add("")
            tok2 = self.lookahead()[0]
            if tok2 == _CLOSE_PAR:
                values.add("")
                return values
            if tok2 == _COMMA:
                values.add("")

    def parse_exact_value(self) -> set[str]:
        if self.lookahead()[0] in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume()
        if tok == _IDENT:
            return {lit}
        raise _SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(s: str | None) -> LabelSelector:
    """labels.Parse. Raises StatusError 400 BadRequest with the upstream message."""
    if not s:
        return EVERYTHING
    try:
        reqs = _Parser(s).parse()
    except _SelectorError as e:
        raise bad_request(str(e)) from None
    # Upstream sorts by key (stable) so String() and matching order are deterministic.
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


_METAV1_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def label_selector_from_dict(sel: Mapping[str, Any] | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: nil selects nothing, {} selects everything."""
    if sel is None:
        return NOTHING
    match_labels = sel.get("matchLabels") or {}
    exprs = sel.get("matchExpressions") or []
    if not match_labels and not exprs:
        return EVERYTHING
    reqs: list[Requirement] = []
    try:
        for k, v in match_labels.items():
            reqs.append(new_requirement(k, EQUALS, [v]))
        for expr in exprs:
            op = expr.get("operator", "")
            if op not in _METAV1_OPERATORS:
                raise _SelectorError(f"{go_quote(op)} is not a valid label selector operator")
            values = expr.get("values")
            reqs.append(new_requirement(expr.get("key", ""), _METAV1_OPERATORS[op],
                                        None if values is None else list(values)))
    except _SelectorError as e:
        raise bad_request(str(e)) from None
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


# ---------------------------------------------------------------------------------------------
# Field selectors (fields.ParseSelector)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # "=" (also for "==") or "!="
    value: str

    def matches(self, get: Callable[[str], str | None]) -> bool:
        # fields.Set.Get returns "" for a missing field, so "x!=" excludes objects lacking x.
        have = get(self.field) or ""
        return have == self.value if self.operator == EQUALS else have != self.value

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_field_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()
    fields: frozenset[str] = field(default=frozenset())

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, get: Callable[[str], str | None]) -> bool:
        return all(r.matches(get) for r in self.requirements)

    def requires_exact_match(self, name: str) -> str | None:
        for r in self.requirements:
            if r.field == name and r.operator == EQUALS:
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def escape_field_value(s: str) -> str:
    """fields.EscapeValue: backslash-escape '\\', ',' and '='."""
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_field_value(s: str) -> str:
    """fields.UnescapeValue; raises StatusError 400 on a bad escape or an unescaped ',' or '='."""
    out: list[str] = []
    in_slash = False
    for c in s:
        if in_slash:
            if c not in "\\,=":
                raise bad_request(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c in ",=":
            # Upstream formats the rune with %v, which prints its code point.
            raise bad_request(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise bad_request("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(s: str) -> list[str]:
    """Split on commas not preceded by a backslash; escapes stay in the terms."""
    terms, start, in_slash = [], 0, False
    for i, c in enumerate(s):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    # The first operator occurrence splits the term; "!=" and "==" win over "=" at the same spot.
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def parse_field_selector(s: str | None) -> FieldSelector:
    """fields.ParseSelector. Raises StatusError 400 BadRequest with the upstream message."""
    if not s:
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for part in sorted(_split_terms(s)):
        if part == "":
            continue
        split = _split_term(part)
        if split is None:
            raise bad_request(f"invalid selector: '{s}'; can't understand '{part}'")
        lhs, op, rhs = split
        reqs.append(FieldRequirement(lhs, NOT_EQUALS if op == NOT_EQUALS else EQUALS,
                                     unescape_field_value(rhs)))
    return FieldSelector(tuple(reqs), frozenset(r.field for r in reqs))


def unsupported_field_error(name: str) -> StatusError:
    """What the apiserver answers for a field selector on a field the resource does not index."""
    return bad_request(f"field label not supported: {name}")


__all__ = [
    "DOES_NOT_EXIST",
    "DOUBLE_EQUALS",
    "EQUALS",
    "EVERYTHING",
    "EXISTS",
    "GREATER_THAN",
    "IN",
    "LESS_THAN",
    "NOTHING",
    "NOT_EQUALS",
    "NOT_IN",
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Requirement",
    "escape_field_value",
    "label_selector_from_dict",
    "new_requirement",
    "parse_field_selector",
    "parse_label_selector",
    "unescape_field_value",
    "unsupported_field_error",
]
