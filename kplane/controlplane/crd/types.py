"""apiextensions.k8s.io/v1 CustomResourceDefinition: schema, defaulting and
validation as apiextensions-apiserver's strategy does them."""

from __future__ import annotations

from typing import Any

from kplane.apimachinery.errors import Cause, field_forbidden, field_invalid, field_not_supported, field_required
from kplane.apimachinery.structural import validate_structural
from kplane.apimachinery.typeschema import array, boolean, described, integer, kind_schema, obj, string
from kplane.apimachinery.validation import is_dns1035_label, is_dns1123_subdomain
from kplane.apiserver.resource import Column, Obj, ResourceDef
from kplane.controlplane.crd import cel as celrules
from kplane.controlplane.types.common import CONDITION
from kplane.controlplane.types.printing import name_column

GROUP = "apiextensions.k8s.io"
VERSION = "v1"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
APPROVAL_ANNOTATION = "api-approved.kubernetes.io"
PRINTER_COLUMN_TYPES = ["boolean", "date", "integer", "number", "string"]
PRINTER_COLUMN_FORMATS = ["int32", "int64", "float", "double", "byte", "date", "date-time", "password"]

_PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_V1 = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1."  # upstream's OpenAPI definition names

_NAMES = obj("CustomResourceDefinitionNames indicates the names to serve this CustomResourceDefinition", {
    "categories": array(string(), "categories is a list of grouped resources this custom resource belongs "
                                  "to (e.g. 'all'). This is published in API discovery documents, and used "
                                  "by clients to support invocations like `kubectl get all`.",
                        list_type="atomic"),
    "kind": string("kind is the serialized kind of the resource. It is normally CamelCase and singular. "
                   "Custom resource instances will use this value as the `kind` attribute in API calls."),
    "listKind": string("listKind is the serialized kind of the list for this resource. Defaults to "
                       "\"`kind`List\"."),
    "plural": string("plural is the plural name of the resource to serve. The custom resources are served "
                     "under `/apis/<group>/<version>/.../<plural>`. Must match the name of the "
                     "CustomResourceDefinition (in the form `<names.plural>.<group>`). Must be all lowercase."),
    "shortNames": array(string(), "shortNames are short names for the resource, exposed in API discovery "
                                  "documents, and used by clients to support invocations like `kubectl get "
                                  "<shortname>`. It must be all lowercase.", list_type="atomic"),
    "singular": string("singular is the singular name of the resource. It must be all lowercase. Defaults "
                       "to lowercased `kind`."),
}, required=["plural", "kind"], name=_V1 + "CustomResourceDefinitionNames")

_WEBHOOK_CLIENT_CONFIG = obj("WebhookClientConfig contains the information to make a TLS connection with "
                             "the webhook.", {
    "caBundle": string("caBundle is a PEM encoded CA bundle which will be used to validate the webhook's "
                       "server certificate. If unspecified, system trust roots on the apiserver are used."),
    "service": described(obj("ServiceReference holds a reference to Service.legacy.k8s.io", {
        "name": string("name is the name of the service. Required"),
        "namespace": string("namespace is the namespace of the service. Required"),
        "path": string("path is an optional URL path at which the webhook will be contacted."),
        "port": integer("port is an optional service port at which the webhook will be contacted. Defaults "
                        "to 443 for backward compatibility."),
    }, required=["namespace", "name"], name=_V1 + "ServiceReference"),
        "service is a reference to the service for this webhook."),
    "url": string("url gives the location of the webhook, in standard URL form "
                  "(`scheme://host:port/path`). Exactly one of `url` or `service` must be specified."),
}, name=_V1 + "WebhookClientConfig")
_WEBHOOK_CLIENT_CONFIG["properties"]["caBundle"]["format"] = "byte"

_COLUMN = obj("CustomResourceColumnDefinition specifies a column for server side printing.", {
    "description": string("description is a human readable description of this column."),
    "format": string("format is an optional OpenAPI type definition for this column."),
    "jsonPath": string("jsonPath is a simple JSON path (i.e. with array notation) which is evaluated against "
                       "each custom resource to produce the value for this column."),
    "name": string("name is a human readable name for the column."),
    "priority": integer("priority is an integer defining the relative importance of this column compared to "
                        "others. Lower numbers are considered higher priority."),
    "type": string("type is an OpenAPI type definition for this column."),
}, required=["name", "type", "jsonPath"], name=_V1 + "CustomResourceColumnDefinition")

