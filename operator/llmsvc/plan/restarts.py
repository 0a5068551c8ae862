"""Whole-group restarts with exponential backoff and a give-up limit, decided per group.

The bookkeeping lives in ``status.groups[]`` (``restarts``, ``lastRestartTime``, ``phase`` and
``podUIDs``), so the decision is a pure function of the observed group, its previous status and
the time.

``podUIDs`` remembers the ranks of the group's current start. It lives in the status rather than
in an annotation on the StatefulSet because it is observed state next to the restart bookkeeping
it serves: it is written by the same status patch (no extra write, no new StatefulSet
resourceVersion and watch event each time a rank starts), and it is read with the LLMService, so
every decision needs no other object. Losing it (a status wiped by a restore) only means the next
pass learns the running ranks afresh; it can never cause a restart. A restart, a rollout and a
group left down forget the members: the ranks that come up next are the group's own re-creation,
never a reason for another restart, however far apart they start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from llmsvc.api.status import GroupPhase, GroupStatus
from llmsvc.plan import drain
from llmsvc.plan.groups import GroupView
from llmsvc.plan.pods import format_time, parse_time

Action = Literal["none", "restart", "rollout", "wait", "give-up", "down", "relax"]

_PHASES: dict[str, GroupPhase] = {
    "Pending": "Pending",
    "Starting": "Starting",
    "Ready": "Ready",
    "Broken": "Restarting",
    "Terminating": "Restarting",
}


@dataclass(frozen=True)
class RestartPolicy:
    """How often a broken group may be restarted (``max_restarts`` comes from the spec)."""

    max_restarts: int = 5
    backoff_base: float = 10.0
    backoff_max: float = 300.0
    window: float = 3600.0

    def backoff(self, restarts: int) -> float:
        """Seconds to wait after the ``restarts``-th restart before the next one (0 at first)."""
        if restarts <= 0:
            return 0.0
        return float(min(self.backoff_max, self.backoff_base * 2 ** (restarts - 1)))


@dataclass(frozen=True)
class GroupDecision:
    """What to do with one group, and its status afterwards."""

    action: Action
    status: GroupStatus
    reason: str = ""
    view: GroupView | None = None


def _history(
    previous: GroupStatus | None, policy: RestartPolicy, now: datetime, reset: bool
) -> tuple[int, datetime | None, bool]:
    """(restarts in the current window, last restart, whether the group was given up)."""
    if previous is None:
        return 0, None, False
    last = parse_time(previous.last_restart_time)
    expired = last is not None and (now - last).total_seconds() > policy.window
    if reset or expired:
        return 0, None if expired else last, False
    return previous.restarts, last, previous.phase == "Failed"


def decide(
    view: GroupView,
    previous: GroupStatus | None,
    policy: RestartPolicy,
    now: datetime,
    *,
    reset: bool = False,
    may_roll: bool = False,
) -> GroupDecision:
    """Decide restart, rollout, wait or nothing for one group (the view rides along)."""
    return dataclasses.replace(
        _decide(view, previous, policy, now, reset=reset, may_roll=may_roll), view=view
    )


def _decide(
    view: GroupView,
    previous: GroupStatus | None,
    policy: RestartPolicy,
    now: datetime,
    *,
    reset: bool,
    may_roll: bool,
) -> GroupDecision:
    """Decide restart, rollout, wait or nothing for one group.

    ``reset`` forgets earlier failures (the spec changed); ``may_roll`` allows replacing a Ready
    group that runs an outdated template (the planner grants it to one group at a time).
    """
    restarts, last, given_up = _history(previous, policy, now, reset)
    health = view.health()
    base = GroupStatus(
        index=view.index,
        ready_pods=view.ready_pods,
        restarts=restarts,
        phase=_PHASES[health],
        last_restart_time=format_time(last) if last else None,
        pod_uids=list(view.remembered()),
    )
    if given_up:
        return GroupDecision(
            "down", replace_status(base, phase="Failed", ready_pods=0, pod_uids=[])
        )
    moving = previous.moving_since if previous else None
    if health == "Broken" and moving:  # a drain evicted a rank of the group being moved
        return _rollout(base, "node cordoned")
    if health == "Broken":
        return _broken(view, base, policy, now, last)
    if view.evacuate and health == "Ready" and may_roll:
        return _hand_over(base, moving, now)
    if view.needs_replacing and health != "Terminating" and (health != "Ready" or may_roll):
        return _rollout(base, "new template" if view.outdated else "node cordoned")
    return GroupDecision("none", base)


def _rollout(base: GroupStatus, reason: str) -> GroupDecision:
    """Replace the group's pods (a new template, or off a cordoned node)."""
    return GroupDecision("rollout", replace_status(base, phase="Restarting", pod_uids=[]), reason)


def _hand_over(base: GroupStatus, moving: str | None, now: datetime) -> GroupDecision:
    """Move a Ready group off a cordoned node: relax its budget so that a drain can evict its
    ranks, and delete them itself only once :data:`drain.EVICTION_WINDOW` has passed."""
    since = parse_time(moving)
    if since is None:
        return GroupDecision(
            "relax", replace_status(base, moving_since=format_time(now)), "relaxed"
        )
    if not drain.window_over(since, now):
        return GroupDecision("relax", replace_status(base, moving_since=moving))
    return _rollout(base, "node cordoned")


def _broken(
    view: GroupView, base: GroupStatus, policy: RestartPolicy, now: datetime, last: datetime | None
) -> GroupDecision:
    reason = view.broken_reason()
    if base.restarts >= policy.max_restarts:
        down = replace_status(base, phase="Failed", ready_pods=0, pod_uids=[])
        return GroupDecision("give-up", down, reason)
    elapsed = (now - last).total_seconds() if last else float("inf")
    if elapsed < policy.backoff(base.restarts):
        return GroupDecision("wait", base, reason)
    restarted = replace_status(
        base,
        phase="Restarting",
        restarts=base.restarts + 1,
        last_restart_time=format_time(now),
        pod_uids=[],
    )
    return GroupDecision("restart", restarted, reason)


def replace_status(status: GroupStatus, **changes: object) -> GroupStatus:
    """A copy of a (frozen) group status with some fields changed."""
    return status.model_copy(update=changes)
