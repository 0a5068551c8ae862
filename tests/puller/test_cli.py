"""``llmsvc pull`` as a command: help, usage errors, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.puller.conftest import run_pull

from llmsvc.puller.main import parse_size


def test_help_documents_every_source_variable_and_exit_code() -> None:
    res = run_pull("--help")
    assert res.returncode == 0
    for word in (
        "hf://ORG/NAME",
        "s3://BUCKET/PREFIX",
        "https://HOST/PATH",
        "pvc://CLAIM/PATH",
        "storage.googleapis.com",
        "HF_TOKEN",
        "HF_ENDPOINT",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "LLMSVC_HTTP_TOKEN",
        "LLMSVC_PULL_CONCURRENCY",
        "--revision",
        "--verify",
    ):
        assert word in res.stdout, word
    for code in range(2, 8):
        assert f"\n  {code}  " in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://x/y"], "unsupported model URI"),
        (["hf://a/b", "--file", "x"], "--file is for https://"),
        (["s3://bucket/x", "--include", "*.py"], "--include is for hf://"),
        (["gs://bucket/x"], "AWS_ENDPOINT_URL=https://storage.googleapis.com"),
        (["file:///opt/model"], "use pvc://CLAIM/PATH"),
        (["hf://gpt2"], "does not have the form hf://ORG/NAME"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    res = run_pull(args[0], str(tmp_path), *args[1:])
    assert res.returncode == 2
    assert message in res.stderr


def test_bad_size_flag_is_explained(tmp_path: Path) -> None:
    res = run_pull("hf://a/b", str(tmp_path), "--part-size", "lots")
    assert res.returncode == 2
    assert "use bytes or a number with Ki/Mi/Gi" in res.stderr


def test_parse_size() -> None:
    assert parse_size("8Mi") == parse_size("8MiB") == parse_size("8m") == 8 << 20
    assert parse_size("1Gi") == 1 << 30
    assert parse_size("4096") == 4096
