"""The pure cache layout the renderer relies on."""

from __future__ import annotations

import posixpath
import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmsvc.puller.layout import BadURIError, cache_dir, model_path

CASES = [
    ("hf://meta-llama/Llama-3.1-8B", None, "hf/meta-llama/Llama-3.1-8B/main"),
    ("hf://meta-llama/Llama-3.1-8B", "v1.0", "hf/meta-llama/Llama-3.1-8B/v1.0"),
    ("hf://org/name", "refs/pr/1", "hf/org/name/refs--pr--1"),
    ("s3://models/llama/8b", None, "s3/models/llama/8b/latest"),
    ("s3://models/llama/8b/", "2024", "s3/models/llama/8b/2024"),
    ("s3://models", None, "s3/models/latest"),
    ("https://host.example:8443/m/x.gguf?sig=abc", None, "https/host.example_8443/m/x.gguf/latest"),
    ("pvc://weights/llama/8b", None, "llama/8b"),
    ("pvc://weights", "ignored", "."),
    ("s3://models/a%20b/c", None, "s3/models/a b/c/latest"),
    ("http://10.0.0.1/m/x.gguf", None, "http/10.0.0.1/m/x.gguf/latest"),
]


@pytest.mark.parametrize(("uri", "revision", "expected"), CASES)
def test_cache_dir(uri: str, revision: str | None, expected: str) -> None:
    assert cache_dir(uri, revision) == expected


def test_model_path_joins_under_dest() -> None:
    assert model_path("hf://o/n", None, "/models") == "/models/hf/o/n/main"
    assert model_path("pvc://c", None, "/models") == "/models"


@pytest.mark.parametrize(
    ("uri", "revision", "message"),
    [
        ("ftp://x/y", None, "unsupported model URI"),
        ("hf://a/b/c", None, "hf://ORG/NAME"),
        ("hf://gpt2", None, "hf://ORG/NAME"),
        ("hf://a/..", None, "hf://ORG/NAME"),
        ("s3://b1/x/../../etc", None, "no '.' or '..' segments"),
        ("s3://b1/x/%2e%2e/etc", None, "s3://BUCKET/PREFIX"),
        ("s3://b1/x/..%2f..%2fetc", None, "s3://BUCKET/PREFIX"),
        ("s3://UPPER/x", None, "s3://BUCKET/PREFIX"),
        ("https://host", None, "https://HOST/PATH"),
        ("https://h/p\n", None, "https://HOST/PATH"),
        ("gs://bucket/x", None, "AWS_ENDPOINT_URL=https://storage.googleapis.com"),
        ("file:///opt/m", None, "pvc://CLAIM/PATH"),
        ("hf://o/n", "../../etc", "revision"),
        ("hf://o/n", "bad rev", "revision"),
    ],
)
def test_bad_input_says_what_to_change(uri: str, revision: str | None, message: str) -> None:
    with pytest.raises(BadURIError, match=re.escape(message)):
        cache_dir(uri, revision)


_seg = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True).filter(
    lambda s: ".." not in s
)
_rev = st.one_of(
    st.none(),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,12}", fullmatch=True).filter(
        lambda s: ".." not in s
    ),
)


@given(org=_seg, name=_seg, revision=_rev)
def test_hf_dirs_are_relative_normalised_and_deterministic(
    org: str, name: str, revision: str | None
) -> None:
    d = cache_dir(f"hf://{org}/{name}", revision)
    assert d == cache_dir(f"hf://{org}/{name}", revision)
    assert not d.startswith("/")
    assert posixpath.normpath(d) == d
    assert d.split("/")[:3] == ["hf", org, name]
    assert len(d.split("/")) == 4


@given(a=_rev, b=_rev)
def test_distinct_revisions_get_distinct_dirs(a: str | None, b: str | None) -> None:
    da, db = cache_dir("hf://o/n", a), cache_dir("hf://o/n", b)
    same = (a or "main").replace("/", "--") == (b or "main").replace("/", "--")
    assert (da == db) == same


def test_layout_imports_only_the_standard_library() -> None:
    code = (
        "import sys; import llmsvc.puller.layout; "
        "heavy = ('boto3', 'botocore', 'huggingface_hub', 'httpx2', 'pydantic'); "
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout
