"""ExtensionServer: an extension API server declared in Python.

It is kplane's own GenericAPIServer with its own SQLite store, delegated
authentication/authorization against kplane, a serving certificate whose CA
goes into the APIService's caBundle, and self-registration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from kplane.apimachinery import errors
from kplane.apimachinery.meta import now_rfc3339
from kplane.apiserver.authn_requestheader import (
    RequestHeaderAuthenticator,
    RequestHeaderConfig,
    config_from_configmap,
    load_pem_certs,
)
from kplane.apiserver.registry import ListOptions, Registry, WriteOptions
from kplane.apiserver.resource import Obj, ResourceDef
from kplane.apiserver.server import GenericAPIServer
from kplane.apiserver.tls_verify import defer_client_cert_verification
from kplane.apiserver.virtual import VirtualRegistry
from kplane.client import ApiError, Client
from kplane.extension.admission import (
    CREATE,
    DELETE,
    UPDATE,
    Admission,
    AdmissionHook,
    awaitable,
    install_admission,
)
from kplane.extension.certs import ServingCerts, certs_from_files, ensure_serving_certs, service_hosts
from kplane.extension.delegated import DelegatingAuthenticator, DelegatingAuthorizer, TokenReviewer
from kplane.extension.register import Registration, register
from kplane.extension.resources import ColumnSpec, Declaration, table_columns
from kplane.extension.schema import as_schema

log = logging.getLogger("kplane.extension")
_NAMESPACE_TRUST_SECONDS = 5.0

AUTH_CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"

VERSION_INFO = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kplane-extension", "gitCommit": "",
                "gitTreeState": "clean", "buildDate": "2026-11-25T00:00:00Z", "goVersion": "python",
                "compiler": "cpython", "platform": "linux/amd64"}


@dataclass
class ResourceHandle:
    """What @resource returns knowledge of: the declaration and, once serving, its registry."""

    app: ExtensionServer
    decl: Declaration
    rdef: ResourceDef
    admission: Admission = field(default_factory=Admission)
    registry: Registry | None = None
    storage: bool = False


@dataclass
class Options:
    kubeconfig: str = ""
    secure_port: int = 8443
    bind_address: str = "127.0.0.1"
    data_dir: Path | None = None
    register: bool = True
    advertise_address: str = ""
    tls_cert_file: str = ""
    tls_private_key_file: str = ""
    tls_ca_file: str = ""
    client_ca_file: str = ""
    requestheader_client_ca_file: str = ""
    requestheader_allowed_names: list[str] | None = None
    etcd_servers: list[str] = field(default_factory=list)  # empty: SQLite in data_dir
    etcd_prefix: str = ""  # default /registry/<group>, as upstream's sample-apiserver
    etcd_cafile: str = ""
    etcd_certfile: str = ""
    etcd_keyfile: str = ""
    authorization_mode: str = "Delegated"  # or AlwaysAllow (benchmarks, trusted set-ups): no SARs
    authorization_allow_ttl: float = 10.0
    authorization_deny_ttl: float = 10.0
    authentication_token_ttl: float = 10.0
    auth_refresh_interval: float = 30.0


class ExtensionServer:
    """An extension API server for one API group.

        app = ExtensionServer(group="shop.example.com", version="v1")

        @resource(app, kind="Order", plural="orders", short_names=["ord"],
                  printer_columns=[("Item", ".spec.item"), ("Qty", ".spec.qty", "integer")])
        class Order:
            item: str
            qty: int = 1

        app.run()
    """

    def __init__(self, group: str, version: str = "v1", *, namespace: str = "", service_name: str = "api",
                 group_priority_minimum: int = 1000, version_priority: int = 15):
        self.group = group
        self.version = version
        self.namespace = namespace or group.split(".")[0]
        self.service_name = service_name
        self.group_priority_minimum = group_priority_minimum
        self.version_priority = version_priority
        self.handles: dict[str, ResourceHandle] = {}  # by kind (and plural): the first declared version
        self.all_handles: list[ResourceHandle] = []  # every (kind, version)
        self._converters: dict[tuple[str, str, str], Callable[[Obj], Obj]] = {}  # (kind, from, to)
        self._storage_versions: dict[str, str] = {}  # kind -> storage version
        self._virtual: list[VirtualRegistry] = []
        self._actions: list[tuple[ResourceHandle, str, Callable[..., Any]]] = []
        self.server: GenericAPIServer | None = None
        self.client: Client | None = None
        self._active_namespaces: dict[str, float] = {}  # namespace -> trusted-until (monotonic)
        self.authorizer: DelegatingAuthorizer | None = None
        self.authenticator: DelegatingAuthenticator | None = None
        self.certs: ServingCerts | None = None
        self.options = Options()
        self._ssl: ssl.SSLContext | None = None
        self._loaded_cas: set[bytes] = set()
        self._tasks: list[asyncio.Task] = []

    # ---- declaring ------------------------------------------------------

    def resource(self, kind: str, plural: str, *, scope: str = "Namespaced", singular: str = "",
                 short_names: Iterable[str] = (), categories: Iterable[str] = (),
                 printer_columns: Iterable[ColumnSpec] = (), schema: dict | None = None, status: Any = None,
                 root_fields: bool = False, version: str = "", storage: bool = False) -> Callable[[Any], Any]:
        """Declare a stored resource. Decorates a class whose annotations are the spec's fields
        (or the object's top-level fields with root_fields=True); `schema` gives a JSON schema instead.

        Declaring the same kind again with another `version=` serves it in that version too, from the
        same storage: `storage=True` marks the version objects are stored in (default: the first
        declared), and `@app.converter` functions convert between each version and the storage one."""
        if scope not in ("Namespaced", "Cluster"):
            raise ValueError(f"scope must be Namespaced or Cluster, not {scope!r}")
        version = version or self.version
        if storage:
            if any(h.rdef.kind == kind and h.storage for h in self.all_handles):
                raise ValueError(f"{kind} has two storage versions")
            self._storage_versions[kind] = version

        def decorate(cls: Any) -> Any:
            body = schema if schema is not None else cls
            decl = Declaration(kind=kind, plural=plural, group=self.group, version=version,
                               namespaced=scope == "Namespaced", singular=singular,
                               short_names=tuple(short_names), categories=tuple(categories),
                               printer_columns=tuple(printer_columns), body=body, root_fields=root_fields,
                               status=status)
            handle = ResourceHandle(self, decl, decl.build(), storage=storage)
            self._add(handle)
            if cls is not None:
                try:
                    cls.__kplane_resource__ = handle
                except (AttributeError, TypeError):
                    pass
            return cls
        return decorate

    def _add(self, handle: ResourceHandle) -> None:
        rdef = handle.rdef
        kind, plural = rdef.kind, rdef.plural
        # OpenAPI publishes a group-version's nested types once by name (Declaration.type_name):
        # two different classes of one name in one version would leave one kind described wrongly.
        for other in self.all_handles:
            if other.rdef.version != rdef.version:
                continue
            for name, schema in rdef.definitions.items():
                if other.rdef.definitions.get(name, schema) != schema:
                    raise TypeError(f"{name.rsplit('.', 1)[-1]} names different types in {kind} and "
                                    f"{other.rdef.kind} ({rdef.version}): rename one of them")
        first = self.handles.get(kind) or self.handles.get(plural)
        if first is not None:
            if (first.rdef.kind, first.rdef.plural, first.rdef.namespaced) != (kind, plural, rdef.namespaced):
                raise ValueError(f"{kind} ({plural}) is declared twice with different names or scopes")
            if any(h.rdef.kind == kind and h.rdef.version == rdef.version for h in self.all_handles):
                raise ValueError(f"{kind} is declared twice in {rdef.version}")
            handle.admission = first.admission  # one set of admission hooks for every version of a kind
            # As a CRD's names, short names and categories belong to the kind, not one version.
            rdef.short_names = rdef.short_names or list(first.rdef.short_names)
            rdef.categories = rdef.categories or list(first.rdef.categories)
        else:
            self.handles[kind] = handle
            self.handles[plural] = handle
            self._storage_versions.setdefault(kind, rdef.version)
        self.all_handles.append(handle)

    def converter(self, ref: Any, from_version: str, to_version: str) -> Callable[[Any], Any]:
        """Register `fn(obj) -> obj` converting an object of `ref`'s kind between two versions.

        It gets a private copy (change it in place or return a new dict); apiVersion is set for
        it. Each served version needs a converter to and from the storage version; a pair without
        one converts by changing apiVersion alone (as a CRD's `None` conversion strategy)."""
        kind = ref if isinstance(ref, str) and ref not in self.handles else self.handle(ref).rdef.kind

        def decorate(fn: Callable[[Obj], Obj]) -> Callable[[Obj], Obj]:
            self._converters[(kind, from_version, to_version)] = fn
            return fn
        return decorate

    def convert(self, obj: Obj, to_version: str, *, kind: str = "", from_version: str = "") -> Obj:
        """A copy of `obj` (an object of one of this server's kinds) in `to_version`."""
        kind = kind or obj.get("kind", "")
        from_version = from_version or (obj.get("apiVersion") or "").rpartition("/")[2]
        out = orjson.loads(orjson.dumps(obj))
        if from_version != to_version:
            fn = self._converters.get((kind, from_version, to_version))
            if fn is not None:
                result = fn(out)
                out = result if isinstance(result, dict) else out
        out["apiVersion"] = f"{self.group}/{to_version}"
        out["kind"] = kind
        return out

    @property
    def versions(self) -> list[str]:
        """Every version this server serves."""
        found = [self.version, *(h.rdef.version for h in self.all_handles),
                 *(v.rdef.version for v in self._virtual)]
        return list(dict.fromkeys(found))

    def _wire_conversion(self, handle: ResourceHandle) -> None:
        rdef = handle.rdef
        storage = self._storage_versions.get(rdef.kind, rdef.version)
        if storage == rdef.version:
            return
        kind, version = rdef.kind, rdef.version
        rdef.to_storage = lambda obj: self.convert(obj, storage, kind=kind, from_version=version)
        rdef.from_storage = lambda obj: self.convert(obj, version, kind=kind, from_version=storage)

    def handle(self, ref: Any) -> ResourceHandle:
        if isinstance(ref, ResourceHandle):
            return ref
        h = getattr(ref, "__kplane_resource__", None)
        if h is None and isinstance(ref, str):
            h = self.handles.get(ref)
        if h is None:
            raise KeyError(f"{ref!r} is not a resource of {self.group}")
        return h

    def admit(self, ref: Any, *, operations: Iterable[str] = (CREATE, UPDATE),
              subresources: Iterable[str] = ("",)) -> Callable[[Any], Any]:
        """Register an admission hook `fn(obj, old, user)` for a resource (see extension.admission)."""
        ops = tuple(o.upper() for o in operations)
        for op in ops:
            if op not in (CREATE, UPDATE, DELETE):
                raise ValueError(f"unknown admission operation {op!r}")

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.handle(ref).admission.hooks.append(AdmissionHook(fn, ops, tuple(subresources)))
            return fn
        return decorate

    def computed(self, kind: str, plural: str, *, scope: str = "Cluster", singular: str = "",
                 short_names: Iterable[str] = (), categories: Iterable[str] = (),
                 printer_columns: Iterable[ColumnSpec] = (), schema: Any = None,
                 get: Callable[..., Any] | None = None, version: str = "") -> Callable[[Any], Any]:
        """Declare a read-only resource computed per request (the metrics.k8s.io pattern).

        Decorates `list_fn(namespace) -> list[dict]` (sync or async); `get(namespace, name)` is optional
        (default: look the name up in the list). Objects need only metadata.name; apiVersion and
        kind are filled in."""
        namespaced = scope == "Namespaced"
        body = as_schema(schema) if schema is not None else None
        rdef = ResourceDef(group=self.group, version=version or self.version, kind=kind, plural=plural,
                           singular=singular or kind.lower(), namespaced=namespaced,
                           short_names=list(short_names), categories=list(categories), verbs=["get", "list"],
                           schema=body or {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                           columns=table_columns(printer_columns))

        def decorate(list_fn: Callable[..., Any]) -> Callable[..., Any]:
            lister = awaitable(list_fn)
            getter = awaitable(get) if get is not None else None

            def finish(obj: Obj, namespace: str) -> Obj:
                obj.setdefault("apiVersion", rdef.api_version)
                obj.setdefault("kind", kind)
                m = obj.setdefault("metadata", {})
                m.setdefault("creationTimestamp", now_rfc3339())  # as metrics-server: computed now
                if namespaced and namespace and not m.get("namespace"):
                    m["namespace"] = namespace
                return obj

            async def list_objects(namespace: str) -> list[Obj]:
                return [finish(dict(o), namespace) for o in await lister(namespace)]

            async def get_object(namespace: str, name: str) -> Obj:
                if getter is not None:
                    obj = await getter(namespace, name)
                else:
                    obj = next((o for o in await lister(namespace)
                                if (o.get("metadata") or {}).get("name") == name), None)
                if obj is None:
                    raise errors.not_found(plural, name, self.group)
                return finish(dict(obj), namespace)

            self._virtual.append(VirtualRegistry(rdef, get_fn=get_object, list_fn=list_objects))
            return list_fn
        return decorate

    def action(self, ref: Any, name: str) -> Callable[[Any], Any]:
        """A custom subresource `<plural>/<name>/<action>` answering POST with a body.

        `fn(obj, body, user)` (sync or async) gets the current object. Returning an object of the
        resource's kind writes it (spec and, with a status subresource, status); returning another
        dict answers it as is; returning None answers the current object."""
        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._actions.append((self.handle(ref), name, fn))
            return fn
        return decorate

    # ---- using the resources from hooks ----------------------------------

    def registry(self, ref: Any) -> Registry:
        reg = self.handle(ref).registry
        if reg is None:
            raise RuntimeError("the server is not serving yet")
        return reg

    async def list(self, ref: Any, namespace: str = "") -> list[Obj]:
        return (await self.registry(ref).list(namespace, ListOptions())).items

    async def get(self, ref: Any, name: str, namespace: str = "") -> Obj | None:
        try:
            return await self.registry(ref).get(namespace, name)
        except errors.StatusError as e:
            if e.code == 404:
                return None
            raise

    # ---- building the server -------------------------------------------

    def build(self, store: Any, authenticator: Any, authorizer: Any) -> GenericAPIServer:
        """The GenericAPIServer serving every declared resource (usable without TLS in tests)."""
        server = GenericAPIServer(store, authenticator=authenticator, authorizer=authorizer,
                                  version_info=VERSION_INFO, anonymous_auth=True)
        server.group_priority[self.group] = self.group_priority_minimum
        for handle in self.all_handles:
            self._wire_conversion(handle)
            handle.registry = install_admission(server.install(handle.rdef), handle.admission)
        for virtual in self._virtual:
            server.install_virtual(virtual)
        self._server_metrics = server.non_resource["/metrics"]  # request metrics, fast lane
        server.non_resource["/metrics"] = self._metrics
        for handle, name, fn in self._actions:
            server.install_virtual(self._action_registry(handle, name, fn))
        try:
            from kplane.apiserver.openapi_routes import install_openapi

            install_openapi(server)
        except ImportError as e:  # the OpenAPI generator is optional for serving
            log.warning("msg=\"OpenAPI not served\" err=%r", e)
        self.server = server
        return server

    async def _metrics(self, request: Any) -> Any:
        """Prometheus text: the delegated authorization and token caches (names as upstream's
        apiserver_delegated_authz_* / authentication token cache metrics, plus the hit counters)."""
        from aiohttp import web

        lines: list[str] = []
        caches = []
        if self.authorizer is not None:
            caches.append(("kplane_extension_authorization", self.authorizer.cache))
            lines += ["# HELP kplane_extension_subjectaccessreviews_total SubjectAccessReviews sent.",
                      "# TYPE kplane_extension_subjectaccessreviews_total counter",
                      f"kplane_extension_subjectaccessreviews_total {self.authorizer.reviews}"]
        if self.authenticator is not None and self.authenticator.tokens is not None:
            caches.append(("kplane_extension_token", self.authenticator.tokens.cache))
        for prefix, cache in caches:
            for what in ("hits", "misses"):
                lines += [f"# TYPE {prefix}_cache_{what}_total counter",
                          f"{prefix}_cache_{what}_total {getattr(cache, what)}"]
        generic = await self._server_metrics(request)
        text = generic.text + "\n".join(lines) + "\n"
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    def _action_registry(self, handle: ResourceHandle, action: str, fn: Callable[...,
                                                                                 Any]) -> VirtualRegistry:
        rdef = handle.rdef
        call = awaitable(fn)
        # The same kind, schema and OpenAPI name as the resource: OpenAPI publishes one definition per
        # name, and an action answers (usually) the resource's kind.
        sub = ResourceDef(group=rdef.group, version=rdef.version, kind=rdef.kind,
                          plural=f"{rdef.plural}/{action}", namespaced=rdef.namespaced, verbs=["create"],
                          schema=rdef.schema, openapi_name=rdef.openapi_name)

        async def create(namespace: str, body: Obj, opts: WriteOptions) -> Obj:
            reg = handle.registry
            assert reg is not None
            current = await reg.get(namespace, opts.name)
            result = await call(current, body, opts.user)
            if result is None:
                return current
            if not isinstance(result, dict) or result.get("kind", rdef.kind) != rdef.kind:
                return result
            result.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
            wopts = WriteOptions(user=opts.user, dry_run=opts.dry_run, field_manager=opts.field_manager)
            written, _ = await reg.update(namespace, opts.name, dict(result), wopts)
            if "status" in rdef.subresources and result.get("status") != written.get("status"):
                status_obj = dict(written, status=result.get("status"))
                sopts = WriteOptions(user=opts.user, dry_run=opts.dry_run, field_manager=opts.field_manager,
                                     subresource="status", name=opts.name)
                written, _ = await reg.update(namespace, opts.name, status_obj, sopts)
            return written

        return VirtualRegistry(sub, create_fn=create)

    # ---- running --------------------------------------------------------

    def parser(self) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(description=f"{self.group} extension API server")
        p.add_argument("--kubeconfig", required=True, help="kubeconfig for kplane (delegation, registration)")
        p.add_argument("--secure-port", type=int, default=8443)
        p.add_argument("--bind-address", default="127.0.0.1", help="listen address (default 127.0.0.1)")
        p.add_argument("--advertise-address", default="",
                       help="address registered in the Endpoints (default: a specific --bind-address, else "
                            "this host's address on the default route, else 127.0.0.1)")
        p.add_argument("--data-dir", default="",
                       help=f"state directory (default ~/.kplane/extensions/{self.group})")
        p.add_argument("--no-register", action="store_true",
                       help="do not create the Service/Endpoints/APIService")
        p.add_argument("--tls-cert-file", default="")
        p.add_argument("--tls-private-key-file", default="")
        p.add_argument("--tls-ca-file", default="", help="CA for the caBundle when --tls-cert-file is given")
        p.add_argument("--client-ca-file", default="")
        p.add_argument("--requestheader-client-ca-file", default="")
        p.add_argument("--requestheader-allowed-names", default=None,
                       help="comma-separated CNs allowed to assert identities (empty: any)")
        p.add_argument("--etcd-servers", default="",
                       help="comma-separated etcd URLs (default: a SQLite store in --data-dir)")
        p.add_argument("--etcd-prefix", default="",
                       help=f"key prefix in etcd (default /registry/{self.group})")
        p.add_argument("--etcd-cafile", default="")
        p.add_argument("--etcd-certfile", default="")
        p.add_argument("--etcd-keyfile", default="")
        p.add_argument("--authorization-mode", choices=["Delegated", "AlwaysAllow"], default="Delegated",
                       help="Delegated: a SubjectAccessReview against kplane per request (cached); "
                            "AlwaysAllow: every authenticated request is allowed")
        p.add_argument("--authorization-webhook-cache-authorized-ttl", type=float, default=10.0)
        p.add_argument("--authorization-webhook-cache-unauthorized-ttl", type=float, default=10.0)
        p.add_argument("--authentication-token-webhook-cache-ttl", type=float, default=10.0)
        p.add_argument("-v", "--v", type=int, default=0)
        return p

    def options_from_args(self, args: argparse.Namespace) -> Options:
        data_dir = Path(args.data_dir).expanduser() if args.data_dir else (
            Path.home() / ".kplane" / "extensions" / self.group)
        allowed = None if args.requestheader_allowed_names is None else [
            n.strip() for n in args.requestheader_allowed_names.split(",") if n.strip()]
        return Options(kubeconfig=args.kubeconfig, secure_port=args.secure_port,
                       bind_address=args.bind_address,
                       data_dir=data_dir, register=not args.no_register,
                       advertise_address=args.advertise_address,
                       tls_cert_file=args.tls_cert_file, tls_private_key_file=args.tls_private_key_file,
                       tls_ca_file=args.tls_ca_file, client_ca_file=args.client_ca_file,
                       requestheader_client_ca_file=args.requestheader_client_ca_file,
                       requestheader_allowed_names=allowed,
                       etcd_servers=[u.strip() for u in args.etcd_servers.split(",") if u.strip()],
                       etcd_prefix=args.etcd_prefix, etcd_cafile=args.etcd_cafile,
                       etcd_certfile=args.etcd_certfile, etcd_keyfile=args.etcd_keyfile,
                       authorization_mode=args.authorization_mode,
                       authorization_allow_ttl=args.authorization_webhook_cache_authorized_ttl,
                       authorization_deny_ttl=args.authorization_webhook_cache_unauthorized_ttl,
                       authentication_token_ttl=args.authentication_token_webhook_cache_ttl)

    def run(self, argv: list[str] | None = None) -> None:
        """Parse the command line, serve until SIGTERM/SIGINT. The APIService stays registered."""
        args = self.parser().parse_args(argv)
        level = logging.DEBUG if args.v >= 4 else logging.INFO if args.v >= 1 else logging.WARNING
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        options = self.options_from_args(args)

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await self.serve(options, stop=stop)

        try:
            import uvloop  # type: ignore[import-not-found]

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(main())

    async def serve(self, options: Options, *, stop: asyncio.Event | None = None,
                    ready: asyncio.Event | None = None) -> None:
        await self.start(options)
        if ready is not None:
            ready.set()
        try:
            await (stop or asyncio.Event()).wait()
        finally:
            await self.stop()

    async def open_store(self, options: Options, data_dir: Path) -> Any:
        """The server's own Store: SQLite in its data dir, or etcd with --etcd-servers."""
        if not options.etcd_servers:
            from kplane.storage.interface import StoreInUseError
            from kplane.storage.sqlite import open_sqlite_store

            try:
                return await open_sqlite_store(str(data_dir / "store.db"))
            except StoreInUseError:
                raise SystemExit(f"{self.group}: {data_dir} is in use by another server (stop it first, "
                                 "or give this one another --data-dir)") from None
        from kplane.storage.etcd import open_etcd_store

        store = await open_etcd_store(options.etcd_servers,
                                      prefix=options.etcd_prefix or f"/registry/{self.group}",
                                      cafile=options.etcd_cafile or None,
                                      certfile=options.etcd_certfile or None,
                                      keyfile=options.etcd_keyfile or None)
        if hasattr(store, "start_compactor"):
            store.start_compactor(300.0)
        return store

    async def _check_namespace(self, namespace: str, rdef: Any, name: str) -> None:
        """NamespaceLifecycle, as upstream's extension servers run it against kube-apiserver: no
        create in a namespace kplane does not have, or that is being deleted. A namespace seen
        active is trusted for a few seconds (as an informer's cache would be)."""
        now = time.monotonic()
        if self._active_namespaces.get(namespace, 0.0) > now or self.client is None:
            return
        try:
            ns = await self.client.get("v1", "namespaces", namespace)
        except ApiError as e:
            if e.code == 404:
                raise errors.not_found("namespaces", namespace) from None
            raise errors.internal(f"checking namespace {namespace}: {e}") from None
        if (ns.get("metadata") or {}).get("deletionTimestamp"):
            raise errors.namespace_terminating(rdef.plural, rdef.group, name, namespace)
        self._active_namespaces[namespace] = now + _NAMESPACE_TRUST_SECONDS

    async def start(self, options: Options) -> None:
        self.options = options
        data_dir = options.data_dir or Path.home() / ".kplane" / "extensions" / self.group
        data_dir.mkdir(parents=True, exist_ok=True)
        self.client = Client.from_kubeconfig(options.kubeconfig, timeout=10.0)
        store = await self.open_store(options, data_dir)
        rh = RequestHeaderAuthenticator(None)
        self.authenticator = DelegatingAuthenticator(
            rh, tokens=TokenReviewer(self.client, cache_ttl=options.authentication_token_ttl))
        self.authorizer = DelegatingAuthorizer(self.client, allow_ttl=options.authorization_allow_ttl,
                                               deny_ttl=options.authorization_deny_ttl,
                                               always_allow=options.authorization_mode == "AlwaysAllow")
        server = self.build(store, self.authenticator, self.authorizer)
        for registry in server.registries.values():
            if registry.rdef.namespaced and hasattr(registry, "namespace_check"):
                registry.namespace_check = self._check_namespace
        advertise = options.advertise_address or advertise_address(options.bind_address)
        server.server_address = f"{advertise}:{options.secure_port}"
        if options.tls_cert_file:
            self.certs = certs_from_files(options.tls_cert_file, options.tls_private_key_file,
                                          options.tls_ca_file)
        else:
            self.certs = ensure_serving_certs(data_dir / "pki", service_hosts(
                self.service_name, self.namespace, [advertise, options.bind_address]))
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ssl.load_cert_chain(self.certs.cert_file, self.certs.key_file)
        self._ssl.set_alpn_protocols(["http/1.1"])
        await self.refresh_authentication()
        await server.start(options.bind_address, options.secure_port, self._ssl)
        log.info("msg=\"serving\" group=%s address=%s:%d", self.group, options.bind_address,
                 options.secure_port)
        self._tasks.append(asyncio.ensure_future(self._refresh_loop()))
        if options.register:
            reg = Registration(group=self.group, versions=self.versions, port=options.secure_port,
                               namespace=self.namespace, service_name=self.service_name, address=advertise,
                               ca_bundle=self.certs.ca_bundle,
                               group_priority_minimum=self.group_priority_minimum,
                               version_priority=self.version_priority)
            try:
                await register(self.client, reg)
            except (ApiError, OSError) as e:
                log.error("msg=\"registration failed\" err=%s", e)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self.server is not None:
            await self.server.stop()
            await self.server.store.close()
        if self.client is not None:
            await self.client.close()

    # ---- authentication configuration -----------------------------------

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.auth_refresh_interval)
            try:
                await self.refresh_authentication()
            except Exception:
                log.exception("msg=\"refreshing authentication configuration failed\"")

    async def refresh_authentication(self) -> None:
        """Read kube-system/extension-apiserver-authentication (flags win) and apply it."""
        o = self.options
        data: dict[str, str] = {}
        if self.client is not None:
            try:
                cm = await self.client.request("GET", AUTH_CONFIGMAP)
                data = (cm or {}).get("data") or {}
            except (ApiError, OSError, TimeoutError) as e:
                log.warning("msg=\"unable to get configmap/extension-apiserver-authentication in "
                            "kube-system\" err=%s", e)
        if o.requestheader_client_ca_file:
            data = dict(data, **{"requestheader-client-ca-file": _read(o.requestheader_client_ca_file)})
            if o.requestheader_allowed_names is None:
                data.pop("requestheader-allowed-names", None)
        if o.requestheader_allowed_names is not None:
            data["requestheader-allowed-names"] = ",".join(o.requestheader_allowed_names)
        if o.client_ca_file:
            data["client-ca-file"] = _read(o.client_ca_file)
        rh_config: RequestHeaderConfig | None = config_from_configmap(data)
        client_ca = data.get("client-ca-file", "")
        assert self.authenticator is not None
        self.authenticator.requestheader.config = rh_config
        self.authenticator.client_ca = load_pem_certs(client_ca) if client_ca else []
        for pem in (client_ca.encode(), data.get("requestheader-client-ca-file", "").encode()):
            if pem.strip() and pem not in self._loaded_cas and self._ssl is not None:
                self._ssl.load_verify_locations(cadata=pem.decode())
                self._loaded_cas.add(pem)
        if self._ssl is not None:
            if not self._loaded_cas:
                self._ssl.verify_mode = ssl.CERT_NONE
            elif not defer_client_cert_verification(self._ssl):
                self._ssl.verify_mode = ssl.CERT_OPTIONAL
            # With the verify callback in place any chain passes the handshake: the authenticator
            # (delegated.py, issued_by) judges the certificate and answers a bad one with 401.


def _read(path: str) -> str:
    """A small local file (a CA bundle), read synchronously: it is a few kilobytes."""
    with open(path) as f:
        return f.read()


def advertise_address(bind_address: str) -> str:
    """What to put in the Endpoints, as upstream picks an advertise address: a specific bind
    address, else the address of the interface on the default route. kplane validates Endpoints
    like upstream (no loopback addresses), so loopback is only the last resort."""
    if bind_address not in ("0.0.0.0", "::", ""):
        return bind_address
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1; a UDP connect sends nothing
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def resource(app: ExtensionServer, kind: str, plural: str, **kw: Any) -> Callable[[Any], Any]:
    """`@resource(app, kind=..., plural=..., ...)`: the decorator form of ExtensionServer.resource."""
    return app.resource(kind, plural, **kw)
