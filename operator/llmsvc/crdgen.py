"""Generate the LLMService CustomResourceDefinition from the pydantic models in :mod:`llmsvc.api`.

The output is a structural schema: every node typed, optional fields simply not required (no
``anyOf`` with null), quantities as int-or-string, embedded Kubernetes objects preserved as-is,
cross-field rules as CEL. ``llmsvc crd`` prints it; ``crds/llmservices.llmsvc.io.yaml`` is that
output checked in, and a test fails when the two drift apart.
"""

from __future__ import annotations

import argparse
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from llmsvc.api import llmservice as res
from llmsvc.api.base import IntOrString, Model, Opaque
from llmsvc.api.rules import ROOT_RULES
from llmsvc.api.spec import LLMServiceSpec
from llmsvc.api.status import LLMServiceStatus

Schema = dict[str, Any]

_SCALARS: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}
_CONSTRAINTS: dict[type, tuple[str, str]] = {
    at.Ge: ("ge", "minimum"),
    at.Gt: ("gt", "minimum"),
    at.Le: ("le", "maximum"),
    at.Lt: ("lt", "maximum"),
}

PRINTER_COLUMNS = [
    ("Model", "string", ".spec.model.servedName", "OpenAI model name"),
    ("TP", "integer", ".spec.parallelism.tensor", "Tensor-parallel size"),
    ("PP", "integer", ".spec.parallelism.pipeline", "Pipeline-parallel size"),
    ("Nodes", "integer", ".status.nodesPerReplica", "Pods per model replica"),
    ("Replicas", "integer", ".spec.replicas", "Desired model replicas"),
    ("Ready", "integer", ".status.readyReplicas", "Model replicas fully ready"),
    ("Status", "string", '.status.conditions[?(@.type=="Ready")].reason', "Ready reason"),
    ("URL", "string", ".status.endpoint", "In-cluster OpenAI base URL"),
    ("Age", "date", ".metadata.creationTimestamp", ""),
]


def _strip_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _apply_constraints(schema: Schema, metadata: list[Any]) -> None:
    is_array = schema.get("type") == "array"
    is_map = schema.get("type") == "object"
    for meta in metadata:
        for kind, (attr, key) in _CONSTRAINTS.items():
            if isinstance(meta, kind):
                schema[key] = getattr(meta, attr)
                if kind in (at.Gt, at.Lt):
                    schema["exclusive" + key.capitalize()] = True
        if isinstance(meta, at.MaxLen):
            key = "maxItems" if is_array else "maxProperties" if is_map else "maxLength"
            schema[key] = meta.max_length
        if isinstance(meta, at.MinLen):
            schema["minItems" if is_array else "minLength"] = meta.min_length
        if getattr(meta, "pattern", None):
            schema["pattern"] = meta.pattern


def _union_schema(tp: Any, metadata: list[Any]) -> Schema:
    if any(isinstance(m, IntOrString) for m in metadata):
        return {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
        }
    raise TypeError(f"unsupported union {tp!r}: the CRD needs one type per field")


def type_schema(tp: Any, metadata: list[Any] | None = None) -> Schema:
    """The structural schema of a Python type with its pydantic constraints."""
    metadata = list(metadata or [])
    tp = _strip_optional(tp)
    origin = get_origin(tp)
    if origin is Annotated:
        inner, *extra = get_args(tp)
        for item in extra:
            metadata += item.metadata if isinstance(item, FieldInfo) else [item]
        return type_schema(inner, metadata)
    schema = _base_schema(tp, origin, metadata)
    _apply_constraints(schema, metadata)
    return schema