_VERSION = obj("CustomResourceDefinitionVersion describes a version for CRD.", {
    "additionalPrinterColumns": array(_COLUMN, "additionalPrinterColumns specifies additional columns "
                                               "returned in Table output.", list_type="atomic"),
    "deprecated": boolean("deprecated indicates this version of the custom resource API is deprecated."),
    "deprecationWarning": string("deprecationWarning overrides the default warning returned to API clients."),
    "name": string("name is the version name, e.g. “v1”, “v2beta1”, etc."),
    "schema": described(obj("CustomResourceValidation is a list of validation methods for CustomResources.", {
        "openAPIV3Schema": dict(_PRESERVE, description="openAPIV3Schema is the OpenAPI v3 schema to use for "
                                                       "validation and pruning."),
    }, name=_V1 + "CustomResourceValidation"), "schema describes the schema used for validation, pruning, and "
                                               "defaulting of this version of the custom resource."),
    "selectableFields": array(obj("SelectableField specifies the JSON path of a field that may be used with "
                                  "field selectors.", {"jsonPath": string("jsonPath is a simple JSON path")},
                                  required=["jsonPath"], name=_V1 + "SelectableField"),
                              "selectableFields specifies paths to fields that may be used as field selectors.",
                              list_type="atomic"),
    "served": boolean("served is a flag enabling/disabling this version from being served via REST APIs"),
    "storage": boolean("storage indicates this version should be used when persisting custom resources to "
                       "storage. There must be exactly one version with storage=true."),
    "subresources": described(obj(
        "CustomResourceSubresources defines the status and scale subresources for CustomResources.", {
        "scale": described(obj(
            "CustomResourceSubresourceScale defines how to serve the scale subresource for CustomResources.", {
            "labelSelectorPath": string("labelSelectorPath defines the JSON path inside of a custom resource "
                                        "that corresponds to Scale `status.selector`."),
            "specReplicasPath": string("specReplicasPath defines the JSON path inside of a custom resource "
                                       "that corresponds to Scale `spec.replicas`."),
            "statusReplicasPath": string("statusReplicasPath defines the JSON path inside of a custom "
                                         "resource that corresponds to Scale `status.replicas`."),
        }, required=["specReplicasPath", "statusReplicasPath"], name=_V1 + "CustomResourceSubresourceScale"),
            "scale indicates the custom resource should serve a `/scale` subresource that returns an "
            "`autoscaling/v1` Scale object."),
        "status": dict(_PRESERVE, description="status indicates the custom resource should serve a `/status` "
                                              "subresource."),
    }, name=_V1 + "CustomResourceSubresources"),
        "subresources specify what subresources this version of the defined custom resource have."),
}, required=["name", "served", "storage"], name=_V1 + "CustomResourceDefinitionVersion")

