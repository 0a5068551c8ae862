"""Leader election decisions (pure): who creates, takes over, renews or waits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llmsvc.controller.leader import Observation, Timing, decide, lease_spec

TIMING = Timing(lease_duration=15, renew_deadline=10, retry=2)
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def lease(
    holder: str, renew: str = "2026-01-01T11:59:59.000000Z", duration: int = 15
) -> dict[str, Any]:
    spec = {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": duration}
    return {"metadata": {"resourceVersion": "7"}, "spec": spec}


def test_no_lease_is_created_and_own_lease_is_renewed() -> None:
    assert decide(None, "a", 0, TIMING) == "create"
    assert decide(lease("a"), "a", 100, TIMING) == "renew"


def test_a_live_holder_is_waited_for_until_its_record_is_stale_for_the_lease_duration() -> None:
    assert decide(lease("b"), "a", 14.9, TIMING) == "wait"
    assert decide(lease("b"), "a", 15, TIMING) == "take"
    assert decide(lease("b", duration=60), "a", 30, TIMING) == "wait"  # the holder's duration wins
    assert decide(lease(""), "a", 0, TIMING) == "take"  # released on shutdown


def test_observation_measures_staleness_by_the_local_clock() -> None:
    seen = Observation()
    assert seen.see(lease("b", renew="t1"), now=100.0) == 0
    assert seen.see(lease("b", renew="t1"), now=110.0) == 10
    assert seen.see(lease("b", renew="t2"), now=111.0) == 0  # renewed: the clock restarts
    assert seen.see(None, now=112.0) == 0


def test_lease_spec_counts_transitions_and_keeps_the_acquire_time_while_held() -> None:
    first = lease_spec("a", TIMING, NOW, None)
    assert first["holderIdentity"] == "a"
    assert first["leaseTransitions"] == 0
    assert first["leaseDurationSeconds"] == 15
    renewed = lease_spec("a", TIMING, NOW.replace(second=30), {"spec": first})
    assert renewed["acquireTime"] == first["acquireTime"]
    assert renewed["renewTime"] != first["renewTime"]
    taken = lease_spec("b", TIMING, NOW.replace(second=40), {"spec": renewed})
    assert taken["leaseTransitions"] == 1
    assert taken["acquireTime"] == "2026-01-01T12:00:40.000000Z"
