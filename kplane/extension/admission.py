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
    """Reject as 403 Forbidden: `<resource>.<group> "<name>" is forbidden: <message>` (upstream NewForbidden)."""


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


class AdmittingRegistry(Registry):
    """The generic Registry with admission hooks on create, update, patch and delete."""

    def __init__(self, rdef: ResourceDef, store: Any, cacher: Any, admission: Admission):
        super().__init__(rdef, store, cacher)
        self.admission = admission
        self.before_create.append(self._admit_create)

    async def _run(self, operation: str, obj: Obj | None, old: Obj | None, opts: WriteOptions) -> Obj | None:
        for hook in self.admission.wanted(operation, opts.subresource):
            replaced = await call_hook(self.rdef, hook, obj, old, opts.user)
            if replaced is not None and obj is not None and replaced is not obj:
                obj.clear()
                obj.update(replaced)
        return obj

    async def _admit_create(self, obj: Obj, opts: WriteOptions) -> None:
        if not self.admission.wanted("CREATE", opts.subresource):
            return
        before = orjson.dumps(obj)
        await self._run(CREATE, obj, None, opts)
        if orjson.dumps(obj) != before:
            self._validate(obj, None)

    async def _guaranteed_update(self, key: str, name: str, mutate: Callable[[Obj], Obj], opts: WriteOptions,
                                 expected: int, patching: bool = False) -> Obj:
        if not self.admission.wanted(UPDATE, opts.subresource):
            return await super()._guaranteed_update(key, name, mutate, opts, expected, patching)
        last: errors.StatusError | None = None
        for _ in range(16):
            kv = await self.store.get(key)
            if kv is None:
                raise self._not_found(name)
            old = self.decode(kv)
            candidate = self._prepare_update(mutate(_copy(old)), old, opts)
            self._validate(candidate, old)
            await self._run(UPDATE, candidate, _copy(old), opts)
            admitted = orjson.dumps(candidate)
            try:
                # Pin the revision the hooks saw: a concurrent write makes this a conflict, and we retry.
                return await super()._guaranteed_update(key, name, lambda _o, a=admitted: orjson.loads(a), opts,
                                                        expected or kv.mod_revision, patching)
            except errors.StatusError as e:
                if e.code != 409 or e.reason != "Conflict" or expected:
                    raise
                last = e
        raise last or errors.conflict(self.rdef.plural, name, self.rdef.group)

    async def delete(self, namespace: str, name: str, options: Obj, opts: WriteOptions) -> tuple[Obj, bool]:
        if self.admission.wanted(DELETE, opts.subresource):
            current = await self.get(namespace, name)
            await self._run(DELETE, None, current, opts)
        return await super().delete(namespace, name, options, opts)


def awaitable(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Wrap a sync or async function so it can always be awaited."""
    async def call(*args: Any, **kw: Any) -> Any:
        result = fn(*args, **kw)
        if inspect.isawaitable(result):
            result = await result
        return result
    return call
