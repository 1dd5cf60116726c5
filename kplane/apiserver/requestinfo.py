"""Derive what a request does from its method and URL, as upstream's
request-info resolver (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace

_SPECIAL_VERBS = {"proxy", "watch"}
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


@dataclass
class RequestInfo:
    is_resource_request: bool
    path: str
    verb: str
    api_prefix: str = ""  # "api" or "apis"
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)


def _is_watch(query: dict[str, str]) -> bool:
    return query.get("watch", "").lower() in ("1", "true")


def resolve(method: str, path: str, query: dict[str, str]) -> RequestInfo:
    """What the request does. The result is shared between requests of the same method, path
    and watch flag (memoized: clients repeat the same few paths): callers must not modify it.

    A list or watch whose field selector requires one metadata.name is about that name, as
    upstream's resolver has it (RBAC resourceNames then allow watching one object)."""
    info = _resolve(method, path, _is_watch(query))
    if info.verb in ("list", "watch") and not info.name and "metadata.name" in query.get("fieldSelector", ""):
        name = _exact_name(query["fieldSelector"])
        if name:
            return replace(info, name=name)
    return info


_TERM = re.compile(r"(?<!\\),")  # field selector terms: split at unescaped commas
_OPERATOR = re.compile(r"(?<!\\)(==|!=|=)")


def _exact_name(selector: str) -> str:
    """fields.Selector.RequiresExactMatch("metadata.name") for a selector string, if the name is
    a valid path segment name."""
    for term in _TERM.split(selector):
        parts = _OPERATOR.split(term, maxsplit=1)
        if len(parts) == 3 and parts[0].strip() == "metadata.name" and parts[1] in ("=", "=="):
            value = re.sub(r"\\(.)", r"\1", parts[2])
            if value and value not in (".", "..") and "/" not in value and "%" not in value:
                return value
    return ""


def resolve_unwatched(method: str, path: str) -> RequestInfo:
    """resolve() for a request known not to be a watch (the fast lane's express requests): no
    query to parse."""
    return _resolve(method, path, False)


@functools.lru_cache(maxsize=4096)
def _resolve(method: str, path: str, watch: bool) -> RequestInfo:
    http_verb = method.lower()
    info = RequestInfo(is_resource_request=False, path=path, verb=http_verb)
    segments = [s for s in path.strip("/").split("/")] if path.strip("/") else []
    if not segments or segments[0] not in ("api", "apis"):
        return info
    info.api_prefix = segments[0]
    rest = segments[1:]
    if info.api_prefix == "apis":
        if not rest:
            return info
        info.api_group, rest = rest[0], rest[1:]
    if not rest:
        return info
    info.api_version, rest = rest[0], rest[1:]
    if not rest:
        return info  # discovery document of a group-version

    info.is_resource_request = True
    verb = {"post": "create", "get": "get", "head": "get", "put": "update", "patch": "patch",
            "delete": "delete"}.get(http_verb, http_verb)
    if rest[0] in _SPECIAL_VERBS:
        if len(rest) < 2:
            info.is_resource_request = False
            return info
        verb = rest[0]
        rest = rest[1:]
    if rest[0] == "namespaces" and len(rest) > 1:
        info.namespace = rest[1]
        # Anything after the namespace name other than a namespace subresource
        # is a namespaced resource in its own right.
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    info.parts = rest
    info.resource = rest[0]
    if len(rest) >= 2:
        info.name = rest[1]
    if len(rest) >= 3:
        info.subresource = rest[2]
    if not info.name:
        if verb == "get":
            verb = "list"
        elif verb == "delete":
            verb = "deletecollection"
    if verb == "list" and watch:  # a named GET with ?watch=true stays a get, as upstream
        verb = "watch"
    info.verb = verb
    return info
