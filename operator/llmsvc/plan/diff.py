"""Is a live object already what we want? A semantic subset check that needs no write to answer.

The API server adds defaults, normalises quantities and drops empty values, so a live object is
never byte-equal to the desired one. ``satisfies(live, desired)`` is true when every field the
operator sets has the same value live; fields it does not set are ignored.
"""

from __future__ import annotations

from typing import Any

_EMPTY: tuple[Any, ...] = (None, "", [], {})


def satisfies(live: Any, desired: Any) -> bool:
    """True when ``live`` holds every value of ``desired`` (recursively)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(_field_ok(live, key, value) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return False
        return all(satisfies(a, b) for a, b in zip(live, desired, strict=True))
    if type(live) is not type(desired) and not isinstance(desired, bool):
        return str(live) == str(desired)
    return bool(live == desired)


def _field_ok(live: dict[str, Any], key: str, value: Any) -> bool:
    if key not in live:
        return value in _EMPTY
    return satisfies(live[key], value)
