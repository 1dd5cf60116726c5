"""Registries whose objects are not stored: review APIs (TokenReview,
SubjectAccessReview), computed resources (the metrics.k8s.io pattern) and
action subresources. The handlers call them exactly like a stored Registry;
verbs without a function answer 405 MethodNotAllowed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kplane.apimachinery import errors
from kplane.apiserver.registry import ListOptions, ListResult, WriteOptions
from kplane.apiserver.resource import Obj, ResourceDef

# create(namespace, body, opts) -> object to return (201)
CreateFn = Callable[[str, Obj, WriteOptions], Awaitable[Obj]]
GetFn = Callable[[str, str], Awaitable[Obj]]  # (namespace, name)
ListFn = Callable[[str], Awaitable[list[Obj]]]  # (namespace)


def _meta_field(obj: Obj) -> Callable[[str], str]:
    """The fields a computed object can be selected by: metadata.name and metadata.namespace."""
    m = obj.get("metadata") or {}
    return lambda field: m.get("name", "") if field == "metadata.name" else m.get("namespace", "")


@dataclass
class VirtualRegistry:
    rdef: ResourceDef
    create_fn: CreateFn | None = None
    get_fn: GetFn | None = None
    list_fn: ListFn | None = None
    cacher: Any = None

    async def create(self, namespace: str, obj: Obj, opts: WriteOptions) -> Obj:
        if self.create_fn is None:
            raise errors.method_not_allowed()
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        return await self.create_fn(namespace, obj, opts)

    async def get(self, namespace: str, name: str, resource_version: str = "", *, shared: bool = False) -> Obj:
        if self.get_fn is None:
            raise errors.method_not_allowed()
        return await self.get_fn(namespace, name)

    async def list(self, namespace: str, opts: ListOptions, *, shared: bool = False) -> ListResult:
        if self.list_fn is None:
            raise errors.method_not_allowed()
        items = await self.list_fn(namespace)
        if opts.label_selector is not None:
            items = [o for o in items if opts.label_selector.matches(o.get("metadata", {}).get("labels") or {})]
        if opts.field_selector is not None:
            selector = opts.field_selector
            items = [o for o in items if selector.matches(_meta_field(o))]
        return ListResult(items, "")

    def supported_fields(self) -> set[str]:
        return {"metadata.name", "metadata.namespace"}

    async def update(self, *args: Any, **kw: Any) -> Any:
        raise errors.method_not_allowed()

    patch = delete = delete_collection = update

    def watch(self, *args: Any, **kw: Any) -> Any:
        raise errors.method_not_allowed()

    async def open_watch(self, *args: Any, **kw: Any) -> Any:
        raise errors.method_not_allowed()
