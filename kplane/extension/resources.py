"""Turning a resource declaration (a class or a JSON schema, plus options)
into a ResourceDef: schema, defaults, validation, printer columns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kplane.apimachinery.errors import Cause
from kplane.apimachinery.jsonpath import evaluate
from kplane.apimachinery.objectmeta import OBJECT_META
from kplane.apimachinery.table import age, since
from kplane.apimachinery.typeschema import described
from kplane.apiserver.resource import Column, Obj, ResourceDef
from kplane.extension.schema import Schema, apply_defaults, as_schema, validate_object, with_object_default

API_VERSION_DOC = ("APIVersion defines the versioned schema of this representation of an object. Servers "
                   "should convert recognized schemas to the latest internal value, and may reject "
                   "unrecognized values.")
KIND_DOC = ("Kind is a string value representing the REST resource this object represents. Servers may "
            "infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase.")
METADATA_DOC = "Standard object's metadata."

ColumnSpec = Any  # (name, jsonpath[, type[, priority[, description]]]) | dict | Column


def _cell(value: Any, type_: str) -> Any:
    if value is None:
        return None
    if type_ == "date":
        return since(value) if isinstance(value, str) else value
    if type_ == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if type_ == "string" and isinstance(value, (dict, list)):
        import orjson

        return orjson.dumps(value).decode()
    return value


def path_column(name: str, json_path: str, type_: str = "string", priority: int = 0, description: str = "",
                fmt: str = "") -> Column:
    """A printer column filled from a JSONPath, as a CRD's additionalPrinterColumns."""
    def value(obj: Obj) -> Any:
        found = evaluate(obj, json_path)
        return _cell(found[0], type_) if found else None
    return Column(name, type_, value, format=fmt, description=description or name, priority=priority)


def to_column(spec: ColumnSpec) -> Column:
    if isinstance(spec, Column):
        return spec
    if isinstance(spec, dict):
        return path_column(spec["name"], spec.get("jsonPath") or spec["json_path"],
                           spec.get("type", "string"),
                           int(spec.get("priority", 0)), spec.get("description", ""), spec.get("format", ""))
    name, path, *rest = spec
    return path_column(name, path, *rest)


def name_column() -> Column:
    return Column("Name", "string", lambda o: (o.get("metadata") or {}).get("name", ""), format="name",
                  description="Name must be unique within a namespace. Is required when creating resources, "
                              "although some resources may allow a client to request the generation of an "
                              "appropriate name automatically. Name is primarily intended for creation "
                              "idempotence and configuration definition. Cannot be updated.")


def age_column() -> Column:
    return Column("Age", "date", age, description="CreationTimestamp is a timestamp representing the server "
                  "time when this object was created.")


def table_columns(specs: Iterable[ColumnSpec] | None) -> list[Column]:
    columns = [name_column(), *(to_column(s) for s in specs or ())]
    if not any(c.name.lower() == "age" for c in columns):
        columns.append(age_column())
    return columns


def object_schema(kind: str, body: Schema | None, *, root_fields: bool, status: Schema | None) -> Schema:
    props: Schema = {
        "apiVersion": {"type": "string", "description": API_VERSION_DOC},
        "kind": {"type": "string", "description": KIND_DOC},
        # metav1.ObjectMeta in full: it names the fields kubectl apply, explain and strict field
        # validation look for (an object stub made all three miss them).
        "metadata": described(OBJECT_META, METADATA_DOC),
    }
    required: list[str] = []
    if root_fields:
        body = body or {"type": "object"}
        props.update(body.get("properties") or {})
        required = list(body.get("required") or [])
        if body.get("x-kubernetes-preserve-unknown-fields"):
            props_schema: Schema = {"type": "object", "properties": props,
                                    "x-kubernetes-preserve-unknown-fields":
                                    True}
            return props_schema
    elif body is not None:
        spec = with_object_default(body)
        props["spec"] = spec
        if body.get("required") and "default" not in spec:
            required.append("spec")
    if status is not None:
        props["status"] = status
    schema: Schema = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    doc = (body or {}).get("description")
    if doc:
        schema["description"] = doc
    return schema


@dataclass
class Declaration:
    """Everything @resource was told, before it becomes a ResourceDef."""

    kind: str
    plural: str
    group: str
    version: str
    namespaced: bool = True
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    printer_columns: tuple[ColumnSpec, ...] = ()
    body: Any = None  # class or JSON schema of spec (or of the root fields)
    root_fields: bool = False
    status: Any = None  # class or JSON schema of status; enables /status
    verbs: tuple[str, ...] = ()

    def build(self) -> ResourceDef:
        definitions: Schema = {}
        body = as_schema(self.body, namer=self.type_name, definitions=definitions) if self.body is not None else None
        status = (as_schema(self.status, namer=self.type_name, definitions=definitions)
                  if self.status is not None else None)
        schema = object_schema(self.kind, body, root_fields=self.root_fields, status=status)

        def prepare(obj: Obj, *_: Obj) -> None:
            apply_defaults(obj, schema)

        def validate_create(obj: Obj) -> list[Cause]:
            return validate_object(obj, schema)

        def validate_update(obj: Obj, old: Obj) -> list[Cause]:
            return validate_object(obj, schema)

        rdef = ResourceDef(
            group=self.group, version=self.version, kind=self.kind, plural=self.plural,
            singular=self.singular or self.kind.lower(), namespaced=self.namespaced,
            short_names=list(self.short_names), categories=list(self.categories),
            subresources=["status"] if status is not None else [], schema=schema,
            openapi_name=openapi_name(self.group, self.version, self.kind), definitions=definitions,
            columns=table_columns(self.printer_columns), has_status=True,
            prepare_create=prepare, prepare_update=prepare,
            validate_create=validate_create, validate_update=validate_update)
        if self.verbs:
            rdef.verbs = list(self.verbs)
        return rdef

    def type_name(self, cls: type) -> str:
        """The OpenAPI definition name of a class the schema is derived from: com.example.wardle.v1alpha1.FlunderSpec,
        the version in it as upstream's Go package path has it. The class @resource decorates is
        the spec: named <Kind>Spec when it is named as the kind (whose own definition that name is)."""
        name = cls.__name__
        if name == self.kind:
            name += "Status" if cls is self.status else "Spec"
        return openapi_name(self.group, self.version, name)


def openapi_name(group: str, version: str, kind: str) -> str:
    """The reverse-domain definition name CRDs get upstream (com.example.shop.v1.Order)."""
    return ".".join([*reversed(group.split(".")), version, kind])
