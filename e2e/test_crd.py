"""The LLMService CRD from crds/ on a real API server: examples accepted, invalid specs rejected
with their CEL/schema message, printer columns, `kubectl explain`, and the scale subresource."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import Cluster
from e2e.helpers import REPO, apply, exists, kubectl, kubectl_json, to_yaml, wait_for

pytestmark = pytest.mark.usefixtures("cluster")

CRD_FILE = REPO / "crds" / "llmservices.llmsvc.io.yaml"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def load_invalid_cases() -> list[Any]:
    """tests.invalid_cases.INVALID_CASES, or one stand-in whose test fails with the import error."""
    try:
        module = importlib.import_module("tests.invalid_cases")
        return list(module.INVALID_CASES)
    except (ImportError, AttributeError) as exc:
        return [pytest.param(None, id=f"unavailable: {exc}")]


def crd_version() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    version: dict[str, Any] = crd["spec"]["versions"][0]
    return version


def llmservices(path: Path) -> list[dict[str, Any]]:
    """The LLMService documents of an example file."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return [d for d in docs if d.get("kind") == "LLMService"]


def squash(text: str) -> str:
    """Collapse whitespace (kubectl explain wraps long descriptions)."""
    return re.sub(r"\s+", " ", text).strip()


def test_crd_and_examples_are_in_the_repo() -> None:
    assert CRD_FILE.is_file(), f"missing {CRD_FILE} (make generate)"
    assert EXAMPLES, "no examples/*.yaml: every example must be applied by test_example_is_accepted"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted(namespace: str, example: Path) -> None:
    kubectl("apply", "-n", namespace, "-f", str(example))
    names = [d["metadata"]["name"] for d in llmservices(example)]
    assert names, f"{example.name} holds no LLMService"
    for name in names:
        assert exists("llmservice", name, namespace)


@pytest.mark.parametrize("case", load_invalid_cases(), ids=lambda c: getattr(c, "id", None))
def test_invalid_spec_is_rejected_by_the_api_server(
    module_namespace: str, case: Any, cluster: Cluster
) -> None:
    namespace = module_namespace
    assert case is not None, "tests/invalid_cases.py with INVALID_CASES is not available"
    manifest = case.manifest()
    manifest.setdefault("metadata", {}).pop("namespace", None)
    proc = kubectl("apply", "-n", namespace, "-f", "-", input=to_yaml(manifest), check=False)
    assert proc.returncode != 0, f"{case.id}: the API server accepted an invalid LLMService"
    assert squash(case.message) in squash(proc.stderr), (
        f"{case.id}: unexpected error:\n{proc.stderr}"
    )
    assert not exists("llmservice", manifest["metadata"]["name"], namespace)


def first_example(name: str) -> dict[str, Any]:
    """The first example's first LLMService, renamed."""
    assert EXAMPLES, "no examples/*.yaml"
    obj = llmservices(EXAMPLES[0])[0]
    obj["metadata"] = {"name": name}
    return obj


def test_printer_columns_and_short_names(namespace: str) -> None:
    apply(first_example("x"), namespace)
    header = kubectl("get", "llmservices", "-n", namespace).stdout.splitlines()[0].split()
    wanted = ["NAME"] + [c["name"].upper() for c in crd_version()["additionalPrinterColumns"]]
    assert header == wanted
    for short in ("llmsvc", "llms"):
        assert "x" in kubectl("get", short, "-n", namespace, "-o", "name").stdout


def test_unreconciled_object_reads_as_not_observed_and_is_not_in_all(namespace: str) -> None:
    """No operator runs in this file: the API server serves the CRD's status default, which
    kstatus and the Argo CD check read as "not observed yet" (tested in e2e/gitops)."""
    apply(first_example("fresh"), namespace)
    obj = kubectl_json("get", "llmservice", "fresh", "-n", namespace)
    assert obj["status"] == {"observedGeneration": 0}
    assert obj["metadata"]["generation"] == 1
    listed = kubectl("get", "all", "-n", namespace, "-o", "name").stdout
    assert "llmservice" not in listed  # `kubectl delete all --all` leaves models alone


def test_kubectl_explain_shows_the_descriptions(cluster: Cluster) -> None:
    schema = crd_version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    parallelism = schema["parallelism"]

    def explained() -> str | None:
        proc = kubectl("explain", "llmservice.spec.parallelism", check=False)
        return squash(proc.stdout) if proc.returncode == 0 else None

    text = wait_for(explained, what="kubectl explain llmservice.spec.parallelism")
    assert squash(parallelism["description"]) in text
    for field, prop in parallelism["properties"].items():
        assert field in text
        assert squash(prop["description"]) in text


def test_kubectl_scale_uses_the_scale_subresource(namespace: str) -> None:
    apply(first_example("x"), namespace)
    kubectl("scale", "llmservice/x", "--replicas=3", "-n", namespace)
    assert kubectl_json("get", "llmservice", "x", "-n", namespace)["spec"]["replicas"] == 3
    scale = kubectl_json("get", "llmservice", "x", "-n", namespace, "--subresource=scale")
    assert scale["spec"]["replicas"] == 3
