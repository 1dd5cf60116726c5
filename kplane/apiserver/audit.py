"""Auditing, as k8s.io/apiserver does it: an audit.k8s.io/v1 Policy decides, per request, the
level (None, Metadata, Request, RequestResponse) and the stages to leave out; each stage a request
reaches (RequestReceived, ResponseStarted for long-running requests, ResponseComplete, Panic)
becomes one audit.k8s.io/v1 Event, written as a JSON line by a background writer.

The filter chain drives an `Auditor` through these calls (see apiserver/server.py):

    received(request, user, info)    after authentication: evaluate the policy, emit RequestReceived
    await read_body(request)         after authorization: keep the body for requestObject
    response_started(request, resp)  as response headers go out (Audit-Id; ResponseStarted)
    finish(request, resp, exc)       when the handler is done: ResponseComplete or Panic

Without a policy file nothing is recorded, as upstream. Every response carries the request's
`Audit-Id` header whether or not auditing is on (upstream's WithAuditInit).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import StreamReader, web

from kplane.apimachinery.meta import new_uid
from kplane.apiserver.auth import user_info

log = logging.getLogger("kplane.audit")

LEVELS = ("None", "Metadata", "Request", "RequestResponse")
NONE, METADATA, REQUEST, REQUEST_RESPONSE = range(4)
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
POLICY_VERSIONS = ("audit.k8s.io/v1",)

HEADER_AUDIT_ID = "Audit-Id"
DECISION = "authorization.k8s.io/decision"
REASON = "authorization.k8s.io/reason"

MAX_USER_AGENT = 1024
MAX_AUDITED_BODY = 3 * 1024 * 1024  # upstream's request body limit
LONG_RUNNING_VERBS = frozenset({"watch", "proxy"})
LONG_RUNNING_SUBRESOURCES = frozenset({"attach", "exec", "proxy", "log", "portforward"})

_KEY = "audit"  # request[_KEY]: this request's AuditRecord (absent: not audited)


class PolicyError(ValueError):
    """An audit policy file that cannot be used; the message says where."""


# ---- policy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupResources:
    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyRule:
    level: int
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool | None = None

    def matches(self, user: Any, verb: str, is_resource: bool, path: str, group: str, resource: str,
                subresource: str, namespace: str, name: str) -> bool:
        """policy/checker.go ruleMatches, field for field."""
        if self.users and (user is None or user.name not in self.users):
            return False
        if self.user_groups and (user is None or not any(g in self.user_groups for g in user.groups)):
            return False
        if self.verbs and verb not in self.verbs:
            return False
        if self.namespaces or self.resources:
            if not is_resource:
                return False
            if self.namespaces and namespace not in self.namespaces:  # "" matches cluster-scoped requests
                return False
            if not self.resources:
                return True
            combined = f"{resource}/{subresource}" if subresource else resource
            for gr in self.resources:
                if gr.group != group:
                    continue
                if not gr.resources:
                    return True
                if gr.resource_names and name not in gr.resource_names:
                    continue
                for res in gr.resources:
                    if res in (combined, "*"):
                        return True
                    if subresource and res.startswith("*/") and res[2:] == subresource:
                        return True
                    if res.endswith("/*") and res[:-2] == resource:
                        return True
            return False
        if self.non_resource_urls:
            if is_resource:
                return False
            return any(_path_matches(path, spec) for spec in self.non_resource_urls)
        return True


def _path_matches(path: str, spec: str) -> bool:
    return spec == "*" or spec == path or (spec.endswith("*") and path.startswith(spec.rstrip("*")))


@dataclass(frozen=True)
class RequestAuditConfig:
    level: int
    omit_stages: frozenset[str]
    omit_managed_fields: bool


@dataclass(frozen=True)
class Policy:
    rules: tuple[PolicyRule, ...]
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False

    def evaluate(self, user: Any, info: Any) -> RequestAuditConfig:
        """The first matching rule wins; no match is level None (policy.DefaultAuditLevel)."""
        is_resource = bool(info.is_resource_request)
        for rule in self.rules:
            if rule.matches(user, info.verb, is_resource, info.path, info.api_group, info.resource,
                            info.subresource, info.namespace, info.name):
                omit_mf = self.omit_managed_fields if rule.omit_managed_fields is None else rule.omit_managed_fields
                # Policy-wide omitStages are unioned into every rule's (policy.NewPolicyRuleEvaluator).
                return RequestAuditConfig(rule.level, rule.omit_stages | self.omit_stages, omit_mf)
        return RequestAuditConfig(NONE, self.omit_stages, self.omit_managed_fields)


def _strings(doc: dict, key: str, where: str) -> tuple[str, ...]:
    value = doc.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where}.{key}: must be a list of strings")
    return tuple(value)


def _stages(doc: dict, where: str) -> frozenset[str]:
    stages = _strings(doc, "omitStages", where)
    for i, s in enumerate(stages):
        if s not in STAGES:
            raise PolicyError(f'{where}.omitStages[{i}]: Unsupported value: "{s}": supported values: '
                              + ", ".join(f'"{x}"' for x in STAGES))
    return frozenset(stages)


def _bool(doc: dict, key: str, where: str) -> bool | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, bool):
        raise PolicyError(f"{where}.{key}: must be a boolean")
    return value


def parse_policy(doc: Any, source: str = "policy") -> Policy:
    """An audit.k8s.io/v1 Policy, validated as upstream's policy validation does."""
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: not an audit Policy object")
    if doc.get("kind") != "Policy" or doc.get("apiVersion") not in POLICY_VERSIONS:
        raise PolicyError(f"{source}: want kind Policy, apiVersion audit.k8s.io/v1 (got kind "
                          f"{doc.get('kind')!r}, apiVersion {doc.get('apiVersion')!r})")
    raw_rules = doc.get("rules") or []
    if not isinstance(raw_rules, list):
        raise PolicyError("rules: must be a list")
    rules = []
    for i, r in enumerate(raw_rules):
        where = f"rules[{i}]"
        if not isinstance(r, dict):
            raise PolicyError(f"{where}: must be an object")
        level = r.get("level")
        if level not in LEVELS:
            raise PolicyError(f'{where}.level: Unsupported value: "{level or ""}": supported values: '
                              + ", ".join(f'"{x}"' for x in LEVELS))
        groups: list[GroupResources] = []
        raw_groups = r.get("resources") or []
        if not isinstance(raw_groups, list):
            raise PolicyError(f"{where}.resources: must be a list")
        for j, g in enumerate(raw_groups):
            gw = f"{where}.resources[{j}]"
            if not isinstance(g, dict):
                raise PolicyError(f"{gw}: must be an object")
            group = g.get("group") or ""
            if not isinstance(group, str) or "/" in group:
                raise PolicyError(f'{gw}.group: Invalid value: "{group}": group name must not contain "/"')
            resources = _strings(g, "resources", gw)
            names = _strings(g, "resourceNames", gw)
            if names and not resources:
                raise PolicyError(f"{gw}.resourceNames: Invalid value: using resourceNames requires at least "
                                  "one resource")
            for res in resources:
                if res.startswith("*/") or res == "*" or res.endswith("/*"):
                    continue
                if res.count("/") > 1 or "*" in res:
                    raise PolicyError(f'{gw}.resources: Invalid value: "{res}"')
            groups.append(GroupResources(group, resources, names))
        namespaces = _strings(r, "namespaces", where)
        urls = _strings(r, "nonResourceURLs", where)
        if urls and (groups or namespaces):
            raise PolicyError(f"{where}.nonResourceURLs: Invalid value: rules cannot apply to both regular "
                              "resources and non-resource URLs")
        for k, url in enumerate(urls):
            if url != "*" and not url.startswith("/"):
                raise PolicyError(f'{where}.nonResourceURLs[{k}]: Invalid value: "{url}": non-resource URL '
                                  'rules must begin with "/" or be "*"')
            if "*" in url[:-1]:
                raise PolicyError(f'{where}.nonResourceURLs[{k}]: Invalid value: "{url}": "*" is only allowed '
                                  "as the last character")
        rules.append(PolicyRule(level=LEVELS.index(level), users=_strings(r, "users", where),
                                user_groups=_strings(r, "userGroups", where), verbs=_strings(r, "verbs", where),
                                resources=tuple(groups), namespaces=namespaces, non_resource_urls=urls,
                                omit_stages=_stages(r, where),
                                omit_managed_fields=_bool(r, "omitManagedFields", where)))
    return Policy(tuple(rules), _stages(doc, "policy"), bool(_bool(doc, "omitManagedFields", "policy")))


