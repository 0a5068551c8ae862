"""Request parsing never fails on odd input except with a 400 that says what to change."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsvc.router.errors import RequestError
from llmsvc.router.requests import priority_of, request_info

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]),
    body=st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64)),
)
def test_any_body_parses_or_is_a_400(path: str, body: bytes) -> None:
    outcome: RequestError | str
    try:
        outcome = request_info(path, body, None).prompt
    except RequestError as err:
        outcome = err
    if isinstance(outcome, RequestError):
        assert outcome.status == 400
        assert outcome.message
    else:
        assert isinstance(outcome, str)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [("hello", "hello"), (["a", "b"], "a\nb"), ([1, 2, 3], "1\n2\n3"), ([[1, 2]], "[1, 2]")],
)
def test_text_prompts_of_every_openai_shape_are_accepted(prompt: Any, expected: str) -> None:
    body = json.dumps({"model": "m", "prompt": prompt}).encode()
    assert request_info("/v1/completions", body, "s1").prompt == expected


def test_chat_prompt_keeps_roles_and_parts() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]},
    ]
    info = request_info("/v1/chat/completions", json.dumps({"messages": messages}).encode(), "k")
    assert info.prompt == "system: be brief\nuser: hi \n"
    assert info.session == "k"


@pytest.mark.parametrize(("value", "expected"), [(None, 0), ("", 0), ("7", 7), ("-2", -2)])
def test_priority_header(value: str | None, expected: int) -> None:
    assert priority_of(value) == expected


def test_a_non_integer_priority_is_a_400() -> None:
    with pytest.raises(RequestError, match="integer"):
        priority_of("urgent")
