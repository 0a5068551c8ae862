"""The LLMService resource: identity constants and the top-level model.

``parse`` is the one entry point that turns a manifest (a dict from YAML or from the API server)
into a validated :class:`LLMService`, reporting every problem with its field path.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from llmsvc.api.rules import ROOT_RULES
from llmsvc.api.spec import LLMServiceSpec
from llmsvc.api.status import LLMServiceStatus

GROUP = "llmsvc.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LLMService"
PLURAL = "llmservices"
SINGULAR = "llmservice"
SHORT_NAMES = ("llmsvc", "llms")


class Metadata(BaseModel):
    """The parts of ObjectMeta the operator reads."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class LLMService(BaseModel):
    """A complete LLMService object."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: Metadata
    spec: LLMServiceSpec
    status: LLMServiceStatus = Field(default_factory=LLMServiceStatus)

    @property
    def name(self) -> str:
        """metadata.name."""
        return self.metadata.name

    @property
    def namespace(self) -> str:
        """metadata.namespace."""
        return self.metadata.namespace

    @property
    def served_name(self) -> str:
        """The OpenAI model name: spec.model.servedName or metadata.name."""
        return self.spec.model.served_name or self.metadata.name


class InvalidSpecError(ValueError):
    """A manifest that is not a valid LLMService; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _path(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) if isinstance(p, str) else f"[{p}]" for p in loc]
    return ".".join(parts).replace(".[", "[")


def _message(err: ErrorDetails) -> str:
    """pydantic's message, worded as the API server words it where the two differ."""
    if err["type"] == "missing":
        return "Required value"
    if err["type"] == "literal_error":
        allowed = ", ".join(f'"{v}"' for v in re.findall(r"'([^']*)'", err["ctx"]["expected"]))
        given = json.dumps(err["input"], default=str)
        return f"Unsupported value: {given}: supported values: {allowed}"
    return str(err["msg"]).removeprefix("Value error, ")


def _problems(error: ValidationError) -> list[str]:
    return [f"{_path(err['loc']) or '(root)'}: {_message(err)}" for err in error.errors()]


def parse(manifest: dict[str, Any]) -> LLMService:
    """Validate ``manifest`` as an LLMService, else raise :class:`InvalidSpecError` per field."""
    problems: list[str] = []
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != KIND:
        problems.append(f"(root): expected apiVersion {API_VERSION} and kind {KIND}")
    name = str((manifest.get("metadata") or {}).get("name", ""))
    problems += [f"metadata.name: {r.message}" for r in ROOT_RULES if not r.check(name)]
    try:
        obj = LLMService.model_validate(manifest)
    except ValidationError as error:
        raise InvalidSpecError(problems + _problems(error)) from None
    if problems:
        raise InvalidSpecError(problems)
    return obj
