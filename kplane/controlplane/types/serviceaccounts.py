"""core/v1 ServiceAccount."""

from __future__ import annotations

from kplane.apimachinery.typeschema import array, boolean, kind_schema
from kplane.apiserver.resource import Column, Obj, ResourceDef
from kplane.controlplane.types.common import LOCAL_OBJECT_REFERENCE, OBJECT_REFERENCE
from kplane.controlplane.types.printing import age_column, name_column

SERVICE_ACCOUNT = kind_schema(
    "ServiceAccount binds together: * a name, understood by users, and perhaps by peripheral "
    "systems, for an identity * a principal that can be authenticated and authorized * a set of "
    "secrets", {
    'automountServiceAccountToken': boolean(
        "AutomountServiceAccountToken indicates whether pods running as this service account should "
        "have an API token automatically mounted. Can be overridden at the pod level."),
    'imagePullSecrets': array(LOCAL_OBJECT_REFERENCE,
        "ImagePullSecrets is a list of references to secrets in the same namespace to use for pulling "
        "any images in pods that reference this ServiceAccount. ImagePullSecrets are distinct from "
        "Secrets because Secrets can be mounted in the pod, but ImagePullSecrets are only accessed by "
        "the kubelet.", list_type="atomic"),
    'secrets': array(OBJECT_REFERENCE,
        'Secrets is a list of the secrets in the same namespace that pods running using this '
        'ServiceAccount are allowed to use. Pods are only limited to this list if this service '
        'account has a "kubernetes.io/enforce-mountable-secrets" annotation set to "true".',
        merge_key="name", strategy="merge", list_type="map", map_keys=['name']),
})

SECRETS_DOC = (
    "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount "
    "are allowed to use. Pods are only limited to this list if this service account has a "
    "\"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\".")


def _secret_count(obj: Obj) -> int:
    return len(obj.get("secrets") or [])


def resources() -> list[ResourceDef]:
    return [ResourceDef(
        group="", version="v1", kind="ServiceAccount", plural="serviceaccounts", short_names=["sa"],
        schema=SERVICE_ACCOUNT, openapi_name="io.k8s.api.core.v1.ServiceAccount",
        columns=[name_column(), Column("Secrets", "string", _secret_count, description=SECRETS_DOC),
                 age_column()],
    )]
