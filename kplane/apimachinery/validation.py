"""Name and ObjectMeta validation with kube-apiserver 1.32's exact messages.

Ports k8s.io/apimachinery/pkg/util/validation (the Is* helpers that return message lists),
pkg/api/validation/path (path-segment names) and pkg/api/validation/objectmeta.go
(ValidateObjectMetaAccessor / ValidateObjectMetaAccessorUpdate). Field paths are rendered as
upstream's field.Path does ("metadata.labels").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from kplane.apimachinery.errors import (
    Cause,
    field_forbidden,
    field_invalid,
    field_required,
    field_too_long,
)

# ---------------------------------------------------------------------------------------------
# Go-style value rendering for messages that embed a value (%q, %#v of []string)
# ---------------------------------------------------------------------------------------------

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(s: str) -> str:
    """fmt's %q for a string: double quotes, Go escapes, printable non-ASCII kept as is."""
    out = []
    for c in s:
        if c in _GO_ESCAPES:
            out.append(_GO_ESCAPES[c])
        elif c.isprintable():
            out.append(c)
        elif ord(c) < 0x80:
            out.append(f"\\x{ord(c):02x}")
        elif ord(c) <= 0xFFFF:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    return '"' + "".join(out) + '"'


def go_string_slice(values: list[str] | None) -> str:
    """fmt's %#v for a []string: `[]string(nil)` for nil, else `[]string{"a", "b"}`."""
    if values is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(go_quote(v) for v in values) + "}"


# ---------------------------------------------------------------------------------------------
# k8s.io/apimachinery/pkg/util/validation
# ---------------------------------------------------------------------------------------------


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def empty_error() -> str:
    return "must be non-empty"


_QNAME_CHAR = "[A-Za-z0-9]"
_QNAME_EXT_CHAR = "[-A-Za-z0-9_.]"
QUALIFIED_NAME_FMT = f"({_QNAME_CHAR}{_QNAME_EXT_CHAR}*)?{_QNAME_CHAR}"
_QUALIFIED_NAME_ERR = ("must consist of alphanumeric characters, '-', '_' or '.', "
                       "and must start and end with an alphanumeric character")
QUALIFIED_NAME_MAX_LENGTH = 63
_QUALIFIED_NAME_RE = re.compile(f"^{QUALIFIED_NAME_FMT}$")

LABEL_VALUE_FMT = f"({QUALIFIED_NAME_FMT})?"
_LABEL_VALUE_ERR = ("a valid label must be an empty string or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character")
LABEL_VALUE_MAX_LENGTH = 63
_LABEL_VALUE_RE = re.compile(f"^{LABEL_VALUE_FMT}$")

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_ERR = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                      "or '-', and must start and end with an alphanumeric character")
DNS1123_LABEL_MAX_LENGTH = 63
_DNS1123_LABEL_RE = re.compile(f"^{DNS1123_LABEL_FMT}$")

DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_ERR = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                          "characters, '-' or '.', and must start and end with an alphanumeric character")
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")

DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_ERR = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                      "start with an alphabetic character, and end with an alphanumeric character")
DNS1035_LABEL_MAX_LENGTH = 63
_DNS1035_LABEL_RE = re.compile(f"^{DNS1035_LABEL_FMT}$")


def _fullmatch(regex: re.Pattern[str], value: str) -> bool:
    # Go's `$` does not match before a trailing newline; Python's does, so use fullmatch semantics.
    return regex.fullmatch(value) is not None


def _byte_len(value: str) -> int:
    # Go's len() counts UTF-8 bytes.
    return len(value.encode("utf-8", "surrogatepass"))


