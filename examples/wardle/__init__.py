"""wardle.example.com/v1alpha1 — upstream's sample-apiserver, written with kplane.extension.

    python -m examples.wardle --kubeconfig ~/.kplane/admin.kubeconfig --secure-port 8443

Flunder (namespaced; spec.reference, spec.referenceType Flunder|Fischer) and Fischer
(cluster-scoped; disallowedFlunders). The BanFlunder admission rule rejects, with 403 as
upstream's plugin does, creating a Flunder whose name any Fischer disallows.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from kplane.extension import CREATE, UPDATE, ExtensionServer, Field, Forbidden, Invalid, resource

log = logging.getLogger("wardle")

app = ExtensionServer(group="wardle.example.com", version="v1alpha1", namespace="wardle", service_name="api")


class FlunderStatus:
    """FlunderStatus is the status of a Flunder (set by a controller)."""

    fischer: str | None = None  # the referenced Fischer, when it exists
    disallowed: bool | None = None


@resource(app, kind="Flunder", plural="flunders", scope="Namespaced", status=FlunderStatus,
          printer_columns=[("Reference", ".spec.reference"), ("Reference-Type", ".spec.referenceType")])
class Flunder:
    """FlunderSpec is the specification of a Flunder."""

    reference: Annotated[str, Field(description="A name of another flunder or fischer, depending on the "
                                                "reference type.")] = ""
    referenceType: Annotated[Literal["Flunder", "Fischer"] | None, Field(
        description='The reference type, defaults to "Flunder" if reference is set.')] = None


@resource(app, kind="Fischer", plural="fischers", scope="Cluster", root_fields=True,
          printer_columns=[("Disallowed-Flunders", ".disallowedFlunders")])
class Fischer:
    disallowedFlunders: Annotated[list[str] | None, Field(
        description="DisallowedFlunders holds a list of Flunder.Names that are disallowed.")] = None


@app.admit(Flunder, operations=[CREATE, UPDATE])
def default_and_validate(flunder, old, user):
    """v1alpha1 defaulting (referenceType defaults to Flunder when reference is set) and validation."""
    spec = flunder.setdefault("spec", {})
    if spec.get("reference") and not spec.get("referenceType"):
        spec["referenceType"] = "Flunder"
    if spec.get("referenceType") and not spec.get("reference"):
        raise Invalid("spec.reference", f"cannot be empty if referenceType is {spec['referenceType']}", "")
    # Who asked, as this server authenticated it (the front proxy's X-Remote-User/Group): one line per write.
    log.info('msg="admitting flunder" name=%s user=%s groups=%s', flunder["metadata"].get("name", ""),
             getattr(user, "name", ""), ",".join(getattr(user, "groups", ()) or ()))


@app.admit(Flunder, operations=[CREATE])
async def ban_flunder(flunder, old, user):
    """upstream's BanFlunder plugin: 403 for a name any Fischer disallows."""
    name = flunder["metadata"]["name"]
    for fischer in await app.list(Fischer):
        if name in (fischer.get("disallowedFlunders") or []):
            raise Forbidden("this name may not be used, please change the resource name")
