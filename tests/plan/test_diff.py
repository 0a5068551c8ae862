"""The subset check that decides whether a live object needs an apply."""

from __future__ import annotations

from typing import Any

import pytest

from llmsvc.plan.diff import satisfies

CASES: list[tuple[str, Any, Any, bool]] = [
    ("identical", {"a": 1}, {"a": 1}, True),
    ("server defaults ignored", {"a": 1, "b": 2}, {"a": 1}, True),
    ("changed value", {"a": 2}, {"a": 1}, False),
    ("missing key", {}, {"a": 1}, False),
    ("empty desired list may be absent live", {}, {"tolerations": []}, True),
    ("empty desired dict may be absent live", {}, {"affinity": {}}, True),
    ("false bool may be absent live (omitempty)", {}, {"readOnly": False}, True),
    ("true bool may not be absent live", {}, {"readOnly": True}, False),
    ("quantity normalised to string", {"gpu": "8"}, {"gpu": 8}, True),
    ("list order matters", {"l": [1, 2]}, {"l": [2, 1]}, False),
    ("list length matters", {"l": [1, 2, 3]}, {"l": [1, 2]}, False),
    (
        "nested defaults ignored",
        {"p": [{"port": 80, "protocol": "TCP"}]},
        {"p": [{"port": 80}]},
        True,
    ),
    ("bool is not a string", {"x": "True"}, {"x": True}, False),
    (
        "replicas drift detected",
        {"spec": {"replicas": 5, "x": 1}},
        {"spec": {"replicas": 2}},
        False,
    ),
]


@pytest.mark.parametrize(
    ("live", "desired", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_satisfies(live: Any, desired: Any, expected: bool) -> None:
    assert satisfies(live, desired) is expected
