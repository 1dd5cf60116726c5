"""core/v1 ConfigMap."""

from __future__ import annotations

from kplane.apimachinery.errors import Cause, field_forbidden, field_invalid, field_too_long
from kplane.apimachinery.typeschema import boolean, kind_schema, string_map
from kplane.apiserver.resource import Column, Obj, ResourceDef
from kplane.controlplane.types.checks import MAX_DATA_SIZE, key_path, validate_config_keys
from kplane.controlplane.types.printing import age_column, name_column

DATA_DOC = (
    "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' "
    "or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in "
    "Data must not overlap with the keys in the BinaryData field, this is enforced during validation "
    "process.")

CONFIG_MAP = kind_schema("ConfigMap holds configuration data for pods to consume.", {
    "binaryData": string_map(
        "BinaryData contains the binary data. Each key must consist of alphanumeric characters, '-', "
        "'_' or '.'. BinaryData can contain byte sequences that are not in the UTF-8 range.", byte=True),
    "data": string_map(DATA_DOC),
    "immutable": boolean(
        "Immutable, if set to true, ensures that data stored in the ConfigMap cannot be updated (only "
        "object metadata can be modified). If not set to true, the field can be modified at any time."),
})

IMMUTABLE_SET = "field is immutable when `immutable` is set"


def validate(obj: Obj) -> list[Cause]:
    data: dict = obj.get("data") or {}
    binary: dict = obj.get("binaryData") or {}
    causes = validate_config_keys(data, "data")
    causes += [field_invalid(key_path("data", k), k, "duplicate of key present in binaryData")
               for k in sorted(data) if k in binary]
    causes += validate_config_keys(binary, "binaryData")
    causes += [field_invalid(key_path("binaryData", k), k, "duplicate of key present in data")
               for k in sorted(binary) if k in data]
    # binaryData values are base64 on the wire; their decoded length is what counts upstream.
    size = sum(len(v.encode()) for v in data.values() if isinstance(v, str))
    size += sum(len(v) * 3 // 4 for v in binary.values() if isinstance(v, str))
    if size > MAX_DATA_SIZE:
        causes.append(field_too_long("", "", MAX_DATA_SIZE))
    return causes


def validate_immutable_update(new: Obj, old: Obj, fields: tuple[str, ...]) -> list[Cause]:
    """Objects with `immutable: true` may not change their data, nor become mutable again."""
    if not old.get("immutable"):
        return []
    causes: list[Cause] = []
    if not new.get("immutable"):
        causes.append(field_forbidden("immutable", IMMUTABLE_SET))
    causes += [field_forbidden(f, IMMUTABLE_SET) for f in fields if (new.get(f) or {}) != (old.get(f) or {})]
    return causes


def validate_update(new: Obj, old: Obj) -> list[Cause]:
    return validate_immutable_update(new, old, ("data", "binaryData")) + validate(new)


def _data_count(obj: Obj) -> int:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {})


def resources() -> list[ResourceDef]:
    return [ResourceDef(
        group="", version="v1", kind="ConfigMap", plural="configmaps", short_names=["cm"],
        schema=CONFIG_MAP, openapi_name="io.k8s.api.core.v1.ConfigMap",
        columns=[name_column(), Column("Data", "string", _data_count, description=DATA_DOC), age_column()],
        validate_create=validate, validate_update=validate_update,
    )]