def _container_schema(tp: Any, origin: Any, metadata: list[Any]) -> Schema | None:
    if origin in (Union, types.UnionType):
        return _union_schema(tp, metadata)
    if origin is Literal:
        return {"type": "string", "enum": list(get_args(tp))}
    if origin is list:
        return {"type": "array", "items": type_schema(get_args(tp)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": type_schema(get_args(tp)[1])}
    return None


def _base_schema(tp: Any, origin: Any, metadata: list[Any]) -> Schema:
    if any(isinstance(m, Opaque) for m in metadata):
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema = _container_schema(tp, origin, metadata)
    if schema is not None:
        return schema
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return model_schema(tp)
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    raise TypeError(f"no CRD schema for {tp!r}")


def _default(field: FieldInfo) -> Any:
    """The CRD default of a field. A nested object defaults to its fully defaulted form, not to
    ``{}``: the API server checks an object's CEL rules against the default as written."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return value.model_dump(by_alias=True, exclude_none=True, mode="json")
        return None
    if field.default is PydanticUndefined or field.default is None:
        return None
    return field.default


def field_schema(field: FieldInfo) -> Schema:
    """The schema of one model field: type, constraints, description, default."""
    schema = type_schema(field.annotation, field.metadata)
    extra = field.json_schema_extra
    if isinstance(extra, dict):
        schema.update(extra)
    doc = field.description
    if not doc and isinstance(field.annotation, type):
        doc = (field.annotation.__doc__ or "").strip()
    schema["description"] = doc or ""
    default = _default(field)
    if default is not None and default != "":
        schema["default"] = default
    return schema


def model_schema(model: type[BaseModel]) -> Schema:
    """The schema of a model: its fields by alias, required ones listed, its CEL rules."""
    properties: Schema = {}
    required: list[str] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        properties[key] = field_schema(field)
        if field.is_required():
            required.append(key)
    schema: Schema = {"type": "object", "properties": properties}
    if model.__doc__:
        schema["description"] = model.__doc__.strip().splitlines()[0]
    if required:
        schema["required"] = required
    if issubclass(model, Model) and model.cel_rules:
        schema["x-kubernetes-validations"] = [rule.as_crd() for rule in model.cel_rules]
    return schema


def _status_schema() -> Schema:
    """The status schema, defaulted to ``{observedGeneration: 0}``.

    The API server applies the default whenever it serves an object without status, so an
    LLMService the operator has not looked at yet reads as not observed (kstatus InProgress,
    Argo CD Progressing) instead of having no status at all (which kstatus counts as Current).
    """
    return model_schema(LLMServiceStatus) | {"default": {"observedGeneration": 0}}


def _root_schema() -> Schema:
    return {
        "type": "object",
        "description": "LLMService serves one model with vLLM across one or many GPU nodes.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "llmsvc.io/v1alpha1"},
            "kind": {"type": "string", "description": "LLMService"},
            "metadata": {"type": "object"},
            "spec": model_schema(LLMServiceSpec),
            "status": _status_schema(),
        },
        "x-kubernetes-validations": [rule.as_crd() for rule in ROOT_RULES],
    }


def _columns() -> list[Schema]:
    columns = []
    for name, kind, path, description in PRINTER_COLUMNS:
        column: Schema = {"name": name, "type": kind, "jsonPath": path}
        if description:
            column["description"] = description
        columns.append(column)
    return columns


def crd() -> Schema:
    """The complete CustomResourceDefinition."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{res.PLURAL}.{res.GROUP}"},
        "spec": {
            "group": res.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": res.KIND,
                "listKind": f"{res.KIND}List",
                "plural": res.PLURAL,
                "singular": res.SINGULAR,
                "shortNames": list(res.SHORT_NAMES),
                # Not "all": `kubectl delete all --all` must not delete model deployments.
                "categories": ["llm"],
            },
            "versions": [
                {
                    "name": res.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": _root_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": _columns(),
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as YAML, in a stable order, with the generated-file header."""
    header = "# Generated by `llmsvc crd` (make generate) from operator/llmsvc/api. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``llmsvc crd`` takes no arguments."""
    del parser


def run(args: argparse.Namespace) -> int:
    """Print the CRD."""
    del args
    print(crd_yaml(), end="")
    return 0
