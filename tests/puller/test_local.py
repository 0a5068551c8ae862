"""pvc:// models: nothing fetched, the directory must be loadable."""

from __future__ import annotations

import json
from pathlib import Path

from tests.puller.conftest import run_pull, synthetic_model


def _write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def test_pvc_model_is_verified_and_printed(tmp_path: Path) -> None:
    _write(tmp_path / "llama/8b", synthetic_model(2, 100))
    res = run_pull("pvc://weights/llama/8b", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(tmp_path / "llama/8b")


def test_missing_shard_fails_verification(tmp_path: Path) -> None:
    files = synthetic_model(2, 100)
    del files["model-00002-of-00002.safetensors"]
    _write(tmp_path, files)
    res = run_pull("pvc://weights", str(tmp_path))
    assert res.returncode == 7
    assert "lists model-00002-of-00002.safetensors but it is missing" in res.stderr


def test_no_weights_and_no_config_are_named(tmp_path: Path) -> None:
    _write(tmp_path, {"README.md": b"hi"})
    res = run_pull("pvc://weights", str(tmp_path))
    assert res.returncode == 7
    assert "config.json is missing" in res.stderr
    assert "no weights" in res.stderr


def test_missing_path_is_not_found(tmp_path: Path) -> None:
    res = run_pull("pvc://weights/nothing/here", str(tmp_path))
    assert res.returncode == 3
    assert "check the claim/path" in res.stderr


def test_a_marker_on_the_claim_is_checked_too(tmp_path: Path) -> None:
    files = synthetic_model(1, 100)
    _write(tmp_path, files)
    manifest = [{"path": n, "size": len(d)} for n, d in files.items()]
    marker = {"version": 1, "request": {}, "resolved": "", "files": manifest}
    (tmp_path / ".llmsvc-complete.json").write_text(json.dumps(marker))
    assert run_pull("pvc://c", str(tmp_path)).returncode == 0
    (tmp_path / "config.json").write_bytes(b"{}")  # size differs from the manifest
    res = run_pull("pvc://c", str(tmp_path))
    assert res.returncode == 7
    assert "config.json does not match the manifest" in res.stderr
