"""``llmsvc render``: output formats, stdin, multi-document input, and exit 2 with one line per
problem for invalid specs, unreadable files and bad YAML."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmsvc.cli import main
from tests.invalid_cases import base_manifest, merge
from tests.render_helpers import GOLDEN, ROOT

EXAMPLE = ROOT / "examples" / "03-two-nodes.yaml"
LLMSVC = Path(sys.executable).parent / "llmsvc"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["render", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, *docs: Any, name: str = "in.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(list(docs)))
    return path


def test_yaml_output_is_the_golden_render(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-f", str(EXAMPLE))
    assert (code, err) == (0, "")
    assert out == (GOLDEN / "03-two-nodes.yaml").read_text()
    docs = list(yaml.safe_load_all(out))
    assert out.startswith("---\n")
    (sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
    assert sts["spec"]["replicas"] == 2
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert keys == sorted(keys)


def test_json_output_is_a_list_of_the_same_objects(capsys: pytest.CaptureFixture[str]) -> None:
    _, yaml_out, _ = run(capsys, "-f", str(EXAMPLE))
    code, json_out, _ = run(capsys, "-f", str(EXAMPLE), "-o", "json")
    assert code == 0
    listing = json.loads(json_out)
    assert (listing["apiVersion"], listing["kind"]) == ("v1", "List")
    assert listing["items"] == list(yaml.safe_load_all(yaml_out))


def test_image_flag_sets_puller_and_router(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-f", str(EXAMPLE), "--image", "registry.example/op:9")
    assert code == 0
    assert out.count("image: registry.example/op:9") == 2  # puller and router


def test_indivisible_parallelism_exits_2_naming_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = base_manifest()
    merge("spec.parallelism", {"tensor": 3, "gpusPerNode": 8})(manifest)
    code, out, err = run(capsys, "-f", str(write(tmp_path, manifest)))
    assert (code, out) == (2, "")
    (line,) = err.splitlines()
    assert "spec.parallelism: tensor*pipeline must be a multiple of gpusPerNode" in line
    assert "invalid-case" in line
    assert "set gpusPerNode" in line


def test_one_line_per_problem_across_documents(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = base_manifest()
    merge("spec", {"replicas": -1, "router": {"policy": "random"}})(bad)
    del bad["spec"]["engine"]["maxModelLen"]
    other = base_manifest()
    other["metadata"]["name"] = "Bad_Name"
    code, out, err = run(capsys, "-f", str(write(tmp_path, bad, other)))
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert len(lines) == 4
    assert all(line.startswith("error: ") for line in lines)
    for path in ("spec.replicas", "spec.router.policy", "spec.engine.maxModelLen"):
        assert any(f"document 1 (invalid-case): {path}: " in line for line in lines), path
    assert "document 2 (Bad_Name): metadata.name: " in lines[3]


def test_multi_document_skips_other_kinds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first, second = base_manifest(), base_manifest()
    second["metadata"] = {"name": "second", "namespace": "team-a"}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token"}}
    code, out, err = run(capsys, "-f", str(write(tmp_path, first, secret, second)))
    assert code == 0
    assert "skipping document 2 (hf-token) of kind 'Secret'" in err
    docs = list(yaml.safe_load_all(out))
    sts = [
        (d["metadata"]["namespace"], d["metadata"]["name"])
        for d in docs
        if d["kind"] == "StatefulSet"
    ]
    assert sts == [("default", "invalid-case-0"), ("team-a", "second-0")]


def test_stdin(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(LLMSVC), "render", "-f", "-"],
        input=EXAMPLE.read_text(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (GOLDEN / "03-two-nodes.yaml").read_text()


def test_invalid_stdin_exits_2_from_the_real_command() -> None:
    manifest = base_manifest()
    merge("spec.parallelism", {"tensor": 3, "gpusPerNode": 8})(manifest)
    result = subprocess.run(
        [str(LLMSVC), "render", "-f", "-"],
        input=yaml.safe_dump(manifest),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "<stdin>: document 1 (invalid-case): spec.parallelism: " in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: [unclosed", "invalid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "no document of kind LLMService",
        ),
        ("", "no document of kind LLMService"),
    ],
)
def test_bad_input_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "in.yaml"
    path.write_text(content)
    code, out, err = run(capsys, "-f", str(path))
    assert (code, out) == (2, "")
    assert message in err
    assert str(path) in err


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "-f", str(tmp_path / "nope.yaml"))
    assert (code, out) == (2, "")
    assert "nope.yaml: cannot read" in err
