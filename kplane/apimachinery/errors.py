"""metav1.Status errors.

Every failure a client can see is raised as a StatusError and rendered as a
metav1.Status object. Reasons and codes follow k8s.io/apimachinery/pkg/api/errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cause:
    type: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, ...
    message: str
    field: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {"reason": self.type, "message": self.message}
        if self.field:
            d["field"] = self.field
        return d


@dataclass
class StatusError(Exception):
    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    list_meta: dict[str, Any] = field(default_factory=dict)  # the Status's metadata (e.g. a fresh continue)

    def __str__(self) -> str:
        return self.message

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.list_meta),
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.reason == "":
            del status["reason"]
        if self.details is not None:
            status["details"] = self.details
        return status


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    d.update(extra)
    return d


def not_found(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                       _details(name, group, resource))


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists',
                       _details(name, group, resource))


def conflict(resource: str, name: str, group: str = "", why: str | None = None) -> StatusError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return StatusError(409, "Conflict",
                       f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
                       _details(name, group, resource))


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> StatusError:
    parts = []
    for c in causes:
        parts.append(f"{c.field}: {c.message}" if c.field else c.message)
    if len(parts) == 1:
        agg = parts[0]
    else:
        agg = "[" + ", ".join(parts) + "]"
    qualified = f"{kind}.{group}" if group else kind
    return StatusError(422, "Invalid", f'{qualified} "{name}" is invalid: {agg}',
                       _details(name, group, kind, causes=[c.to_dict() for c in causes]))


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> StatusError:
    return StatusError(401, "Unauthorized", message)


def forbidden(message: str, resource: str = "", name: str = "", group: str = "") -> StatusError:
    details = _details(name, group, resource) if resource else None
    return StatusError(403, "Forbidden", message, details)


def namespace_terminating(resource: str, group: str, name: str, namespace: str) -> StatusError:
    """NamespaceLifecycle's refusal (admission.NewForbidden about the object, with its cause)."""
    qualified = f"{resource}.{group}" if group else resource
    err = forbidden(f'{qualified} "{name}" is forbidden: unable to create new content in namespace {namespace} '
                    "because it is being terminated", resource, name, group)
    assert err.details is not None
    err.details["causes"] = [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                              "message": f"namespace {namespace} is being terminated"}]
    return err


def method_not_allowed(message: str = "the server does not allow this method on the requested resource"
                       ) -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def not_acceptable(message: str) -> StatusError:
    return StatusError(406, "NotAcceptable", message)


def expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Gone", message)


def too_large(message: str = "Request entity too large: limit is 3145728") -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", message)


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                       f'accepted media types include: application/json, application/yaml, '
                       f'application/vnd.kubernetes.protobuf (got "{content_type}")')


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def service_unavailable(message: str) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message)


def timeout(message: str) -> StatusError:
    return StatusError(504, "Timeout", message)


def resource_version_too_large(message: str) -> StatusError:
    """NewTooLargeResourceVersionError: a 504 with the cause clients relist on."""
    return StatusError(504, "Timeout", message, {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1})


def field_required(path: str, message: str = "Required value") -> Cause:
    return Cause("FieldValueRequired", message, path)


def field_invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {_render(value)}: {detail}", path)


def field_type_invalid(path: str, value: Any, detail: str) -> Cause:
    """field.TypeInvalid: apiextensions reports schema type mismatches with it."""
    return Cause("FieldValueTypeInvalid", f"Invalid value: {_render(value)}: {detail}", path)


def field_not_supported(path: str, value: Any, supported: list[str]) -> Cause:
    sup = ", ".join(f'"{s}"' for s in supported)
    return Cause("FieldValueNotSupported", f"Unsupported value: {_render(value)}: supported values: {sup}", path)


def field_forbidden(path: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", f"Forbidden: {detail}", path)


def field_duplicate(path: str, value: Any) -> Cause:
    return Cause("FieldValueDuplicate", f"Duplicate value: {_render(value)}", path)


def field_too_long(path: str, value: Any, limit: int) -> Cause:
    return Cause("FieldValueTooLong", f"Too long: may not be more than {limit} bytes", path)


def _render(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return '"object"' if isinstance(value, dict) else '"array"'
    return str(value)
