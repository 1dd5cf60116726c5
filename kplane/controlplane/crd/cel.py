"""`x-kubernetes-validations`: CEL rules on a structural schema.

Evaluated with the `common-expression-language` package (the Rust `cel`
crate through PyO3; its `cel.stdlib` adds cel-go's string/math/list
extension libraries). Semantics follow apiextensions-apiserver:

- `self` is the value at the schema node; at the root it is the object with
  `metadata` reduced to name and generateName.
- A rule that references `oldSelf` is a transition rule: it runs only on
  update, and only where the old value correlates (same property, same map
  key, same list-map entry); it is skipped otherwise.
- The failure message is `message`, else the string `messageExpression`
  yields, else `failed rule: <rule>`; `reason` picks the cause type and
  `fieldPath` (relative, `.a.b` or `['a']`) extends the reported path.
- Cost: upstream meters each request's rules against a runtime cost budget.
  The evaluator here has no cost meter, so the budget is wall-clock time
  (RUNTIME_BUDGET_SECONDS per validated object): once spent, the next node
  with rules reports upstream's "running out of cost budget" error and no
  further rules run. Rules longer than MAX_RULE_LENGTH are refused when the
  CRD is validated. There is no static cost estimate (maxItems/maxLength).
- Libraries: cel.stdlib (strings, math, lists, sets, ...) plus cel_libs
  (regex find/findAll, url, ip, cidr); no quantity or format.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import cel
from cel import stdlib as cel_stdlib

from kplane.apimachinery.errors import Cause, field_duplicate, field_forbidden, field_invalid, field_required
from kplane.apimachinery.structural import child, index
from kplane.controlplane.crd.cel_libs import FUNCTIONS as K8S_FUNCTIONS

Schema = dict[str, Any]

# Functions the CEL core provides; a rule that calls anything else needs the extension libraries.
_CORE_FUNCTIONS = {
    "size", "has", "all", "exists", "exists_one", "map", "filter", "int", "uint", "double", "string", "bytes",
    "bool", "timestamp", "duration", "dyn", "type", "contains", "startsWith", "endsWith", "matches",
    "getFullYear", "getMonth", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getHours", "getMinutes",
    "getSeconds", "getMilliseconds", "getDate",
}
# Variables bound by comprehension macros: self.all(x, ...), self.map(k, v, ...).
_MACRO_VAR_RE = re.compile(r"\.\s*(?:all|exists|exists_one|existsOne|map|filter|transformList|transformMap)"
                           r"\s*\(\s*([A-Za-z_]\w*)")
_REASONS = ("FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate")
RUNTIME_BUDGET_SECONDS = 1.0
MAX_RULE_LENGTH = 16 * 1024
OUT_OF_BUDGET = "validation failed due to running out of cost budget, no further validation rules will be run"


class RuleCompileError(ValueError):
    pass


@dataclass
class Rule:
    source: str
    program: Any
    message: str
    message_expression: Any
    reason: str
    field_path: str
    transition: bool
    needs_stdlib: bool


def _is_sorted(values: Any) -> bool:
    items = list(values)
    return all(items[i] <= items[i + 1] for i in range(len(items) - 1))


def _context(variables: dict[str, Any], stdlib: bool) -> Any:
    ctx = cel.Context(variables)
    if stdlib:
        cel_stdlib.add_stdlib_to_context(ctx)
        ctx.add_function("isSorted", _is_sorted)
        for name, fn in K8S_FUNCTIONS.items():
            ctx.add_function(name, fn)
    return ctx


def compile_rule(rule: Any) -> Rule:
    if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str) or not rule["rule"].strip():
        raise RuleCompileError("rule: Required value")
    source = rule["rule"]
    if len(source) > MAX_RULE_LENGTH:
        raise RuleCompileError(f"Too long: may not be more than {MAX_RULE_LENGTH} bytes")
    try:
        program = cel.compile(source)
    except Exception as e:  # noqa: BLE001 - the library reports parse errors as several exception types
        raise RuleCompileError(f"compilation failed: {e}") from None
    mexpr = None
    if rule.get("messageExpression"):
        try:
            mexpr = cel.compile(rule["messageExpression"])
        except Exception as e:  # noqa: BLE001
            raise RuleCompileError(f"messageExpression compilation failed: {e}") from None
    variables = set(program.variables())
    bound = set(_MACRO_VAR_RE.findall(source))
    if mexpr is not None:
        bound |= set(_MACRO_VAR_RE.findall(rule["messageExpression"]))
    unknown = variables - {"self", "oldSelf"} - bound
    if unknown:
        raise RuleCompileError(f"compilation failed: ERROR: <input>: undeclared reference to "
                               f"'{sorted(unknown)[0]}' (in container '')")
    functions = set(program.functions())
    if mexpr is not None:
        functions |= set(mexpr.functions())
    needs = any(not f.startswith("_") and f not in _CORE_FUNCTIONS for f in functions)
    reason = rule.get("reason") or "FieldValueInvalid"
    if reason not in _REASONS:
        raise RuleCompileError(f'reason: Unsupported value: "{reason}"')
    return Rule(source, program, rule.get("message") or "", mexpr, reason, rule.get("fieldPath") or "",
                "oldSelf" in variables and not rule.get("optionalOldSelf"), needs)


def compile_schema(schema: Any, path: str = "openAPIV3Schema") -> list[tuple[str, str]]:
    """Compile every rule in a schema; return (field path, error) for those that fail (CRD validation)."""
    errors: list[tuple[str, str]] = []
    if not isinstance(schema, dict):
        return errors
    for i, rule in enumerate(schema.get("x-kubernetes-validations") or []):
        try:
            compile_rule(rule)
        except RuleCompileError as e:
            errors.append((f"{path}.x-kubernetes-validations[{i}].rule", str(e)))
    for name, sub in (schema.get("properties") or {}).items():
        errors += compile_schema(sub, f"{path}.properties[{name}]")
    if isinstance(schema.get("items"), dict):
        errors += compile_schema(schema["items"], f"{path}.items")
    if isinstance(schema.get("additionalProperties"), dict):
        errors += compile_schema(schema["additionalProperties"], f"{path}.additionalProperties")
    return errors


def has_rules(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if schema.get("x-kubernetes-validations"):
        return True
    return any(has_rules(s) for s in (schema.get("properties") or {}).values()) or \
        has_rules(schema.get("items")) or has_rules(schema.get("additionalProperties"))


class Validator:
    """The compiled rules of one schema, evaluated over an object (and its old version on update)."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self._rules: dict[int, list[Rule]] = {}
        self._compile(schema)
        # Per validate() call (evaluation never awaits, so one call runs at a time).
        self._deadline = 0.0
        self._exhausted = False

    def _compile(self, schema: Any) -> None:
        if not isinstance(schema, dict):
            return
        rules = []
        for rule in schema.get("x-kubernetes-validations") or []:
            try:
                rules.append(compile_rule(rule))
            except RuleCompileError:
                continue  # rejected when the CRD was validated
        if rules:
            self._rules[id(schema)] = rules
        for sub in (schema.get("properties") or {}).values():
            self._compile(sub)
        self._compile(schema.get("items"))
        self._compile(schema.get("additionalProperties"))

    def validate(self, obj: Any, old: Any = None) -> list[Cause]:
        causes: list[Cause] = []
        if self._rules:
            self._deadline, self._exhausted = time.perf_counter() + RUNTIME_BUDGET_SECONDS, False
            root_self = _root_view(obj)
            root_old = _root_view(old) if old is not None else None
            self._walk(root_self, root_old, old is not None, self.schema, "", causes, obj, old)
        return causes

    def _walk(self, value: Any, old: Any, has_old: bool, schema: Any, path: str, causes: list[Cause],
              raw: Any, raw_old: Any) -> None:
        if not isinstance(schema, dict) or value is None or self._exhausted:
            return
        rules = self._rules.get(id(schema))
        if rules:
            if time.perf_counter() > self._deadline:
                causes.append(field_invalid(path, schema.get("type") or "object", OUT_OF_BUDGET))
                self._exhausted = True
                return
            for rule in rules:
                self._evaluate(rule, value, old, has_old, path, causes)
        if isinstance(raw, dict):
            props = schema.get("properties") or {}
            additional = schema.get("additionalProperties")
            for key, item in raw.items():
                if not path and key == "metadata":
                    continue
                sub = props.get(key) if key in props else (additional if isinstance(additional, dict) else None)
                if sub is None:
                    continue
                sub_path = child(path, key) if key in props else index(path, key)
                correlated = has_old and isinstance(raw_old, dict) and key in raw_old
                old_item = raw_old[key] if correlated else None
                self._walk(item, old_item, correlated, sub, sub_path, causes, item, old_item)
        elif isinstance(raw, list):
            items = schema.get("items")
            if not isinstance(items, dict):
                return
            keys = schema.get("x-kubernetes-list-map-keys") or []
            old_by_key: dict[tuple, Any] = {}
            if has_old and schema.get("x-kubernetes-list-type") == "map" and isinstance(raw_old, list):
                old_by_key = {tuple(o.get(k) for k in keys): o for o in raw_old if isinstance(o, dict)}
            for i, item in enumerate(raw):
                old_item, correlated = None, False
                if old_by_key and isinstance(item, dict):
                    k = tuple(item.get(x) for x in keys)
                    if k in old_by_key:
                        old_item, correlated = old_by_key[k], True
                self._walk(item, old_item, correlated, items, index(path, i), causes, item, old_item)

    def _evaluate(self, rule: Rule, value: Any, old: Any, has_old: bool, path: str,
                  causes: list[Cause]) -> None:
        if rule.transition and not has_old:
            return
        variables = {"self": value}
        if has_old:
            variables["oldSelf"] = old
        try:
            result = rule.program.execute(_context(variables, rule.needs_stdlib))
        except Exception as e:  # noqa: BLE001 - evaluation errors are reported, not raised
            causes.append(field_invalid(path, _type_word(value), f"{_error_text(e)} evaluating rule: "
                                                                 f"{rule.source}"))
            return
        if result is True:
            return
        if result is not False:
            causes.append(field_invalid(path, _type_word(value), f"rule did not evaluate to a boolean: "
                                                                 f"{rule.source}"))
            return
        message = rule.message or f"failed rule: {_rule_text(rule.source)}"
        if rule.message_expression is not None:
            try:
                m = rule.message_expression.execute(_context(variables, rule.needs_stdlib))
                if isinstance(m, str) and m.strip() and "\n" not in m:
                    message = m
            except Exception:  # noqa: BLE001 - a failing messageExpression falls back to message
                pass
        target = path + _field_path(rule.field_path) if rule.field_path else path
        if rule.reason == "FieldValueRequired":
            causes.append(field_required(target, f"Required value: {message}"))
        elif rule.reason == "FieldValueForbidden":
            causes.append(field_forbidden(target, message))
        elif rule.reason == "FieldValueDuplicate":
            causes.append(field_duplicate(target, _type_word(value)))
        else:
            causes.append(field_invalid(target, _type_word(value), message))


def _root_view(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    view = dict(obj)
    m = obj.get("metadata") or {}
    view["metadata"] = {k: m[k] for k in ("name", "generateName") if k in m}
    return view


def _type_word(value: Any) -> Any:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return value


def _rule_text(source: str) -> str:
    return " ".join(source.split())


def _error_text(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, KeyError):
        return f"no such key: {text.strip(chr(39))}"
    return text


_FIELD_PATH_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\['([^']*)'\]|\[(\d+)\]")


def _field_path(fp: str) -> str:
    out = ""
    for m in _FIELD_PATH_RE.finditer(fp):
        if m.group(1):
            out += "." + m.group(1)
        elif m.group(2) is not None:
            out += f"[{m.group(2)}]"
        else:
            out += f"[{m.group(3)}]"
    return out
