"""Restart decisions: immediate first restart, exponential backoff, give-up, rollout gating."""

from __future__ import annotations

from datetime import timedelta

import pytest

from llmsvc.api.status import GroupStatus
from llmsvc.plan.groups import GroupView
from llmsvc.plan.pods import format_time, pod_facts
from llmsvc.plan.restarts import RestartPolicy, decide
from tests.plan.fixtures import T0, healthy_group, pod

POLICY = RestartPolicy(max_restarts=3, backoff_base=10, backoff_max=60, window=3600)


def view_of(pods: list[dict[str, object]], revision: str = "rev1") -> GroupView:
    facts = tuple(f for f in (pod_facts(p) for p in pods) if f is not None)
    return GroupView(0, 2, facts, revision)


BROKEN = view_of([pod(0, 0, restarts=1), pod(0, 1)])


def previous(restarts: int, ago: float, phase: str = "Restarting") -> GroupStatus:
    return GroupStatus(
        index=0,
        restarts=restarts,
        phase=phase,
        last_restart_time=format_time(T0 - timedelta(seconds=ago)),
    )


@pytest.mark.parametrize(("restarts", "expected"), [(0, 0), (1, 10), (2, 20), (3, 40), (9, 60)])
def test_backoff_doubles_and_caps(restarts: int, expected: float) -> None:
    assert POLICY.backoff(restarts) == expected


def test_first_failure_restarts_at_once() -> None:
    d = decide(BROKEN, None, POLICY, T0)
    assert d.action == "restart"
    assert d.status.restarts == 1
    assert d.status.last_restart_time == format_time(T0)
    assert d.status.phase == "Restarting"


@pytest.mark.parametrize(
    ("restarts", "ago", "action"),
    [(1, 5, "wait"), (1, 11, "restart"), (2, 15, "wait"), (2, 25, "restart"), (3, 999, "give-up")],
)
def test_backoff_then_give_up(restarts: int, ago: float, action: str) -> None:
    assert decide(BROKEN, previous(restarts, ago), POLICY, T0).action == action


def test_given_up_group_stays_down_until_window_passes_or_spec_changes() -> None:
    failed = previous(3, 100, phase="Failed")
    healthy = view_of(healthy_group(0))
    assert decide(healthy, failed, POLICY, T0).action == "down"
    assert decide(healthy, previous(3, 4000, "Failed"), POLICY, T0).action == "none"
    assert decide(healthy, failed, POLICY, T0, reset=True).action == "none"


def test_window_forgets_old_restarts() -> None:
    d = decide(BROKEN, previous(3, 4000), POLICY, T0)
    assert d.action == "restart"
    assert d.status.restarts == 1


def test_pending_group_is_never_restarted() -> None:
    pending = view_of(
        [pod(0, 0), pod(0, 1, created=timedelta(seconds=60), phase="Pending", ready=False)]
    )
    assert decide(pending, None, POLICY, T0).action == "none"


def test_outdated_ready_group_rolls_only_when_allowed() -> None:
    outdated = view_of(healthy_group(0, revision="old"), revision="new")
    assert decide(outdated, None, POLICY, T0).action == "none"
    assert decide(outdated, None, POLICY, T0, may_roll=True).action == "rollout"


def test_outdated_group_that_is_not_serving_rolls_at_once() -> None:
    starting = view_of([pod(0, 0, revision="old", ready=False), pod(0, 1, revision="old")], "new")
    d = decide(starting, None, POLICY, T0)
    assert d.action == "rollout"
    assert d.status.restarts == 0
