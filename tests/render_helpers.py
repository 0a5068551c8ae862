"""Shared helpers for the render tests: load examples, build variants, pick children apart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from llmsvc.api import LLMService, parse
from tests.invalid_cases import base_manifest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GOLDEN = Path(__file__).parent / "golden"
Manifest = dict[str, Any]


def load(example: str) -> LLMService:
    return parse(yaml.safe_load((ROOT / "examples" / example).read_text()))


def svc_with(*mutations: Callable[[Manifest], None]) -> LLMService:
    manifest = base_manifest()
    for mutate in mutations:
        mutate(manifest)
    return parse(manifest)


def by_key(children: list[Manifest]) -> dict[tuple[str, str], Manifest]:
    return {(c["kind"], c["metadata"]["name"]): c for c in children}


def kinds(children: list[Manifest], kind: str) -> list[Manifest]:
    return [c for c in children if c["kind"] == kind]


def engine_of(sts: Manifest) -> Manifest:
    container: Manifest = sts["spec"]["template"]["spec"]["containers"][0]
    return container


def env_of(sts: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in engine_of(sts)["env"]}
