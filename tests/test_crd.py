"""The generated CRD: checked in without drift, structural, documented, and agreeing with the models
(every example passes both the CRD's openAPIV3Schema and ``parse``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from llmsvc import crdgen
from llmsvc.api import parse
from llmsvc.api import rules as api_rules
from tests.invalid_cases import INVALID_CASES, Case

ROOT = Path(__file__).resolve().parents[1]
CRD_FILE = ROOT / "crds" / "llmservices.llmsvc.io.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
ALL_RULES = [
    rule for name in dir(api_rules) if name.endswith("_RULES") for rule in getattr(api_rules, name)
]


def _version() -> dict[str, Any]:
    versions: list[dict[str, Any]] = crdgen.crd()["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = _version()["schema"]["openAPIV3Schema"]
    return schema


def _nodes(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, child in schema.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{key}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


def _fields() -> Iterator[tuple[str, dict[str, Any]]]:
    for key in ("spec", "status"):
        yield from _nodes(_schema()["properties"][key], key)


def test_checked_in_crd_matches_the_models() -> None:
    assert CRD_FILE.read_text() == crdgen.crd_yaml(), "run `make generate` and commit the CRD"


def test_every_node_is_typed() -> None:
    for path, node in _nodes(_schema(), "(root)"):
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        assert typed, f"{path} has no type"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert node["type"] == "object", path


def test_no_nullable_any_of() -> None:
    for path, node in _nodes(_schema(), "(root)"):
        for option in node.get("anyOf", []):
            assert option.get("type") != "null", path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), f"{path}: anyOf only for int-or-string"
        assert "nullable" not in node, path


def test_every_field_has_a_description() -> None:
    for path, node in _fields():
        if path.endswith(("[]", "{}")):
            continue  # list items and map values are described by their field
        assert str(node.get("description", "")).strip(), f"{path} has no description"


def test_subresources_and_names() -> None:
    version = _version()
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    names = crdgen.crd()["spec"]["names"]
    assert (names["kind"], names["plural"]) == ("LLMService", "llmservices")
    assert set(names["shortNames"]) == {"llmsvc", "llms"}


def test_printer_columns() -> None:
    columns = {c["name"]: c["jsonPath"] for c in _version()["additionalPrinterColumns"]}
    assert columns == {
        "Model": ".spec.model.servedName",
        "TP": ".spec.parallelism.tensor",
        "PP": ".spec.parallelism.pipeline",
        "Nodes": ".status.nodesPerReplica",
        "Replicas": ".spec.replicas",
        "Ready": ".status.readyReplicas",
        "Status": '.status.conditions[?(@.type=="Ready")].reason',
        "URL": ".status.endpoint",
        "Age": ".metadata.creationTimestamp",
    }


def test_conditions_are_a_map_keyed_by_type_and_not_in_category_all() -> None:
    status = _version()["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]
    # Served for an object nobody reconciled yet: kstatus must not count it as Current.
    assert _version()["schema"]["openAPIV3Schema"]["properties"]["status"]["default"] == {
        "observedGeneration": 0
    }
    # `kubectl delete all --all` must not take model deployments with it.
    assert "all" not in crdgen.crd()["spec"]["names"]["categories"]


def test_every_rule_is_in_the_crd_and_exercised_by_a_case() -> None:
    in_crd = [
        item["message"]
        for _path, node in _nodes(_schema(), "(root)")
        for item in node.get("x-kubernetes-validations", [])
    ]
    assert sorted(set(in_crd)) == sorted(rule.message for rule in ALL_RULES)
    for rule in ALL_RULES:
        assert any(case.message in rule.message for case in INVALID_CASES), rule.message


def test_spec_defaults_are_valid_values() -> None:
    defaults = [(path, node) for path, node in _fields() if "default" in node]
    assert len(defaults) > 10
    for path, node in defaults:
        errors = list(jsonschema.Draft4Validator(node).iter_errors(node["default"]))
        assert not errors, f"{path}: {errors}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_matches_schema_and_models(example: Path) -> None:
    manifest = yaml.safe_load(example.read_text())
    jsonschema.Draft4Validator(_schema()).validate(manifest)
    svc = parse(manifest)
    assert svc.spec.model.served_name, "examples set servedName (the MODEL column)"
    gpus = svc.spec.parallelism.tensor * svc.spec.parallelism.pipeline
    most = max(svc.spec.replicas, svc.spec.autoscaling.max_replicas * svc.spec.autoscaling.enabled)
    assert gpus * most <= 32, "an example must fit the 4x8-GPU test cluster"


def test_examples_are_the_numbered_curriculum() -> None:
    assert [p.name for p in EXAMPLES] == [
        "01-single-gpu.yaml",
        "02-one-node-tp8.yaml",
        "03-two-nodes.yaml",
        "04-three-replicas.yaml",
        "05-autoscaling.yaml",
        "06-ray.yaml",
    ]


def _cel(case: Case) -> bool:
    return any(case.message in rule.message for rule in ALL_RULES)


@pytest.mark.parametrize("case", [c for c in INVALID_CASES if not _cel(c)], ids=lambda c: c.id)
def test_schema_only_cases_fail_the_openapi_schema(case: Case) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(_schema()).validate(case.manifest())
