"""Restart decisions: immediate first restart, exponential backoff, give-up, rollout gating."""

from __future__ import annotations

from datetime import timedelta

import pytest

from llmsvc.api.status import GroupStatus
from llmsvc.plan.groups import GroupView
from llmsvc.plan.pods import format_time
from llmsvc.plan.restarts import RestartPolicy, decide
from tests.plan.fixtures import T0, facts, healthy_group, pod

POLICY = RestartPolicy(max_restarts=3, backoff_base=10, backoff_max=60, window=3600)


def view_of(
    pods: list[dict[str, object]], revision: str = "rev1", members: frozenset[str] = frozenset()
) -> GroupView:
    return GroupView(0, 2, tuple(facts(pods)), revision, members)


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


STARTED = frozenset({"pod-0-0", "pod-0-1"})


def test_healthy_group_remembers_its_ranks() -> None:
    d = decide(view_of(healthy_group(0)), None, POLICY, T0)
    assert d.status.pod_uids == ["pod-0-0", "pod-0-1"]


def test_worker_replaced_two_seconds_after_start_restarts_the_group() -> None:
    replaced = view_of(
        [pod(0, 0), pod(0, 1, uid="new", created=timedelta(seconds=2))], members=STARTED
    )
    d = decide(replaced, None, POLICY, T0 + timedelta(seconds=3))
    assert (d.action, d.reason) == ("restart", "a rank was replaced")
    assert d.status.pod_uids == []  # whatever comes up next is the group's own re-creation


def test_restarted_group_recreated_slowly_is_not_restarted_again() -> None:
    after = previous(1, 0)  # restarted at T0, members forgotten
    first = view_of([pod(0, 0, uid="a"), pod(0, 1, terminating=True)], members=frozenset())
    d = decide(first, after, POLICY, T0 + timedelta(seconds=1))
    assert d.action == "none"
    assert d.status.pod_uids == ["a"]
    late = view_of(
        [pod(0, 0, uid="a"), pod(0, 1, uid="b", created=timedelta(seconds=40))],
        members=frozenset(d.status.pod_uids),
    )
    d = decide(late, d.status, POLICY, T0 + timedelta(seconds=41))
    assert (d.action, d.status.restarts) == ("none", 1)
    assert d.status.pod_uids == ["a", "b"]


def test_waiting_out_the_backoff_keeps_the_lost_member_in_mind() -> None:
    replaced = view_of([pod(0, 0), pod(0, 1, uid="new")], members=STARTED)
    d = decide(replaced, previous(1, 5), POLICY, T0)
    assert d.action == "wait"
    assert d.status.pod_uids == sorted(STARTED)


@pytest.mark.parametrize("action", ["rollout", "down"])
def test_rollouts_and_groups_left_down_forget_their_ranks(action: str) -> None:
    if action == "rollout":
        v = view_of(healthy_group(0, revision="old"), revision="new", members=STARTED)
        d = decide(v, None, POLICY, T0, may_roll=True)
    else:
        d = decide(view_of(healthy_group(0)), previous(3, 100, "Failed"), POLICY, T0)
    assert (d.action, d.status.pod_uids) == (action, [])