CRD_SCHEMA = kind_schema(
    "CustomResourceDefinition represents a resource that should be exposed on the API server.  Its name "
    "MUST be in the format <.spec.name>.<.spec.group>.", {
        "spec": described(obj("CustomResourceDefinitionSpec describes how a user wants their resource to appear", {
            "conversion": described(obj(
                "CustomResourceConversion describes how to convert different versions of a CR.", {
                "strategy": string("strategy specifies how custom resources are converted between versions. "
                                   "Allowed values are: - `\"None\"`: The converter only change the "
                                   "apiVersion and would not touch any other field in the custom resource. "
                                   "- `\"Webhook\"`: API Server will call to an external webhook to do the "
                                   "conversion."),
                "webhook": described(obj("WebhookConversion describes how to call a conversion webhook", {
                    "clientConfig": described(_WEBHOOK_CLIENT_CONFIG, "clientConfig is the instructions for how "
                                              "to call the webhook if strategy is `Webhook`."),
                    "conversionReviewVersions": array(string(), "conversionReviewVersions is an ordered list "
                                                                "of preferred `ConversionReview` versions the "
                                                                "Webhook expects.", list_type="atomic"),
                }, required=["conversionReviewVersions"], name=_V1 + "WebhookConversion"),
                    "webhook describes how to call the conversion webhook. Required when `strategy` is set "
                    "to `\"Webhook\"`."),
            }, required=["strategy"], name=_V1 + "CustomResourceConversion"),
                "conversion defines conversion settings for the CRD."),
            "group": string("group is the API group of the defined custom resource."),
            "names": described(_NAMES, "names specify the resource and kind names for the custom resource."),
            "preserveUnknownFields": boolean("preserveUnknownFields indicates that object fields which are not "
                                             "specified in the OpenAPI schema should be preserved when "
                                             "persisting to storage."),
            "scope": string("scope indicates whether the defined custom resource is cluster- or "
                            "namespace-scoped. Allowed values are `Cluster` and `Namespaced`."),
            "versions": array(_VERSION, "versions is the list of all API versions of the defined custom "
                                        "resource.", list_type="atomic"),
        }, required=["group", "names", "scope", "versions"], name=_V1 + "CustomResourceDefinitionSpec"),
            "spec describes how the user wants the resources to appear"),
        "status": described(obj(
            "CustomResourceDefinitionStatus indicates the state of the CustomResourceDefinition", {
            "acceptedNames": dict(_NAMES, description="acceptedNames are the names that are actually being used "
                                                      "to serve discovery."),
            "conditions": array(CONDITION, "conditions indicate state for particular aspects of a "
                                           "CustomResourceDefinition", list_type="map", map_keys=["type"]),
            "storedVersions": array(string(), "storedVersions lists all versions of CustomResources that were "
                                              "ever persisted.", list_type="atomic"),
        }, name=_V1 + "CustomResourceDefinitionStatus"),
            "status indicates the actual state of the CustomResourceDefinition"),
    }, required=["spec"])


# ---- defaulting ----------------------------------------------------------------------------------


def set_defaults(crd: Obj) -> None:
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    if not spec.get("conversion"):
        spec["conversion"] = {"strategy": "None"}
    # A printer column's priority is not defaulted (omitempty upstream: a stored 0 would make
    # every `kubectl apply` of an unchanged CRD a change).


def _stored_versions(crd: Obj, previous: list[str]) -> list[str]:
    stored = list(previous)
    for v in (crd.get("spec") or {}).get("versions") or []:
        if isinstance(v, dict) and v.get("storage") and v.get("name") not in stored:
            stored.append(v.get("name"))
    return stored


def prepare_create(crd: Obj) -> None:
    set_defaults(crd)
    crd["status"] = {"acceptedNames": {"kind": "", "plural": ""}, "storedVersions": _stored_versions(crd, [])}


def prepare_update(new: Obj, old: Obj) -> None:
    set_defaults(new)
    status = dict(old.get("status") or {})
    status["storedVersions"] = _stored_versions(new, list(status.get("storedVersions") or []))
    new["status"] = status


# ---- validation ------------------------------------------------------------------------------------


def _dns1035(value: Any, path: str, prefix: str = "") -> list[Cause]:
    errs = is_dns1035_label(value if isinstance(value, str) else "")
    return [field_invalid(path, value, prefix + ",".join(errs))] if errs else []


def _is_protected(group: str) -> bool:
    return group in ("k8s.io", "kubernetes.io") or group.endswith((".k8s.io", ".kubernetes.io"))


