"""Pure scale-to-zero decisions: wake a service at zero, put an idle one to zero.

Like KEDA's activation phase: the HPA (``minReplicas`` at least 1) scales between 1 and N and is
disabled while the service is at zero; the operator moves 0 -> 1 when requests wait, and
1 -> 0 after the queue stayed empty, with nothing in flight, for the idle period. Missing data
never moves anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmsvc.metricsapi.queue import Reading


@dataclass(frozen=True)
class Decision:
    """The replicas to write (None: leave them) and since when the service has been idle."""

    replicas: int | None
    idle_since: float | None


def decide(
    replicas: int,
    min_replicas: int,
    reading: Reading | None,
    *,
    idle_since: float | None,
    now: float,
    idle_seconds: float,
) -> Decision:
    """What the operator does about ``replicas`` given the service's latest queue reading."""
    if min_replicas > 0 or reading is None or reading.value is None:
        return Decision(None, None)
    if replicas == 0:
        return Decision(1 if reading.value > 0 else None, None)
    if replicas > 1 or not reading.idle:
        return Decision(None, None)
    since = now if idle_since is None else idle_since
    if now - since >= idle_seconds:
        return Decision(0, None)
    return Decision(None, since)
