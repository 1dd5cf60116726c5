"""Admission hooks for an extension server's resources.

A hook is `hook(obj, old, user)`, sync or async: `obj` is the object about to
be written (None on DELETE), `old` the stored one (None on CREATE), `user`
the caller's UserInfo. It rejects a request by raising Invalid or Forbidden
(or any StatusError), and may change `obj` in place or return a replacement
(mutating admission). Hooks run after defaulting and schema validation, before
the write, inside the same optimistic-concurrency retry as the write itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kplane.apimachinery import errors
from kplane.apimachinery.errors import Cause
from kplane.apiserver.registry import Registry, WriteOptions
from kplane.apiserver.resource import Obj, ResourceDef

Hook = Callable[[Obj | None, Obj | None, Any], Any]

CREATE, UPDATE, DELETE = "CREATE", "UPDATE", "DELETE"


class Invalid(Exception):
    """Reject as 422 Invalid with one cause on `field` (e.g. "spec.qty")."""

    def __init__(self, field: str, message: str, value: Any = None, reason: str = "FieldValueInvalid"):
        super().__init__(message)
        self.field = field
        self.message = message
        self.value = value
        self.reason = reason

    def cause(self) -> Cause:
        if self.reason == "FieldValueInvalid" and self.value is not None:
            return errors.field_invalid(self.field, self.value, self.message)
        if self.reason == "FieldValueRequired":
            return errors.field_required(self.field, self.message or "Required value")
        if self.reason == "FieldValueForbidden":
            return errors.field_forbidden(self.field, self.message)
        return Cause(self.reason, self.message, self.field)


class Forbidden(Exception):
    """Reject as 403 Forbidden: `<resource>.<group> "<name>" is forbidden: <message>`
    (upstream's NewForbidden)."""


@dataclass
class AdmissionHook:
    fn: Hook
    operations: tuple[str, ...] = (CREATE, UPDATE)
    subresources: tuple[str, ...] = ("",)


@dataclass
class Admission:
    hooks: list[AdmissionHook] = field(default_factory=list)

    def wanted(self, operation: str, subresource: str) -> list[AdmissionHook]:
        return [h for h in self.hooks if operation in h.operations and subresource in h.subresources]


def forbidden_error(rdef: ResourceDef, name: str, message: str) -> errors.StatusError:
    qualified = f"{rdef.plural}.{rdef.group}" if rdef.group else rdef.plural
    text = f'{qualified} "{name}" is forbidden: {message}' if name else f"{qualified} is forbidden: {message}"
    details: dict[str, Any] = {"name": name, "group": rdef.group, "kind": rdef.plural}
    return errors.StatusError(403, "Forbidden", text, {k: v for k, v in details.items() if v})


async def call_hook(rdef: ResourceDef, hook: AdmissionHook, obj: Obj | None, old: Obj | None,
                    user: Any) -> Obj | None:
    name = ((obj or old or {}).get("metadata") or {}).get("name", "")
    try:
        result = hook.fn(obj, old, user)
        if inspect.isawaitable(result):
            result = await result
    except Invalid as e:
        raise errors.invalid(rdef.kind, name, [e.cause()], rdef.group) from None
    except Forbidden as e:
        raise forbidden_error(rdef, name, str(e)) from None
    return result if isinstance(result, dict) else None


def _copy(obj: Obj) -> Obj:
    return orjson.loads(orjson.dumps(obj))


def install_admission(registry: Registry, admission: Admission) -> Registry:
    """Attach admission to a generic Registry through its before_create/update/delete hooks.

    The hooks run after defaulting and validation, inside the registry's optimistic-concurrency
    loop: a conflicting write re-reads the object and runs them again. They see objects in the
    storage version whatever version the request used (as upstream's webhooks with
    matchPolicy: Equivalent see their own version); an object a hook changed is converted back
    and validated again."""
    rdef = registry.rdef
    to_hook = rdef.to_storage or (lambda o: o)
    from_hook = rdef.from_storage or (lambda o: o)

    async def run(operation: str, obj: Obj | None, old: Obj | None, opts: WriteOptions) -> None:
        hooks = admission.wanted(operation, opts.subresource)
        if not hooks:
            return
        seen = to_hook(obj) if obj is not None else None
        old_seen = to_hook(old) if old is not None else None
        before = orjson.dumps(seen) if seen is not None else b""
        for hook in hooks:
            replaced = await call_hook(rdef, hook, seen, old_seen, opts.user)
            if replaced is not None and seen is not None and replaced is not seen:
                seen.clear()
                seen.update(replaced)
        if obj is not None and seen is not None and orjson.dumps(seen) != before:
            changed = from_hook(seen) if rdef.from_storage else seen
            if changed is not obj:
                obj.clear()
                obj.update(changed)
            registry._validate(obj, old)

    async def before_create(obj: Obj, opts: WriteOptions) -> None:
        await run(CREATE, obj, None, opts)

    async def before_update(new: Obj, old: Obj, opts: WriteOptions) -> None:
        await run(UPDATE, new, _copy(old), opts)

    async def before_delete(obj: Obj, opts: WriteOptions) -> None:
        await run(DELETE, None, _copy(obj), opts)

    registry.before_create.append(before_create)
    registry.before_update.append(before_update)
    registry.before_delete.append(before_delete)
    return registry


def awaitable(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Wrap a sync or async function so it can always be awaited."""
    async def call(*args: Any, **kw: Any) -> Any:
        result = fn(*args, **kw)
        if inspect.isawaitable(result):
            result = await result
        return result
    return call
