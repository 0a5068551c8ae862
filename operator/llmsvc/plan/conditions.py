"""Conditions in the metav1.Condition shape, with transition times that move only on change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from llmsvc.api.status import Condition
from llmsvc.plan.pods import format_time


@dataclass(frozen=True)
class Verdict:
    """A condition's new value before its transition time is settled."""

    type: str
    status: bool
    reason: str
    message: str = ""


def settle(
    verdicts: Sequence[Verdict],
    previous: Sequence[Condition],
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Conditions for ``verdicts``, keeping each previous lastTransitionTime whose status held."""
    before = {c.type: c for c in previous}
    result = []
    for v in verdicts:
        status = "True" if v.status else "False"
        old = before.get(v.type)
        since = old.last_transition_time if old and old.status == status else format_time(now)
        result.append(
            Condition(
                type=v.type,
                status=status,
                reason=v.reason,
                message=v.message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    return result