def load_policy(path: str | Path) -> Policy:
    """Read --audit-policy-file. A policy without rules is refused, as upstream's reader does."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise PolicyError(f"failed to read file path {str(path)!r}: {e.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"failed decoding file {str(path)!r}: {e}") from None
    policy = parse_policy(doc, str(path))
    if not policy.rules:
        raise PolicyError(f"loaded illegal policy with 0 rules from file {path}")
    return policy


# ---- the log backend ----------------------------------------------------------------------------


class LogBackend:
    """JSON lines appended by a writer thread, so the event loop never waits on the disk. Rotation
    follows lumberjack (what upstream's --audit-log-* flags configure): past `max_size_mb` the file
    is renamed to <name>-<UTC time><ext>; `max_backups` and `max_age_days` prune the old ones
    (0: keep them all). `path` "-" is standard output."""

    def __init__(self, path: str, *, max_size_mb: int = 0, max_backups: int = 0, max_age_days: int = 0):
        self.path = path
        self.max_bytes = (max_size_mb or 100) * 1024 * 1024  # lumberjack's default is 100 MB
        self.max_backups = max_backups
        self.max_age_days = max_age_days
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._file: Any = None
        self._size = 0
        self.dropped = 0
        if path != "-":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._open()  # fail at start-up, not on the first request
        self._thread = threading.Thread(target=self._run, name="audit-log", daemon=True)
        self._thread.start()

    def write(self, line: bytes) -> None:
        self._queue.put(line)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "ab", buffering=1 << 16)
        self._size = os.fstat(fd).st_size

    def _run(self) -> None:
        done = False
        while not done:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines = [b for b in batch if b is not None]
            done = len(lines) != len(batch)
            try:
                self._write(lines)
            except OSError as e:
                self.dropped += len(lines)
                log.error('msg="writing the audit log failed" path=%s err=%r dropped=%d', self.path, e, len(lines))
        if self._file is not None:
            self._file.close()

    def _write(self, lines: list[bytes]) -> None:
        if self.path == "-":
            out = sys.stdout.buffer
            out.write(b"".join(lines))
            out.flush()
            return
        if self._file is None:
            self._open()
        for line in lines:
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            self._file.write(line)
            self._size += len(line)
        self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        base = Path(self.path)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        os.replace(base, base.with_name(f"{base.stem}-{stamp}{base.suffix}"))
        self._open()
        self._prune(base)

    def _prune(self, base: Path) -> None:
        backups = sorted(base.parent.glob(f"{base.stem}-*{base.suffix}"), key=lambda p: p.name, reverse=True)
        doomed = set(backups[self.max_backups:]) if self.max_backups else set()
        if self.max_age_days:
            cutoff = time.time() - self.max_age_days * 86400
            doomed |= {p for p in backups if p.stat().st_mtime < cutoff}
        for p in doomed:
            try:
                p.unlink()
            except OSError:
                pass


# ---- events -------------------------------------------------------------------------------------


def micro_time(t: float) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds, UTC."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def source_ips(request: web.Request) -> list[str]:
    """utilnet.SourceIPs: X-Forwarded-For, then X-Real-Ip, then the peer, without repeats."""
    ips: list[str] = []
    for part in request.headers.get("X-Forwarded-For", "").split(","):
        part = part.strip()
        if part:
            ips.append(part)
    real = request.headers.get("X-Real-Ip", "").strip()
    if real and real not in ips:
        ips.append(real)
    remote = request.remote or ""
    if remote and remote not in ips:
        ips.append(remote)
    return ips


def is_long_running(info: Any) -> bool:
    """upstream's BasicLongRunningRequestCheck with kube-apiserver's verbs and subresources."""
    if info.verb in LONG_RUNNING_VERBS:
        return True
    if info.is_resource_request:
        return info.subresource in LONG_RUNNING_SUBRESOURCES
    return info.path.startswith("/debug/pprof/")


def without_managed_fields(obj: Any) -> Any:
    """A copy of an object, a list or a Table with metadata.managedFields dropped."""
    if not isinstance(obj, dict):
        return obj

    def strip(o: Any) -> Any:
        if isinstance(o, dict) and isinstance(o.get("metadata"), dict) and "managedFields" in o["metadata"]:
            o = dict(o, metadata={k: v for k, v in o["metadata"].items() if k != "managedFields"})
        return o

    out = strip(obj)
    if isinstance(out.get("items"), list):
        out = dict(out, items=[strip(i) for i in out["items"]])
    if out.get("kind") == "Table" and isinstance(out.get("rows"), list):
        out = dict(out, rows=[dict(r, object=strip(r.get("object"))) if isinstance(r, dict) else r
                              for r in out["rows"]])
    return out


@dataclass
class AuditRecord:
    """The event being built for one request (upstream's AuditContext)."""

    audit_id: str
    config: RequestAuditConfig
    received: float
    request_uri: str
    verb: str
    user: dict[str, Any]
    source_ips: list[str]
    user_agent: str
    object_ref: dict[str, str] | None
    long_running: bool
    impersonated_user: dict[str, Any] | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    body_type: str = ""
    proxied: bool = False
    started: bool = False  # ResponseStarted processed
    done: bool = False

    @property
    def level(self) -> int:
        return self.config.level

    def event(self, stage: str, status: dict | None = None, request_object: Any = None,
              response_object: Any = None) -> dict[str, Any]:
        ev: dict[str, Any] = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": LEVELS[self.level],
                              "auditID": self.audit_id, "stage": stage, "requestURI": self.request_uri,
                              "verb": self.verb, "user": self.user}
        if self.impersonated_user is not None:
            ev["impersonatedUser"] = self.impersonated_user
        if self.source_ips:
            ev["sourceIPs"] = self.source_ips
        if self.user_agent:
            ev["userAgent"] = self.user_agent
        if self.object_ref is not None:
            ev["objectRef"] = {k: v for k, v in self.object_ref.items() if v}
        if status is not None:
            ev["responseStatus"] = status
        if request_object is not None:
            ev["requestObject"] = request_object
        if response_object is not None:
            ev["responseObject"] = response_object
        ev["requestReceivedTimestamp"] = micro_time(self.received)
        ev["stageTimestamp"] = micro_time(time.time())
        if self.annotations:
            ev["annotations"] = self.annotations
        return ev


def _object_ref(info: Any) -> dict[str, str] | None:
    if not info.is_resource_request:
        return None
    # objectRef field order: resource, namespace, name, uid, apiGroup, apiVersion, resourceVersion, subresource.
    return {"resource": info.resource, "namespace": info.namespace, "name": info.name, "uid": "",
            "apiGroup": info.api_group, "apiVersion": info.api_version, "resourceVersion": "",
            "subresource": info.subresource}


def _status_of(response: web.StreamResponse) -> dict[str, Any]:
    """responseStatus: the bounded fields of a metav1.Status body, else just the code."""
    status: dict[str, Any] = {"metadata": {}}
    body = getattr(response, "body", None)
    if isinstance(body, bytes) and b'"Status"' in body[:64] and (response.content_type or "").endswith("json"):
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and doc.get("kind") == "Status":
            for key in ("status", "message", "reason", "details"):
                if doc.get(key):
                    status[key] = doc[key]
    status["code"] = response.status
    return status


# ---- the auditor --------------------------------------------------------------------------------


def audit_id(request: web.Request) -> str:
    """upstream's WithAuditInit: the client's Audit-ID if it sent one, else a new UUID."""
    value = request.headers.get("Audit-ID", "")
    if not value:
        value = new_uid()  # pooled random bytes: no system call per request
    request["audit_id"] = value
    return value


class Auditor:
    """Writes the events `policy` asks for to `backend` (anything with write(bytes) and close()).
    `proxied(info)`, when given, tells the requests another server answers (the aggregator's
    proxy): their bodies are not decoded, so they carry no requestObject/responseObject, as
    kube-apiserver's own log for aggregated APIs."""

    def __init__(self, policy: Policy, backend: Any, *, proxied: Callable[[Any], bool] | None = None):
        self.policy = policy
        self.backend = backend
        self.proxied = proxied
        self.events = 0

    # -- chain hooks ------------------------------------------------------------------------------

    def received(self, request: web.Request, user: Any, info: Any) -> None:
        """After authentication: evaluate the policy for the authenticated user and emit RequestReceived."""
        config = self.policy.evaluate(user, info)
        if config.level == NONE:
            return
        self._start(request, config, user, info)

    def _start(self, request: web.Request, config: RequestAuditConfig, user: Any, info: Any) -> AuditRecord:
        ua = request.headers.get("User-Agent", "")
        if len(ua) > MAX_USER_AGENT:
            ua = ua[:MAX_USER_AGENT] + "...TRUNCATED"
        rec = AuditRecord(audit_id=request.get("audit_id") or audit_id(request), config=config,
                          received=request.get("received_at") or time.time(), request_uri=request.raw_path,
                          verb=info.verb, user=user_info(user), source_ips=source_ips(request), user_agent=ua,
                          object_ref=_object_ref(info), long_running=is_long_running(info))
        request[_KEY] = rec
        self._emit(rec, rec.event("RequestReceived"))
        return rec

    async def read_body(self, request: web.Request) -> None:
        """After authorization, before the handler: note whether another server will answer, and
        keep the request body when the event will use it (requestObject at Request level;
        objectRef name/uid/resourceVersion of a create or update)."""
        rec: AuditRecord | None = request.get(_KEY)
        if rec is None or rec.object_ref is None:
            return
        # Decided here, once authorization let the request through to the handlers: errors kplane
        # answers itself (401, 403, ...) are its own Status even for an aggregated group.
        rec.proxied = bool(self.proxied and self.proxied(request["info"]))
        if rec.proxied or not request.body_exists:
            return
        method = request.method
        if not (method in ("POST", "PUT") or (rec.level >= REQUEST and method in ("PATCH", "DELETE"))):
            return
        length = request.content_length
        if length is not None and length > MAX_AUDITED_BODY:
            return  # refused as too large by the handler anyway
        # A chunked body (no Content-Length) is read too: skipping it let a client keep its
        # request out of the log. read() stops at the server's body limit (413).
        raw = await request.read()
        # The handlers read request.content; hand them a fresh stream holding the same bytes.
        stream = StreamReader(request.protocol, 1 << 16, loop=asyncio.get_running_loop())
        stream.feed_data(raw)
        stream.feed_eof()
        request._payload = stream  # noqa: SLF001 - aiohttp has no public way to re-feed a request body
        rec.body = raw
        rec.body_type = request.headers.get("Content-Type", "application/json")

    def response_started(self, request: web.Request, response: web.StreamResponse) -> None:
        """Response headers are about to go out: ResponseStarted, for long-running requests."""
        request["audit_response"] = response
        rec: AuditRecord | None = request.get(_KEY)
        if rec is None or rec.started or rec.done:
            return
        rec.started = True
        if rec.long_running:
            self._emit(rec, rec.event("ResponseStarted", {"metadata": {}, "code": response.status}))

    def finish(self, request: web.Request, response: web.StreamResponse | None,
               exc: BaseException | None = None) -> None:
        """The handler returned (or raised): ResponseComplete, or Panic for an unexpected exception.
        A request that never got past authentication is audited as a failed authentication."""
        rec: AuditRecord | None = request.get(_KEY)
        if rec is None:
            if "authenticated_user" not in request and "info" in request:
                self._failed_authentication(request, response)
            return
        if rec.done:
            return
        rec.done = True
        decision = request.get("authorization")
        if decision is not None:
            rec.annotations.setdefault(DECISION, "allow" if decision[0] == "Allow" else "forbid")
            rec.annotations.setdefault(REASON, decision[1])
        user = request.get("user")
        if user is not None and request.get("authenticated_user") is not user:
            rec.impersonated_user = user_info(user)
        panic = request.get("panic")
        if panic is not None:
            self._emit(rec, rec.event("Panic", {"metadata": {}, "status": "Failure",
                                                "message": f"APIServer panic'd: {panic}",
                                                "reason": "InternalError", "code": 500}))
            return
        if response is None:
            prepared = request.get("audit_response")
            code = getattr(exc, "status", None) or (prepared.status if prepared is not None else 200)
            status: dict[str, Any] = {"metadata": {}, "code": code}
            if prepared is None and not isinstance(exc, web.HTTPException):
                status = {"metadata": {}, "status": "Success", "message": "Connection closed early", "code": 200}
        elif rec.proxied:
            status = {"metadata": {}, "code": response.status}
        else:
            status = _status_of(response)
        if rec.long_running and not rec.started:
            rec.started = True
            self._emit(rec, rec.event("ResponseStarted", {"metadata": {}, "code": status["code"]}))
        request_object = response_object = None
        if rec.body is not None:
            request_object = self._request_object(rec)
        if rec.level >= REQUEST_RESPONSE and response is not None and not rec.proxied:
            response_object = _json_body(response)
            if response_object is not None and rec.config.omit_managed_fields:
                response_object = without_managed_fields(response_object)
        self._emit(rec, rec.event("ResponseComplete", status, request_object, response_object))

    def _request_object(self, rec: AuditRecord) -> Any:
        from kplane.apiserver import negotiation

        try:
            obj = negotiation.decode_body(rec.body or b"", rec.body_type)
        except Exception:  # noqa: BLE001 - a body the handler refused is still audited, just without it
            return None
        if isinstance(obj, dict) and rec.object_ref is not None and not rec.body_type.startswith(
                ("application/merge-patch", "application/json-patch", "application/strategic-merge-patch",
                 "application/apply-patch")):
            meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
            ref = rec.object_ref
            for key, src in (("namespace", "namespace"), ("name", "name"), ("uid", "uid"),
                             ("resourceVersion", "resourceVersion")):
                if not ref.get(key) and isinstance(meta.get(src), str):
                    ref[key] = meta[src]
        if rec.level < REQUEST:
            return None
        if rec.verb in ("delete", "deletecollection") and isinstance(obj, dict) and not obj.get("kind"):
            # Logged as the decoded DeleteOptions, in meta.k8s.io/v1 (upstream's scope.MetaGroupVersion).
            obj = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1",
                   **{k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}}
        if rec.config.omit_managed_fields:
            obj = without_managed_fields(obj)
        return obj

    def _failed_authentication(self, request: web.Request, response: web.StreamResponse | None) -> None:
        """upstream's WithFailedAuthenticationAudit: the policy is evaluated without a user and the
        event (stage ResponseStarted) says which credentials were tried."""
        info = request["info"]
        config = self.policy.evaluate(None, info)
        if config.level == NONE or "ResponseStarted" in config.omit_stages:
            return
        ua = request.headers.get("User-Agent", "")[:MAX_USER_AGENT]
        rec = AuditRecord(audit_id=request.get("audit_id") or audit_id(request), config=config,
                          received=request.get("received_at") or time.time(), request_uri=request.raw_path,
                          verb=info.verb, user={}, source_ips=source_ips(request), user_agent=ua,
                          object_ref=_object_ref(info), long_running=False, started=True, done=True)
        status = {"metadata": {}, "message": _auth_methods(request),
                  "code": response.status if response is not None else 401}
        self._emit(rec, rec.event("ResponseStarted", status))

    def _emit(self, rec: AuditRecord, ev: dict[str, Any]) -> None:
        if ev["stage"] in rec.config.omit_stages:
            return
        self.events += 1
        self.backend.write(orjson.dumps(ev) + b"\n")

    def close(self) -> None:
        self.backend.close()


