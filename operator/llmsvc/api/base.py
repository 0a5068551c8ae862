"""Shared building blocks of the API models: the base class, Kubernetes-shaped field types.

Python code uses snake_case attributes; the wire format (YAML, the CRD) uses the camelCase aliases.
``Opaque`` and ``IntOrString`` are markers that :mod:`llmsvc.crdgen` turns into the matching
structural-schema constructs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from llmsvc.api.rules import Rule


@dataclass(frozen=True)
class Opaque:
    """A Kubernetes object embedded as-is (``x-kubernetes-preserve-unknown-fields``)."""


@dataclass(frozen=True)
class IntOrString:
    """A resource quantity such as ``200Gi`` or ``4`` (``x-kubernetes-int-or-string``)."""


QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?$"

Quantity = Annotated[int | str, IntOrString(), Field(union_mode="left_to_right")]
KubeObject = Annotated[dict[str, Any], Opaque()]


class Model(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected, rules enforced.

    Subclasses list their cross-field rules in ``cel_rules``; the same rules become CEL in the CRD.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )
    cel_rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Model:
        for rule in self.cel_rules:
            if not rule.check(self):
                raise ValueError(rule.message)
        return self

    def wire(self) -> dict[str, Any]:
        """The object as it appears in YAML: camelCase, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
