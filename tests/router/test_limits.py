"""The parse-cost bound: exact on any JSON, cheap on huge bodies; a router's RSS stays bounded."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsvc.router.errors import RequestError
from llmsvc.router.jsonscan import JsonLimits, check, measure
from tests.router.test_requests import JSON

MIB = 1024 * 1024
LIMITS = JsonLimits()
NASTY_TEXT = st.text(alphabet=st.sampled_from(['"', "\\", "[", "{", ",", "a", "é", "😀"]))
NASTY_JSON = st.recursive(
    st.none() | st.integers() | NASTY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NASTY_TEXT, inner, max_size=4),
    max_leaves=30,
)


def objects(value: Any) -> int:
    """How many Python objects ``json.loads`` builds for ``value`` (keys included)."""
    if isinstance(value, list):
        return 1 + sum(objects(v) for v in value)
    if isinstance(value, dict):
        return 1 + sum(1 + objects(v) for v in value.values())
    return 1


def nesting(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((nesting(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((nesting(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=400, deadline=None)
@given(value=st.one_of(JSON, NASTY_JSON), ascii_only=st.booleans())
def test_measure_is_exact_on_depth_and_bounds_the_objects(value: Any, ascii_only: bool) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    values, depth = measure(body)
    assert depth == nesting(value)
    assert objects(value) <= 2 * values + 1


def test_the_issue_body_is_refused_before_parsing() -> None:
    body = b'{"messages":[' + b",".join([b"{}"] * (16 * MIB // 3 - 10)) + b"]}"
    started = time.perf_counter()
    with pytest.raises(RequestError) as info:
        check(body, LIMITS)
    assert info.value.status == 413
    assert "--max-json-values" in info.value.message
    assert time.perf_counter() - started < 2  # json.loads alone: several seconds, 400+ MiB


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"[" * 65 + b"]" * 65, 400),
        (b'{"p":"' + b"[" * 1000 + b'"}', None),  # brackets inside a string are text
        (b'{"p":"\\"' + b"[" * 1000 + b'"}', None),  # ... also after an escaped quote
        (b'{"p":"\\\\"' + b",[" * 300_000 + b"0" + b"]" * 300_000 + b"}", 413),
        (b'{"p":"' + b"a,b," * (4 * MIB) + b'"}', None),  # a 16 MiB CSV prompt is fine
        (b'["' + b'","'.join([b"x"] * 300_000) + b'"]', 413),  # strings are values too
    ],
    ids=["deep", "text-brackets", "escaped-quote", "escaped-backslash", "csv", "strings"],
)
def test_check_counts_structure_outside_strings_only(body: bytes, status: int | None) -> None:
    if status is None:
        check(body, LIMITS)
        return
    with pytest.raises(RequestError) as info:
        check(body, LIMITS)
    assert info.value.status == status
