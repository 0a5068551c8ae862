"""The subset check that decides whether a live object needs an apply."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from llmsvc.plan.diff import satisfies
from llmsvc.plan.quantity import parse_quantity

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
        "cpu 0.5 is the server's 500m",
        {"requests": {"cpu": "500m"}},
        {"requests": {"cpu": "0.5"}},
        True,
    ),
    (
        "1024Mi is the server's 1Gi",
        {"limits": {"memory": "1Gi"}},
        {"limits": {"memory": "1024Mi"}},
        True,
    ),
    ("int cpu is the server's string", {"limits": {"cpu": "2"}}, {"limits": {"cpu": 2}}, True),
    (
        "GPU names hold dots",
        {"limits": {"nvidia.com/gpu": "8"}},
        {"limits": {"nvidia.com/gpu": "8.0"}},
        True,
    ),
    ("1e3 is 1k", {"requests": {"memory": "1k"}}, {"requests": {"memory": "1e3"}}, True),
    (
        "sizeLimit",
        {"emptyDir": {"sizeLimit": "1Gi"}},
        {"emptyDir": {"sizeLimit": "1073741824"}},
        True,
    ),
    (
        "HPA target",
        {"target": {"averageValue": "500m"}},
        {"target": {"averageValue": "0.5"}},
        True,
    ),
    ("a changed quantity", {"requests": {"cpu": "500m"}}, {"requests": {"cpu": "0.6"}}, False),
    ("1Gi is not 1G", {"limits": {"memory": "1Gi"}}, {"limits": {"memory": "1G"}}, False),
    (
        "other strings are compared as written",
        {"env": {"value": "500m"}},
        {"env": {"value": "0.5"}},
        False,
    ),
    ("args are not quantities", {"args": ["1k"]}, {"args": ["1000"]}, False),
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


QUANTITIES = [
    ("0.5", Decimal("0.5")),
    ("500m", Decimal("0.5")),
    ("1Gi", Decimal(2**30)),
    ("1024Mi", Decimal(2**30)),
    ("1.5k", Decimal(1500)),
    ("12e-1", Decimal("1.2")),
    ("1E3", Decimal(1000)),
    ("+.5", Decimal("0.5")),
    ("100n", Decimal("1E-7")),
    (8, Decimal(8)),
]


@pytest.mark.parametrize(("text", "value"), QUANTITIES, ids=[str(q[0]) for q in QUANTITIES])
def test_parse_quantity(text: object, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "bad", ["", "Gi", "1 Gi", "1gi", "0x10", "1.2.3", "1Gib", "e3", True, None, 1.5]
)
def test_not_a_quantity(bad: object) -> None:
    assert parse_quantity(bad) is None