def _memoized(check: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """An Is* check that remembers its answers: they depend on the string alone, and every
    write validates the same few label keys and values over and over. (Not the name checks:
    a create's name is new each time, so remembering it only costs.)"""
    remembered = functools.lru_cache(maxsize=4096)(lambda value: tuple(check(value)))

    @functools.wraps(check)
    def memoized(value: str) -> list[str]:
        return list(remembered(value)) if isinstance(value, str) else check(value)

    return memoized


@_memoized
def is_qualified_name(value: str) -> list[str]:
    """Label keys, annotation keys (lower-cased first), finalizer names: [prefix/]name."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + empty_error())
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(_QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part " + empty_error())
    elif _byte_len(name) > QUALIFIED_NAME_MAX_LENGTH:
        errs.append("name part " + max_len_error(QUALIFIED_NAME_MAX_LENGTH))
    if not _fullmatch(_QUALIFIED_NAME_RE, name):
        errs.append("name part "
                    + regex_error(_QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


@_memoized
def is_valid_label_value(value: str) -> list[str]:
    errs = []
    if _byte_len(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not _fullmatch(_LABEL_VALUE_RE, value):
        errs.append(regex_error(_LABEL_VALUE_ERR, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if _byte_len(value) > DNS1123_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not _fullmatch(_DNS1123_LABEL_RE, value):
        errs.append(regex_error(_DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if _byte_len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _fullmatch(_DNS1123_SUBDOMAIN_RE, value):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if _byte_len(value) > DNS1035_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1035_LABEL_MAX_LENGTH))
    if not _fullmatch(_DNS1035_LABEL_RE, value):
        errs.append(regex_error(_DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


# ---------------------------------------------------------------------------------------------
# k8s.io/apimachinery/pkg/api/validation/path and the generic name functions
# ---------------------------------------------------------------------------------------------

NAME_MAY_NOT_BE = (".", "..")
NAME_MAY_NOT_CONTAIN = ("/", "%")


def is_valid_path_segment_name(name: str) -> list[str]:
    """Names that only need to be safe as a URL path segment / storage key (RBAC objects...)."""
    for illegal in NAME_MAY_NOT_BE:
        if name == illegal:
            return [f"may not be '{illegal}'"]
    return is_valid_path_segment_prefix(name)


def is_valid_path_segment_prefix(name: str) -> list[str]:
    # Exact '.'/'..' are fine as a prefix: the generated suffix makes the final name valid.
    return [f"may not contain '{c}'" for c in NAME_MAY_NOT_CONTAIN if c in name]


def _mask_trailing_dash(name: str) -> str:
    """generateName may end in '-'; swap it for a letter so DNS rules judge only the prefix."""
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


# A ValidateNameFunc: (name, is_prefix) -> messages.
NameValidator = Callable[[str, bool], list[str]]


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


def validate_path_segment_name(name: str, prefix: bool) -> list[str]:
    return is_valid_path_segment_prefix(name) if prefix else is_valid_path_segment_name(name)


NAME_VALIDATORS: dict[str, NameValidator] = {
    "subdomain": name_is_dns_subdomain,   # most resources, CRs, CRDs
    "label": name_is_dns_label,           # namespaces
    "dns1035": name_is_dns1035_label,     # services
    "path": validate_path_segment_name,   # RBAC roles/bindings and other free-form names
}


# ---------------------------------------------------------------------------------------------
# ObjectMeta validation (pkg/api/validation/objectmeta.go, meta/v1/validation)
# ---------------------------------------------------------------------------------------------

FIELD_IMMUTABLE_ERROR_MSG = "field is immutable"
TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * (1 << 10)  # 256 kB
FINALIZER_ORPHAN_DEPENDENTS = "orphan"
FINALIZER_DELETE_DEPENDENTS = "foregroundDeletion"


def _invalid_raw(path: str, rendered: str, detail: str) -> Cause:
    """field.Invalid with a value already rendered Go-style (e.g. a []string)."""
    return Cause("FieldValueInvalid", f"Invalid value: {rendered}: {detail}", path)


def validate_labels(labels: Mapping[str, Any] | None, path: str = "metadata.labels") -> list[Cause]:
    causes: list[Cause] = []
    for k, v in (labels or {}).items():
        causes.extend(field_invalid(path, k, m) for m in is_qualified_name(k))
        if not isinstance(v, str):
            causes.append(field_invalid(path, v, "must be a string"))
            continue
        causes.extend(field_invalid(path, v, m) for m in is_valid_label_value(v))
    return causes


def validate_annotations(annotations: Mapping[str, Any] | None,
                         path: str = "metadata.annotations") -> list[Cause]:
    causes: list[Cause] = []
    total = 0
    for k, v in (annotations or {}).items():
        # Annotation keys follow the qualified-name rule, except that case does not matter.
        causes.extend(field_invalid(path, k, m) for m in is_qualified_name(k.lower()))
        total += _byte_len(k) + (_byte_len(v) if isinstance(v, str) else 0)
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B:
        causes.append(field_too_long(path, "", TOTAL_ANNOTATION_SIZE_LIMIT_B))
    return causes


def validate_finalizers(finalizers: list[str] | None, path: str = "metadata.finalizers") -> list[Cause]:
    causes: list[Cause] = []
    finalizers = finalizers or []
    for f in finalizers:
        causes.extend(field_invalid(path, f, m) for m in is_qualified_name(f))
    if FINALIZER_ORPHAN_DEPENDENTS in finalizers and FINALIZER_DELETE_DEPENDENTS in finalizers:
        causes.append(_invalid_raw(path, go_string_slice(list(finalizers)),
                                   f"finalizer {FINALIZER_ORPHAN_DEPENDENTS} and "
                                   f"{FINALIZER_DELETE_DEPENDENTS} cannot be both set"))
    return causes


def _owner_ref_version(api_version: str) -> str:
    """The version part of schema.ParseGroupVersion; "" when it does not parse."""
    if api_version.count("/") > 1:
        return ""
    return api_version.rsplit("/", 1)[-1]


def validate_owner_references(refs: list[Mapping[str, Any]] | None,
                              path: str = "metadata.ownerReferences") -> list[Cause]:
    causes: list[Cause] = []
    first_controller = ""
    for ref in refs or []:
        api_version, kind = ref.get("apiVersion", ""), ref.get("kind", "")
        # Upstream reports these on the un-indexed list path (fldPath.Child, no Index).
        if not _owner_ref_version(api_version):
            causes.append(field_invalid(f"{path}.apiVersion", api_version, "version must not be empty"))
        if not kind:
            causes.append(field_invalid(f"{path}.kind", kind, "must not be empty"))
        if not ref.get("name"):
            causes.append(field_invalid(f"{path}.name", ref.get("name", ""), "must not be empty"))
        if not ref.get("uid"):
            causes.append(field_invalid(f"{path}.uid", ref.get("uid", ""), "must not be empty"))
        if api_version == "v1" and kind == "Event":
            causes.append(field_invalid(path, dict(ref), "/v1, Kind=Event is disallowed from being an owner"))
        if ref.get("controller") is True:
            current = f"{kind}/{ref.get('name', '')}"
            if first_controller:
                causes.append(field_invalid(
                    path, list(refs or []),
                    "Only one reference can have Controller set to true. "
                    f'Found "true" in references for {first_controller} and {current}'))
            else:
                first_controller = current
    return causes


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _validate_name(meta: Mapping[str, Any], name_fn: NameValidator, is_create: bool) -> list[Cause]:
    causes: list[Cause] = []
    name, generate_name = meta.get("name") or "", meta.get("generateName") or ""
    if generate_name:
        causes.extend(field_invalid("metadata.generateName", generate_name, m)
                      for m in name_fn(generate_name, True))
    if name:
        causes.extend(field_invalid("metadata.name", name, m) for m in name_fn(name, False))
    elif not (is_create and generate_name):
        # A create with only generateName is fine: the server generates the name afterwards.
        causes.append(field_required("metadata.name", "Required value: name or generateName is required"))
    return causes


def _validate_namespace(meta: Mapping[str, Any], namespaced: bool) -> list[Cause]:
    namespace = meta.get("namespace") or ""
    if not namespaced:
        return [field_forbidden("metadata.namespace", "not allowed on this type")] if namespace else []
    if not namespace:
        return [field_required("metadata.namespace")]
    return [field_invalid("metadata.namespace", namespace, m) for m in name_is_dns_label(namespace, False)]


def _validate_common(meta: Mapping[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    generation = meta.get("generation")
    if isinstance(generation, int) and generation < 0:
        causes.append(field_invalid("metadata.generation", generation, "must be greater than or equal to 0"))
    causes.extend(validate_labels(meta.get("labels")))
    causes.extend(validate_annotations(meta.get("annotations")))
    causes.extend(validate_owner_references(meta.get("ownerReferences")))
    causes.extend(validate_finalizers(meta.get("finalizers")))
    return causes


def validate_object_meta(obj: Mapping[str, Any], *, namespaced: bool, name_validation: str = "subdomain",
                         is_create: bool = True) -> list[Cause]:
    """ValidateObjectMetaAccessor for an object dict. name_validation: subdomain|label|dns1035|path."""
    try:
        name_fn = NAME_VALIDATORS[name_validation]
    except KeyError:
        raise ValueError(f"unknown name validation {name_validation!r}") from None
    meta = _meta(obj)
    return [*_validate_name(meta, name_fn, is_create), *_validate_namespace(meta, namespaced),
            *_validate_common(meta)]


def _immutable(path: str, new: Any, old: Any) -> list[Cause]:
    return [] if new == old else [field_invalid(path, new, FIELD_IMMUTABLE_ERROR_MSG)]


def validate_object_meta_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[Cause]:
    """ValidateObjectMetaAccessorUpdate for object dicts.

    As in rest.BeforeUpdate, an absent uid or creationTimestamp in `new` means "keep the old one"
    (the caller is expected to carry them over), so only a conflicting value is an error.
    """
    nm, om = _meta(new), _meta(old)
    causes: list[Cause] = []
    if om.get("deletionTimestamp"):
        added = sorted(set(nm.get("finalizers") or []) - set(om.get("finalizers") or []))
        if added:
            causes.append(field_forbidden(
                "metadata.finalizers",
                "no new finalizers can be added if the object is being deleted, "
                f"found new finalizers {go_string_slice(added)}"))
    causes += _immutable("metadata.name", nm.get("name") or "", om.get("name") or "")
    causes += _immutable("metadata.namespace", nm.get("namespace") or "", om.get("namespace") or "")
    for key in ("uid", "creationTimestamp"):
        if nm.get(key):
            causes += _immutable(f"metadata.{key}", nm.get(key), om.get(key))
    causes += _validate_common(nm)
    return causes


__all__ = [
    "FIELD_IMMUTABLE_ERROR_MSG", "NAME_VALIDATORS", "TOTAL_ANNOTATION_SIZE_LIMIT_B", "go_quote",
    "go_string_slice", "is_dns1035_label", "is_dns1123_label", "is_dns1123_subdomain",
    "is_qualified_name", "is_valid_label_value", "is_valid_path_segment_name",
    "is_valid_path_segment_prefix", "name_is_dns1035_label", "name_is_dns_label", "name_is_dns_subdomain",
    "validate_annotations", "validate_finalizers", "validate_labels", "validate_object_meta",
    "validate_object_meta_update", "validate_owner_references", "validate_path_segment_name",
]
