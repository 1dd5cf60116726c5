"""A kopf operator for wardle.example.com, watching flunders and fischers THROUGH kplane.

Each Flunder whose spec references a Fischer (referenceType: Fischer) gets

    status:
      fischer: <the Fischer's name>      # absent while that Fischer does not exist
      disallowed: true|false             # whether the Fischer disallows this Flunder's name

and the status follows the Fischer: creating, changing or deleting it updates every Flunder that
references it. Run it against kplane (the wardle server registered behind it):

    kopf run --standalone --all-namespaces examples/wardle/controller.py     # uses $KUBECONFIG
    python -m examples.wardle.controller --kubeconfig ~/.kplane/admin.kubeconfig

The pattern (docs/extension-guide.md, "Pairing a controller with kopf"): kopf indexes keep an
in-memory view of the related objects (fischers by name, flunders by the fischer they reference);
the Flunder's own handlers write its status with kopf's `patch` (kopf sends it to /status because
discovery says the resource has that subresource); a change of the *other* object (a Fischer) is
fanned out to the objects that depend on it with a plain client call.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

import kopf

GROUP, VERSION = "wardle.example.com", "v1alpha1"


def desired_status(name: str, fischer: list[str] | None, fischer_name: str) -> dict[str, Any]:
    """The Flunder's status given the referenced Fischer's disallowedFlunders (None: no such Fischer).

    Keys with None are removed by the merge patch."""
    if fischer is None:
        return {"fischer": None, "disallowed": None}
    return {"fischer": fischer_name, "disallowed": name in fischer}


def references(spec: dict[str, Any]) -> str:
    """The name of the Fischer a Flunder's spec references, or ""."""
    return spec.get("reference") or "" if spec.get("referenceType") == "Fischer" else ""


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Keep kopf's bookkeeping in annotations: Flunder's status schema has only its own fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own kubeconfig reader ($KUBECONFIG, read when kopf logs in)."""
    return kopf.login_with_kubeconfig(**kwargs)


# ---- indexes: what the handlers need to know about the other kind ----------------------------


@kopf.index(GROUP, VERSION, "fischers")
def fischers(name: str, body: kopf.Body, **_: Any) -> dict[str, list[str]]:
    return {name: list(body.get("disallowedFlunders") or [])}


@kopf.index(GROUP, VERSION, "flunders")
def flunders_by_fischer(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[str, tuple[str,
                                                                                                 str]] | None:
    ref = references(dict(spec))
    return {ref: (namespace, name)} if ref else None


# ---- a Flunder's own changes: kopf writes the status --------------------------------------------


@kopf.on.resume(GROUP, VERSION, "flunders")
@kopf.on.create(GROUP, VERSION, "flunders")
@kopf.on.update(GROUP, VERSION, "flunders", field="spec")
def reconcile_flunder(name: str, spec: kopf.Spec, status: kopf.Status, patch: kopf.Patch,
                      fischers: kopf.Index, **_: Any) -> None:
    ref = references(dict(spec))
    if not ref:
        want: dict[str, Any] = {"fischer": None, "disallowed": None}
    else:
        found = next(iter(fischers.get(ref, [])), None)
        want = desired_status(name, found, ref)
    for key, value in want.items():
        if status.get(key) != value:
            patch.status[key] = value


# ---- a Fischer's changes: fan out to the Flunders that reference it ------------------------------


@kopf.on.event(GROUP, VERSION, "fischers")
def fischer_changed(type: str | None, name: str, body: kopf.Body, flunders_by_fischer: kopf.Index,
                    logger: kopf.Logger, **_: Any) -> None:
    disallowed = None if type == "DELETED" else list(body.get("disallowedFlunders") or [])
    for namespace, flunder in list(flunders_by_fischer.get(name, [])):
        want = desired_status(flunder, disallowed, name)
        try:
            _custom_objects().patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, "flunders", flunder, {"status": want})
        except Exception as e:  # the Flunder may be gone; its own handlers will catch up
            if getattr(e, "status", None) != 404:
                raise
        logger.info(f"flunder {namespace}/{flunder} status={want}")


_api: Any = None


def _custom_objects() -> Any:
    """The kubernetes client's CustomObjectsApi, from the same kubeconfig kopf uses."""
    global _api
    if _api is None:
        import kubernetes

        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
        _api = kubernetes.client.CustomObjectsApi()
    return _api


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="wardle.example.com controller (kopf)")
    p.add_argument("--kubeconfig", default="", help="kubeconfig for kplane (default: $KUBECONFIG)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kopf.run(standalone=True, clusterwide=True)


if __name__ == "__main__":
    main()
