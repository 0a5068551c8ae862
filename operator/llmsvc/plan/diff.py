"""Is a live object already what we want? A semantic subset check that needs no write to answer.

The API server adds defaults, normalises quantities and drops empty values, so a live object is
never byte-equal to the desired one. ``satisfies(live, desired)`` is true when every field the
operator sets has the same value live; fields it does not set are ignored. ``mismatches`` names
the fields that differ (logged when the operator re-applies an object).

Quantity fields (resource requests and limits, ``sizeLimit``, HPA targets) are compared by value:
the server stores ``cpu: "0.5"`` as ``500m``, and a spelling difference must not cause an apply on
every resync. Other strings are compared as written, since the server keeps them verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from llmsvc.plan.quantity import same_quantity

# Paths (as mismatches() spells them) whose values are resource.Quantity in the Kubernetes API.
QUANTITY_PATH = re.compile(
    r"\.(?:requests|limits|capacity|overhead)\.[^\[\]]+$"  # resource names may hold dots
    r"|\.sizeLimit$"
    r"|\.target\.(?:averageValue|value)$"
)


def _empty(value: Any) -> bool:
    """Values the API server leaves out of a stored object (omitempty)."""
    return value is None or value is False or value in ("", 0, [], {})


def mismatches(live: Any, desired: Any, path: str = "") -> Iterator[str]:
    """Paths of the values of ``desired`` that ``live`` does not hold."""
    if isinstance(desired, dict):
        yield from _dict_mismatches(live, desired, path)
    elif isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            yield path or "."
        else:
            for i, (a, b) in enumerate(zip(live, desired, strict=True)):
                yield from mismatches(a, b, f"{path}[{i}]")
    elif not _scalar_equal(live, desired) and not (
        QUANTITY_PATH.search(path) and same_quantity(live, desired)
    ):
        yield path or "."


def _dict_mismatches(live: Any, desired: dict[str, Any], path: str) -> Iterator[str]:
    if not isinstance(live, dict):
        yield path or "."
        return
    for key, value in desired.items():
        if key not in live:
            if not _empty(value):
                yield f"{path}.{key}"
        else:
            yield from mismatches(live[key], value, f"{path}.{key}")


def _scalar_equal(live: Any, desired: Any) -> bool:
    if type(live) is not type(desired) and not isinstance(desired, bool):
        return str(live) == str(desired)
    return bool(live == desired)


def satisfies(live: Any, desired: Any) -> bool:
    """True when ``live`` holds every value of ``desired`` (recursively)."""
    return next(mismatches(live, desired), None) is None