def _auth_methods(request: web.Request) -> str:
    methods = []
    auth = request.headers.get("Authorization", "").strip()
    if auth[:6].lower() == "basic ":
        methods.append("basic")
    parts = auth.split(" ")
    if len(parts) > 1 and parts[0].lower() == "bearer":
        methods.append("bearer")
    if request.query.get("access_token", "").strip():
        methods.append("access_token")
    transport: Any = request.transport
    if transport is not None and transport.get_extra_info("peercert"):
        methods.append("x509")
    if methods:
        return "Authentication failed, attempted: " + ", ".join(methods)
    return "Authentication failed, no credentials provided"


def _json_body(response: web.StreamResponse) -> Any:
    body = getattr(response, "body", None)
    if not isinstance(body, bytes) or not (response.content_type or "").endswith("json"):
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def new_auditor(policy_file: str, log_path: str, *, max_size_mb: int = 0, max_backups: int = 0,
                max_age_days: int = 0, proxied: Callable[[Any], bool] | None = None) -> Auditor | None:
    """The Auditor the --audit-* flags describe, or None. A log path without a policy file records
    nothing (upstream: "No audit policy file provided, no events will be recorded for log backend");
    a policy file that cannot be used raises PolicyError."""
    policy = load_policy(policy_file) if policy_file else None
    if not log_path:
        return None
    if policy is None:
        log.info('msg="No audit policy file provided, no events will be recorded for log backend"')
        return None
    backend = LogBackend(log_path, max_size_mb=max_size_mb, max_backups=max_backups, max_age_days=max_age_days)
    log.info('msg="audit log enabled" path=%s rules=%d', log_path, len(policy.rules))
    return Auditor(policy, backend, proxied=proxied)