def validate(crd: Obj) -> list[Cause]:
    causes: list[Cause] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    name = (crd.get("metadata") or {}).get("name", "")
    if name and name != f"{names.get('plural', '')}.{group}":
        causes.append(field_invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if _is_protected(group):
        annotations = (crd.get("metadata") or {}).get("annotations") or {}
        if APPROVAL_ANNOTATION not in annotations:
            causes.append(field_required(f"metadata.annotations[{APPROVAL_ANNOTATION}]",
                                         f'Required value: protected groups must have approval annotation '
                                         f'"{APPROVAL_ANNOTATION}", see '
                                         f'https://github.com/kubernetes/enhancements/pull/1111'))
    if not group:
        causes.append(field_required("spec.group"))
    elif is_dns1123_subdomain(group):
        causes.append(field_invalid("spec.group", group, ",".join(is_dns1123_subdomain(group))))
    elif len(group.split(".")) < 2:
        causes.append(field_invalid("spec.group", group, "should be a domain with at least one dot"))
    scope = spec.get("scope")
    if not scope:
        causes.append(field_required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        causes.append(field_not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    causes += _validate_versions(spec)
    causes += _validate_names(names)
    causes += _validate_conversion(spec)
    return causes


def _validate_names(names: Obj) -> list[Cause]:
    causes: list[Cause] = []
    p = "spec.names"
    for key in ("plural", "singular", "kind", "listKind"):
        if not names.get(key):
            causes.append(field_required(f"{p}.{key}"))
    if names.get("plural"):
        causes += _dns1035(names["plural"], f"{p}.plural")
    if names.get("singular"):
        causes += _dns1035(names["singular"], f"{p}.singular")
    for key in ("kind", "listKind"):
        value = names.get(key)
        if isinstance(value, str) and value:
            errs = is_dns1035_label(value.lower())
            if errs:
                causes.append(field_invalid(f"{p}.{key}", value,
                                            "may have mixed case, but should otherwise match: " + ",".join(errs)))
    for i, short in enumerate(names.get("shortNames") or []):
        causes += _dns1035(short, f"{p}.shortNames[{i}]")
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        causes.append(field_invalid(f"{p}.listKind", names["listKind"],
                                    "kind and listKind may not be the same or parsing will fail"))
    for i, category in enumerate(names.get("categories") or []):
        causes += _dns1035(category, f"{p}.categories[{i}]")
    return causes


def _validate_versions(spec: Obj) -> list[Cause]:
    causes: list[Cause] = []
    versions = spec.get("versions") or []
    if not versions:
        return [field_required("spec.versions")]
    seen: set[str] = set()
    unique = True
    storage = 0
    for i, v in enumerate(versions):
        path = f"spec.versions[{i}]"
        if not isinstance(v, dict):
            causes.append(field_invalid(path, v, "must be an object"))
            continue
        if v.get("storage"):
            storage += 1
        vname = v.get("name") or ""
        if vname in seen:
            unique = False
        seen.add(vname)
        causes += _dns1035(vname, f"{path}.name")
        causes += _validate_version(v, path, spec)
    if not unique:
        causes.append(field_invalid("spec.versions", versions, "must contain unique version names"))
    if storage != 1:
        causes.append(field_invalid("spec.versions", versions,
                                    "must have exactly one version marked as storage version"))
    return causes


def _validate_version(v: Obj, path: str, spec: Obj) -> list[Cause]:
    causes: list[Cause] = []
    schema = (v.get("schema") or {}).get("openAPIV3Schema")
    spath = f"{path}.schema.openAPIV3Schema"
    if schema is None:
        if not spec.get("preserveUnknownFields"):
            causes.append(field_required(spath, "Required value: schemas are required"))
    else:
        causes += validate_structural(schema, spath)
        for fpath, message in celrules.compile_schema(schema, spath):
            causes.append(field_invalid(fpath, "", message))
    for i, col in enumerate(v.get("additionalPrinterColumns") or []):
        cpath = f"{path}.additionalPrinterColumns[{i}]"
        if not isinstance(col, dict):
            continue
        if not col.get("name"):
            causes.append(field_required(f"{cpath}.name"))
        ctype = col.get("type")
        if not ctype:
            causes.append(field_required(f"{cpath}.type", "Required value: must be one of "
                                         + ",".join(PRINTER_COLUMN_TYPES)))
        elif ctype not in PRINTER_COLUMN_TYPES:
            causes.append(field_invalid(f"{cpath}.type", ctype, "must be one of " + ",".join(PRINTER_COLUMN_TYPES)))
        if col.get("format") and col["format"] not in PRINTER_COLUMN_FORMATS:
            causes.append(field_invalid(f"{cpath}.format", col["format"],
                                        "must be one of " + ",".join(PRINTER_COLUMN_FORMATS)))
        if not col.get("jsonPath"):
            causes.append(field_required(f"{cpath}.jsonPath"))
        elif not str(col["jsonPath"]).startswith("."):
            causes.append(field_invalid(f"{cpath}.jsonPath", col["jsonPath"], "must be a simple json path starting "
                                                                              "with ."))
    scale = (v.get("subresources") or {}).get("scale")
    if isinstance(scale, dict):
        spath2 = f"{path}.subresources.scale"
        srp = scale.get("specReplicasPath")
        if not srp:
            causes.append(field_required(f"{spath2}.specReplicasPath"))
        elif not str(srp).startswith(".spec."):
            causes.append(field_invalid(f"{spath2}.specReplicasPath", srp, "should be a json path under .spec"))
        trp = scale.get("statusReplicasPath")
        if not trp:
            causes.append(field_required(f"{spath2}.statusReplicasPath"))
        elif not str(trp).startswith(".status."):
            causes.append(field_invalid(f"{spath2}.statusReplicasPath", trp,
                                        "should be a json path under .status"))
        lsp = scale.get("labelSelectorPath")
        if lsp and not str(lsp).startswith((".spec.", ".status.")):
            causes.append(field_invalid(f"{spath2}.labelSelectorPath", lsp,
                                        "should be a json path under either .spec or .status"))
    return causes


def _validate_conversion(spec: Obj) -> list[Cause]:
    causes: list[Cause] = []
    conv = spec.get("conversion") or {}
    strategy = conv.get("strategy")
    p = "spec.conversion"
    if strategy not in ("None", "Webhook"):
        causes.append(field_not_supported(f"{p}.strategy", strategy, ["None", "Webhook"]))
        return causes
    webhook = conv.get("webhook")
    if strategy == "None" and webhook is not None:
        causes.append(field_forbidden(f"{p}.webhook", "should not be set when strategy is not set to Webhook"))
    if strategy == "Webhook":
        if spec.get("preserveUnknownFields"):
            causes.append(field_invalid(f"{p}.strategy", strategy,
                                        "must be None if spec.preserveUnknownFields is true"))
        if not isinstance(webhook, dict):
            causes.append(field_required(f"{p}.webhook", "Required value: required when strategy is set to "
                                                         "Webhook"))
            return causes
        cc = webhook.get("clientConfig")
        if not isinstance(cc, dict):
            causes.append(field_required(f"{p}.webhook.clientConfig",
                                         "Required value: required when strategy is set to Webhook"))
        elif bool(cc.get("url")) == bool(cc.get("service")):
            causes.append(field_required(f"{p}.webhook.clientConfig",
                                         "Required value: exactly one of url or service is required"))
        versions = webhook.get("conversionReviewVersions") or []
        if not any(v in ("v1", "v1beta1") for v in versions):
            causes.append(field_invalid(f"{p}.webhook.conversionReviewVersions", versions,
                                        "must include at least one of v1, v1beta1"))
    return causes


def validate_update(new: Obj, old: Obj) -> list[Cause]:
    causes = validate(new)
    new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    if new_spec.get("scope") != old_spec.get("scope") and old_spec.get("scope"):
        causes.append(field_invalid("spec.scope", new_spec.get("scope"), "field is immutable"))
    if new_spec.get("group") != old_spec.get("group"):
        causes.append(field_invalid("spec.group", new_spec.get("group"), "field is immutable"))
    stored = ((new.get("status") or {}).get("storedVersions")) or []
    served_names = {v.get("name") for v in new_spec.get("versions") or [] if isinstance(v, dict)}
    for i, sv in enumerate(stored):
        if sv not in served_names:
            causes.append(field_invalid(f"status.storedVersions[{i}]", sv, "must appear in spec.versions"))
    return causes


# ---- the ResourceDef ---------------------------------------------------------------------------


def _created_at(obj: Obj) -> Any:
    return (obj.get("metadata") or {}).get("creationTimestamp")


def resource_def() -> ResourceDef:
    from kplane.controlplane.types.printing import AGE_DOC

    return ResourceDef(
        group=GROUP, version=VERSION, kind="CustomResourceDefinition", plural="customresourcedefinitions",
        namespaced=False, short_names=["crd", "crds"], categories=["api-extensions"], subresources=["status"],
        schema=CRD_SCHEMA, has_status=True,
        openapi_name="io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
        columns=[name_column(), Column("Created At", "date", _created_at, description=AGE_DOC)],
        prepare_create=prepare_create, prepare_update=prepare_update,
        validate_create=validate, validate_update=validate_update,
    )
