"""Scale to zero and back: when the operator moves a service between 0 and 1 replicas."""

from __future__ import annotations

import pytest

from llmsvc.metricsapi.activation import Decision, decide
from llmsvc.metricsapi.queue import Reading

IDLE = Reading(0.0, 0.0)
BUSY = Reading(0.0, 0.0, active=1.0)
WAITING = Reading(3.0, 0.0)
MISSING = Reading(None, 0.0, ("router pod x: scrape failed",))

CASES = [
    # (replicas, minReplicas, reading, idle since, now, expected)
    (0, 0, WAITING, None, 100.0, Decision(1, None)),  # wake
    (0, 0, IDLE, None, 100.0, Decision(None, None)),  # stay asleep
    (0, 0, MISSING, None, 100.0, Decision(None, None)),  # missing data never wakes
    (0, 0, None, None, 100.0, Decision(None, None)),  # unknown service
    (1, 0, IDLE, None, 100.0, Decision(None, 100.0)),  # idle clock starts
    (1, 0, IDLE, 100.0, 159.0, Decision(None, 100.0)),  # not long enough
    (1, 0, IDLE, 100.0, 160.0, Decision(0, None)),  # idle period over: to zero
    (1, 0, BUSY, 100.0, 160.0, Decision(None, None)),  # a request in flight resets the clock
    (1, 0, WAITING, 100.0, 160.0, Decision(None, None)),
    (1, 0, MISSING, 100.0, 160.0, Decision(None, None)),  # missing data never idles
    (2, 0, IDLE, 100.0, 160.0, Decision(None, None)),  # the HPA brings it to 1 first
    (0, 1, WAITING, None, 100.0, Decision(None, None)),  # minReplicas 1: not ours
    (1, 1, IDLE, 100.0, 1e9, Decision(None, None)),
]


@pytest.mark.parametrize(("replicas", "minimum", "reading", "since", "now", "expected"), CASES)
def test_decide(
    replicas: int,
    minimum: int,
    reading: Reading | None,
    since: float | None,
    now: float,
    expected: Decision,
) -> None:
    assert (
        decide(replicas, minimum, reading, idle_since=since, now=now, idle_seconds=60) == expected
    )
