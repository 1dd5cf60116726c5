"""Registering an extension API server with kplane, idempotently:

- the Namespace, a Service without a selector whose port is the listening
  port, and Endpoints pointing at the listening address (kplane routes to
  endpoints, as --enable-aggregator-routing does upstream);
- one APIService v<version>.<group> per version, with caBundle (or
  insecureSkipTLSVerify) and the group/version priorities;
- the grants an extension server needs for its own identity: a
  ClusterRoleBinding to system:auth-delegator (TokenReview,
  SubjectAccessReview), a RoleBinding in kube-system to
  extension-apiserver-authentication-reader, and reading namespaces
  (NamespaceLifecycle) through a ClusterRole of its own.

Running it again (a restart) updates caBundle, ports and addresses in place.
`register_url` / `run_register` are the `kplane register` command for servers
not written with the SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ipaddress
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from kplane.client import ApiError, Client

log = logging.getLogger("kplane.extension.register")

Obj = dict[str, Any]
RBAC = "rbac.authorization.k8s.io/v1"


@dataclass
class Registration:
    group: str
    versions: list[str]
    port: int
    namespace: str = ""
    service_name: str = "api"
    address: str = "127.0.0.1"
    ca_bundle: bytes | None = None
    insecure_skip_tls_verify: bool = False
    group_priority_minimum: int = 1000
    version_priority: int = 15
    # Subjects granted system:auth-delegator and the authentication reader role;
    # default: the identity of the kubeconfig's credentials.
    subjects: list[Obj] = field(default_factory=list)
    grant_rbac: bool = True

    def __post_init__(self) -> None:
        if not self.namespace:
            self.namespace = default_namespace(self.group)

    @property
    def name(self) -> str:
        return self.namespace


def default_namespace(group: str) -> str:
    return group.split(".")[0]


def namespace_object(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service_object(reg: Registration) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": reg.service_name, "namespace": reg.namespace},
            "spec": {"type": "ClusterIP",
                     "ports": [{"name": "https", "protocol": "TCP", "port": reg.port,
                                "targetPort": reg.port}]}}


def endpoints_object(reg: Registration) -> Obj:
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": reg.service_name, "namespace": reg.namespace},
            "subsets": [{"addresses": [{"ip": reg.address}],
                         "ports": [{"name": "https", "port": reg.port, "protocol": "TCP"}]}]}


def apiservice_object(reg: Registration, version: str) -> Obj:
    spec: Obj = {"group": reg.group, "version": version,
                 "service": {"namespace": reg.namespace, "name": reg.service_name, "port": reg.port},
                 "groupPriorityMinimum": reg.group_priority_minimum, "versionPriority": reg.version_priority}
    if reg.insecure_skip_tls_verify:
        spec["insecureSkipTLSVerify"] = True
    elif reg.ca_bundle:
        spec["caBundle"] = base64.b64encode(reg.ca_bundle).decode()
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": f"{version}.{reg.group}"}, "spec": spec}


def subject_for(username: str) -> Obj:
    """An RBAC subject for a username (service accounts as ServiceAccount subjects)."""
    parts = username.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        return {"kind": "ServiceAccount", "name": parts[3], "namespace": parts[2]}
    return {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": username}


def rbac_objects(reg: Registration) -> list[tuple[str, Obj]]:
    reader = f"{reg.name}:namespace-reader"
    return [
        # NamespaceLifecycle reads namespaces (upstream's sample-apiserver grants the same).
        ("clusterroles", {
            "apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": reader},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}]}),
        ("clusterrolebindings", {
            "apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": reader},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": reader},
            "subjects": reg.subjects}),
        ("clusterrolebindings", {
            "apiVersion": RBAC, "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{reg.name}:system:auth-delegator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:auth-delegator"},
            "subjects": reg.subjects}),
        ("rolebindings", {
            "apiVersion": RBAC, "kind": "RoleBinding",
            "metadata": {"name": f"{reg.name}-auth-reader", "namespace": "kube-system"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "extension-apiserver-authentication-reader"},
            "subjects": reg.subjects}),
    ]


async def whoami(client: Client) -> str:
    """The username kplane sees for the client's credentials: SelfSubjectReview, else the cert CN."""
    try:
        review = await client.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                      {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        name = ((review or {}).get("status") or {}).get("userInfo", {}).get("username")
        if name:
            return name
    except ApiError:
        pass
    if client.config.cert_pem:
        cert = x509.load_pem_x509_certificate(client.config.cert_pem)
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if cns:
            return str(cns[0].value)
    return ""


async def _ensure(client: Client, plural: str, obj: Obj, *, optional: bool = False) -> Obj | None:
    try:
        return await client.ensure(plural, obj)
    except ApiError as e:
        if optional and e.code in (404, 405):
            log.warning("msg=\"not registered: kplane does not serve %s\" name=%s", plural,
                        obj["metadata"]["name"])
            return None
        raise


async def register(client: Client, reg: Registration) -> list[Obj]:
    """Create or update everything `reg` describes; returns the APIServices."""
    await _ensure(client, "namespaces", namespace_object(reg.namespace))
    await _ensure(client, "services", service_object(reg))
    try:
        await _ensure(client, "endpoints", endpoints_object(reg))
    except ApiError as e:
        # Upstream validation refuses loopback endpoint addresses; the APIService is still
        # registered (it reports MissingEndpoints) and --advertise-address can name a routable IP.
        if e.code != 422:
            raise
        log.error("msg=\"Endpoints not registered\" address=%s err=%s", reg.address, e)
    if reg.grant_rbac:
        if not reg.subjects:
            user = await whoami(client)
            reg.subjects = [subject_for(user)] if user else []
        if reg.subjects:
            for plural, obj in rbac_objects(reg):
                await _ensure(client, plural, obj, optional=True)
    out = []
    for version in reg.versions:
        obj = apiservice_object(reg, version)
        current = await client.get_or_none("apiregistration.k8s.io/v1", "apiservices",
                                           obj["metadata"]["name"])
        if current is not None and reg.insecure_skip_tls_verify:
            current.get("spec", {}).pop("caBundle", None)
        if current is not None and not reg.insecure_skip_tls_verify:
            current.get("spec", {}).pop("insecureSkipTLSVerify", None)
        if current is not None:
            current["spec"] = {**current.get("spec", {}), **obj["spec"]}
            obj = current
        result = await _ensure(client, "apiservices", obj)
        if result is not None:
            out.append(result)
    return out


# ---- `kplane register` ----------------------------------------------------


def _address_of(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]


async def register_url(kubeconfig: str, group: str, version: str, url: str, *, ca_file: str = "",
                       insecure_skip_tls_verify: bool = False, namespace: str = "", service_name: str = "api",
                       group_priority_minimum: int = 1000, version_priority: int = 15,
                       grant_rbac: bool = False) -> list[Obj]:
    """Register a server listening at `url` (https://HOST:PORT) for group/version."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"--url must be https://HOST:PORT, got {url!r}")
    if bool(ca_file) == bool(insecure_skip_tls_verify):
        raise ValueError("exactly one of --ca-file and --insecure-skip-tls-verify is required")
    reg = Registration(group=group, versions=[version], port=parts.port or 443, namespace=namespace,
                       service_name=service_name, address=_address_of(parts.hostname),
                       ca_bundle=_read_bytes(ca_file) if ca_file else None,
                       insecure_skip_tls_verify=insecure_skip_tls_verify,
                       group_priority_minimum=group_priority_minimum, version_priority=version_priority,
                       grant_rbac=grant_rbac)
    async with Client.from_kubeconfig(kubeconfig) as client:
        return await register(client, reg)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _default_kubeconfig() -> str:
    """As kubectl finds its kubeconfig: $KUBECONFIG (its first file), else kplane's admin one."""
    first = next((p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p), "")
    return first or str(Path.home() / ".kplane" / "admin.kubeconfig")


def add_register_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`kplane register ...`; the caller dispatches to run_register(args)."""
    p = sub.add_parser("register", help="register an extension API server (Service, Endpoints, APIService)")
    p.add_argument("--kubeconfig", default=_default_kubeconfig(),
                   help="default: the first file in $KUBECONFIG, else ~/.kplane/admin.kubeconfig")
    p.add_argument("--group", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--url", required=True, help="https://HOST:PORT where the server listens")
    tls = p.add_mutually_exclusive_group(required=True)
    tls.add_argument("--ca-file", default="", help="CA bundle that signed the server's serving certificate")
    tls.add_argument("--insecure-skip-tls-verify", action="store_true")
    p.add_argument("--namespace", default="",
                   help="namespace of the Service (default: first label of the group)")
    p.add_argument("--service-name", default="api")
    p.add_argument("--group-priority-minimum", type=int, default=1000)
    p.add_argument("--version-priority", type=int, default=15)
    return p


def run_register(args: argparse.Namespace) -> int:
    try:
        services = asyncio.run(register_url(
            args.kubeconfig, args.group, args.version, args.url, ca_file=args.ca_file,
            insecure_skip_tls_verify=args.insecure_skip_tls_verify, namespace=args.namespace,
            service_name=args.service_name, group_priority_minimum=args.group_priority_minimum,
            version_priority=args.version_priority))
    except (ApiError, ValueError, OSError) as e:
        print(f"error: {e}")
        return 1
    for svc in services:
        print(f"apiservice/{svc['metadata']['name']} registered")
    return 0
