"""kplane's control plane: the generic API server with the built-in
resources, PKI, authentication, the namespace lifecycle and its controllers.
`kplane serve` builds one of these."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kplane.aggregator import Aggregator
from kplane.apiserver.openapi_routes import install_openapi
from kplane.apiserver.server import GenericAPIServer
from kplane.apiserver.tls_verify import defer_client_cert_verification
from kplane.controlplane.audit_setup import install_audit
from kplane.controlplane.auth_setup import install_auth
from kplane.controlplane.crd import install_crds
from kplane.controlplane.defaults import ServiceAccountController, ensure_kubernetes_service
from kplane.controlplane.garbagecollector import GarbageCollector
from kplane.controlplane.leaderelection import LEASE_NAME, AlwaysLeader, LeaderElector, default_identity
from kplane.controlplane.namespaces import NamespaceController, ensure_default_namespaces, install_lifecycle
from kplane.controlplane.nodeports import NodePortAllocator
from kplane.controlplane.pki import PKI, ensure_pki, write_kubeconfig
from kplane.controlplane.serviceip import ClusterIPAllocator
from kplane.controlplane.tokens import TokensController
from kplane.controlplane.types import builtin_resources
from kplane.storage.interface import Store, StoreInUseError

log = logging.getLogger("kplane")

KUBE_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kplane", "gitCommit": "",
                "gitTreeState": "clean", "buildDate": "2026-11-25T00:00:00Z", "goVersion": "python",
                "compiler": "cpython", "platform": "linux/amd64", "emulationMajor": "1", "emulationMinor": "32",
                "minCompatibilityMajor": "1", "minCompatibilityMinor": "31"}


@dataclass
class Options:
    data_dir: Path
    bind_address: str = "127.0.0.1"
    secure_port: int = 6443
    storage: str = "sqlite"
    service_cluster_ip_range: str = "10.96.0.0/12"
    service_node_port_range: str = "30000-32767"
    anonymous_auth: bool = True
    feature_gates: dict[str, bool] = field(default_factory=dict)
    etcd_servers: list[str] = field(default_factory=list)
    etcd_prefix: str = "/registry"
    etcd_cafile: str = ""
    etcd_certfile: str = ""
    etcd_keyfile: str = ""
    etcd_compaction_interval: float = 300.0  # seconds; 0 disables kplane's compactor (either store)
    event_ttl: float = 3600.0  # seconds events are kept after their last write; 0 keeps them
    # Leader election among replicas for the controllers that must run once (etcd only).
    leader_elect: bool = True
    leader_elect_lease_duration: float = 15.0
    leader_elect_renew_deadline: float = 10.0
    leader_elect_retry_period: float = 2.0
    # Authentication and authorization (see controlplane/auth_setup.py).
    token_auth_file: str = ""
    authorization_mode: list[str] = field(default_factory=lambda: ["RBAC"])
    service_account_key_files: list[str] = field(default_factory=list)  # default: pki/sa.pub
    service_account_signing_key_file: str = ""  # default: pki/sa.key
    service_account_issuer: list[str] = field(default_factory=list)  # default: the in-cluster URL
    api_audiences: list[str] = field(default_factory=list)  # default: the first issuer
    # Audit (see controlplane/audit_setup.py); without a policy file nothing is recorded, as upstream.
    audit_policy_file: str = ""
    audit_log_path: str = ""  # "-": standard output
    audit_log_maxsize: int = 0  # megabytes before rotation (0: lumberjack's 100)
    audit_log_maxbackup: int = 0  # rotated files kept (0: all)
    audit_log_maxage: int = 0  # days rotated files are kept (0: no limit)
    extra: dict[str, Any] = field(default_factory=dict)
    # Certificate files replacing the bootstrapped ones (kube-apiserver's flag names).
    pki_overrides: dict[str, str] = field(default_factory=dict)


class ControlPlane:
    def __init__(self, options: Options, store: Store, pki: PKI):
        self.options = options
        self.store = store
        self.pki = pki
        self.server = GenericAPIServer(store, authenticator=None, authorizer=None,  # type: ignore[arg-type]
                                       version_info=KUBE_VERSION, anonymous_auth=options.anonymous_auth)
        self.server.server_address = f"{options.bind_address}:{options.secure_port}"
        if not options.feature_gates.get("KplaneFastLane", True):
            self.server.fast_path = None  # every request through aiohttp (apiserver/fastpath.py)
        etcd_check = getattr(store, "check", None) if options.storage == "etcd" else None
        if etcd_check is not None:
            self.server.health.add("etcd", etcd_check)  # /healthz/etcd and /readyz/etcd, as upstream
            self.server.health.add("etcd-readiness", etcd_check, endpoints=("readyz",))
        else:
            async def sqlite_check() -> None:
                await store.current_revision()  # a round trip through the database thread
            self.server.health.add("sqlite", sqlite_check)
        for rdef in builtin_resources():
            self.server.install(rdef)
        self.auth = install_auth(self.server, options, pki)
        install_lifecycle(self.server)
        services = self.server.registry("", "v1", "services")
        ClusterIPAllocator(store, options.service_cluster_ip_range).install(services)
        NodePortAllocator(store, options.service_node_port_range).install(services)
        self.aggregator = Aggregator(self.server, openapi=install_openapi(self.server),
                                     client_cert=str(pki.front_proxy_client_cert),
                                     client_key=str(pki.front_proxy_client_key), client_ca_pem=pki.ca_cert.read_text(),
                                     requestheader_ca_pem=pki.front_proxy_ca_cert.read_text(),
                                     feature_gates=options.feature_gates)
        self.namespace_controller = NamespaceController(self.server)
        self.namespace_controller.remote_content = self.aggregator.delete_namespace_content
        self.serviceaccount_controller = ServiceAccountController(self.server)
        assert self.auth.token_issuer is not None
        self.tokens_controller = TokensController(self.server, self.auth.token_issuer, pki.ca_cert.read_bytes())
        self.garbage_collector = GarbageCollector(self.server)
        self.crds = install_crds(self)
        self.leader = self._gate_controllers()
        self.audit = install_audit(self.server, options, self.aggregator)
        self.ssl_context = serving_ssl_context(pki)

    async def start(self) -> None:
        await self.server.start(self.options.bind_address, self.options.secure_port, self.ssl_context)
        await ensure_default_namespaces(self.server)
        await ensure_kubernetes_service(self.server, self.options.service_cluster_ip_range,
                                        self.options.bind_address, self.options.secure_port)
        await self.auth.start()
        await self.aggregator.start()
        await self.crds.start()
        await self.leader.start()  # a lone replica leads (and its controllers start) before this returns

    def _gate_controllers(self) -> AlwaysLeader | LeaderElector:
        """The controllers that must run once among replicas: started on the replica that holds the
        kube-system/kplane-controllers Lease, stopped when it loses it. One process on its own SQLite
        needs no election."""
        o = self.options
        if o.storage == "sqlite" or not o.leader_elect:
            leader: AlwaysLeader | LeaderElector = AlwaysLeader()
        else:
            try:
                leader = LeaderElector(self.server.registry("coordination.k8s.io", "v1", "leases"), LEASE_NAME,
                                       identity=default_identity(o.secure_port),
                                       lease_duration=o.leader_elect_lease_duration,
                                       renew_deadline=o.leader_elect_renew_deadline,
                                       retry_period=o.leader_elect_retry_period)
            except ValueError as e:
                raise SystemExit(f"kplane: --leader-elect-*: {e}") from None
        leader.add("namespace-controller", self.namespace_controller.start, self.namespace_controller.stop)
        leader.add("serviceaccount-controller", self.serviceaccount_controller.start,
                   self.serviceaccount_controller.stop)
        leader.add("token-controller", self.tokens_controller.start, self.tokens_controller.stop)
        leader.add("garbage-collector", self.garbage_collector.start, self.garbage_collector.stop)
        leader.add("clusterrole-aggregation-controller", self.auth.aggregation.start, self.auth.aggregation.stop)
        availability = self.aggregator.availability
        leader.add("apiservice-availability-controller", availability.start, availability.stop)
        # Every replica serves every CRD; only the leader writes their status and finalizes them.
        self.crds.controller.may_write = leader.is_leader
        leader.add("crd-controller-writes", self.crds.controller.requeue_all, None)
        return leader

    async def stop(self) -> None:
        await self.leader.stop()  # stops the controllers, then releases the Lease for the next replica
        await self.crds.stop()
        await self.aggregator.stop()
        await self.namespace_controller.stop()
        await self.serviceaccount_controller.stop()
        await self.auth.stop()
        await self.server.stop()
        if self.audit is not None:
            self.audit.close()
        await self.store.close()


def serving_ssl_context(pki: PKI) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(pki.serving_cert, pki.serving_key)
    # Client certificates are optional (tokens and anonymous requests have none);
    # when one is sent it must chain to the client CA.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cafile=str(pki.ca_cert))
    # The front-proxy CA too, for request-header authentication; the authenticators check which
    # CA signed a presented certificate.
    ctx.load_verify_locations(cafile=str(pki.front_proxy_ca_cert))
    ctx.set_alpn_protocols(["http/1.1"])
    # Bad client certificates answer 401 (from the authenticator), as upstream, not a TLS alert.
    defer_client_cert_verification(ctx)
    return ctx


async def open_store(options: Options) -> Store:
    if options.storage == "sqlite":
        from kplane.storage.sqlite import open_sqlite_store

        # Events expire after --event-ttl, as through etcd leases upstream.
        ttls = {"/registry/events/": options.event_ttl} if options.event_ttl > 0 else None
        try:
            sqlite = await open_sqlite_store(str(options.data_dir / "kplane.db"), ttls=ttls)
        except StoreInUseError:
            raise SystemExit(f"kplane: {options.data_dir} is in use by another kplane serve "
                             "(stop it first, or give this one another --data-dir)") from None
        sqlite.start_compactor(options.etcd_compaction_interval)
        sqlite.start_expirer(min(10.0, max(0.5, options.event_ttl / 4)))
        return sqlite
    if options.storage == "etcd":
        try:
            from kplane.storage.etcd import open_etcd_store  # type: ignore[import-not-found]
        except ImportError:
            raise SystemExit("kplane: --storage etcd is not built yet (see README)") from None
        store = await open_etcd_store(options.etcd_servers, prefix=options.etcd_prefix,
                                      cafile=options.etcd_cafile or None, certfile=options.etcd_certfile or None,
                                      keyfile=options.etcd_keyfile or None, event_ttl=int(options.event_ttl))
        store.start_compactor(options.etcd_compaction_interval)
        return store
    raise SystemExit(f"kplane: unknown --storage {options.storage!r} (sqlite or etcd)")


async def build(options: Options) -> ControlPlane:
    options.data_dir.mkdir(parents=True, exist_ok=True)
    pki = ensure_pki(options.data_dir / "pki", hosts=[options.bind_address])
    if options.pki_overrides:
        pki = dataclasses.replace(pki, **{k: Path(v) for k, v in options.pki_overrides.items()})
    store = await open_store(options)
    plane = ControlPlane(options, store, pki)
    kubeconfig = options.data_dir / "admin.kubeconfig"
    host = options.bind_address if ":" not in options.bind_address else f"[{options.bind_address}]"
    write_kubeconfig(kubeconfig, f"https://{host}:{options.secure_port}", pki.ca_cert.read_bytes(),
                     pki.admin_cert.read_bytes(), pki.admin_key.read_bytes())
    return plane


async def serve(options: Options, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    plane = await build(options)
    await plane.start()
    log.info("kplane serving on https://%s:%d", options.bind_address, options.secure_port)
    print(f"kplane is serving on https://{options.bind_address}:{options.secure_port}", flush=True)
    print(f"kubeconfig: {options.data_dir / 'admin.kubeconfig'}", flush=True)
    if ready is not None:
        ready.set()
    stop = stop or asyncio.Event()
    try:
        await stop.wait()
    finally:
        await plane.stop()
