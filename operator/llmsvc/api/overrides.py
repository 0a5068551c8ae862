"""The documented escape hatch: registry credentials, extra metadata and pod-template overlays.

What the API does not model can still be set here, on every pod and Service the operator
creates. Label keys the operator selects on are refused at admission (CEL) and in Python with the
same message; a pod-template overlay may not change operator-owned fields (checked when
rendering, see :mod:`llmsvc.render.overrides`).
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from llmsvc.api.base import Model
from llmsvc.api.rules import METADATA_RULES, Rule

K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
PullSecretName = Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME)]


class ExtraMetadata(Model):
    """Extra labels and annotations (added to the operator's own, never replacing them)."""

    cel_rules: ClassVar[tuple[Rule, ...]] = METADATA_RULES

    labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict,
        max_length=64,
        description="Extra labels; keys under llmsvc.io/ and app.kubernetes.io/ are reserved.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, max_length=64, description="Extra annotations."
    )
