"""core/v1 Secret.

Upstream folds `stringData` into `data` while decoding a v1 Secret, so the
stored object never has stringData; prepare_create/prepare_update do the same.
`data` values are base64; a value that does not decode fails the request with
400 as Go's JSON decoder does, before validation runs.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from kplane.apimachinery.errors import (
    Cause,
    StatusError,
    bad_request,
    field_invalid,
    field_required,
    field_too_long,
)
from kplane.apimachinery.typeschema import boolean, kind_schema, string, string_map
from kplane.apiserver.resource import Column, Obj, ResourceDef
from kplane.controlplane.types.checks import MAX_DATA_SIZE, immutable, key_path, validate_config_keys
from kplane.controlplane.types.configmaps import validate_immutable_update
from kplane.controlplane.types.printing import age_column, name_column

TYPE_DOC = ("Used to facilitate programmatic handling of secret data. More info: "
            "https://kubernetes.io/docs/concepts/configuration/secret/#secret-types")
DATA_DOC = (
    "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or "
    "'.'. The serialized form of the secret data is a base64 encoded string, representing the "
    "arbitrary (possibly non-string) data value here. Described in "
    "https://tools.ietf.org/html/rfc4648#section-4")

SECRET = kind_schema(
    "Secret holds secret data of a certain type. The total bytes of the values in the Data field "
    "must be less than MaxSecretSize bytes.", {
        "data": string_map(DATA_DOC, byte=True),
        "immutable": boolean(
            "Immutable, if set to true, ensures that data stored in the Secret cannot be updated (only "
            "object metadata can be modified). If not set to true, the field can be modified at any time."),
        "stringData": string_map(
            "stringData allows specifying non-binary secret data in string form. It is provided as a "
            "write-only input field for convenience. All keys and values are merged into the data field "
            "on write, overwriting any existing values. The stringData field is never output when "
            "reading from the API."),
        "type": string(TYPE_DOC),
    })

_B64_ALPHABET = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")

# Keys the well-known secret types require (pkg/apis/core/types.go).
_SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
_REQUIRED_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
}


def base64_error(value: str) -> int | None:
    """The input offset Go's base64.StdEncoding reports for `value`, or None when it decodes."""
    chars = [(i, c) for i, c in enumerate(value) if c not in "\r\n"]  # Go skips newlines
    for n, (i, c) in enumerate(chars):
        if c == "=":
            # Padding may only end the last quantum: "xx==" or "xxx=".
            rest = "".join(ch for _, ch in chars[n:])
            if (n % 4 == 2 and rest == "==") or (n % 4 == 3 and rest == "="):
                return None
            return i
        if c not in _B64_ALPHABET:
            return i
    if len(chars) % 4:
        return chars[len(chars) - len(chars) % 4][0]
    return None


def decode_data_value(value: Any) -> bytes:
    if not isinstance(value, str):
        raise bad_request('Secret in version "v1" cannot be handled as a Secret: '
                          'json: cannot unmarshal value into Go struct field Secret.data of type []uint8')
    offset = base64_error(value)
    if offset is not None:
        raise bad_request(f'Secret in version "v1" cannot be handled as a Secret: '
                          f'illegal base64 data at input byte {offset}')
    try:
        return base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
    except binascii.Error as e:  # pragma: no cover - base64_error catches what b64decode rejects
        raise bad_request(f'Secret in version "v1" cannot be handled as a Secret: {e}') from None


def prepare(obj: Obj, _old: Obj | None = None) -> None:
    """Defaults (type Opaque) and the v1 → internal conversion of stringData."""
    for value in (obj.get("data") or {}).values():
        decode_data_value(value)
    string_data = obj.pop("stringData", None)
    if string_data:
        data = obj.setdefault("data", {}) or {}
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        obj["data"] = data
    if not obj.get("type"):
        obj["type"] = "Opaque"


def validate(obj: Obj) -> list[Cause]:
    data: dict[str, str] = obj.get("data") or {}
    causes = validate_config_keys(data, "data")
    try:
        size = sum(len(decode_data_value(v)) for v in data.values())
    except StatusError:
        size = 0  # already rejected by prepare; validation alone cannot fail with 400
    if size > MAX_DATA_SIZE:
        causes.append(field_too_long("data", "", MAX_DATA_SIZE))
    secret_type = obj.get("type") or ""
    if secret_type == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not annotations.get(_SA_NAME_ANNOTATION):
            causes.append(field_required(key_path("metadata.annotations", _SA_NAME_ANNOTATION)))
    elif secret_type in _REQUIRED_KEYS:
        causes += [field_required(key_path("data", k)) for k in _REQUIRED_KEYS[secret_type] if k not in data]
        if secret_type != "kubernetes.io/tls":
            causes += _validate_docker_json(data, _REQUIRED_KEYS[secret_type][0])
    elif secret_type == "kubernetes.io/basic-auth":
        # Either may be empty, but one of them must be present.
        if "username" not in data and "password" not in data:
            causes += [field_required(key_path("data", k)) for k in ("username", "password")]
    elif secret_type == "kubernetes.io/ssh-auth" and not data.get("ssh-privatekey"):
        causes.append(field_required(key_path("data", "ssh-privatekey")))
    return causes


def _validate_docker_json(data: dict[str, str], key: str) -> list[Cause]:
    import json

    if key not in data:
        return []
    try:
        parsed = json.loads(decode_data_value(data[key]))
    except (ValueError, StatusError) as e:
        return [field_invalid(key_path("data", key), "<secret contents redacted>", str(e))]
    if not isinstance(parsed, dict):
        return [field_invalid(key_path("data", key), "<secret contents redacted>",
                              "json: cannot unmarshal into Go value of type map[string]interface {}")]
    return []


def validate_update(new: Obj, old: Obj) -> list[Cause]:
    causes = immutable(new.get("type") or "", old.get("type") or "", "type")
    return causes + validate_immutable_update(new, old, ("data",)) + validate(new)


def resources() -> list[ResourceDef]:
    return [ResourceDef(
        group="", version="v1", kind="Secret", plural="secrets",
        schema=SECRET, openapi_name="io.k8s.api.core.v1.Secret",
        columns=[name_column(),
                 Column("Type", "string", lambda o: o.get("type") or "", description=TYPE_DOC),
                 Column("Data", "string", lambda o: len(o.get("data") or {}), description=DATA_DOC),
                 age_column()],
        field_selectors={"type": lambda o: o.get("type") or ""},
        prepare_create=prepare, prepare_update=prepare,
        validate_create=validate, validate_update=validate_update,
    )]
