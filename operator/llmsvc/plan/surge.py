"""Surge during rollouts: bring one extra group up on the new template before replacing old ones.

While some group runs an outdated pod template, the planner asks for group ``replicas`` (one past
the last) with the new template. Only when it is Ready are the old groups replaced, one at a
time, so serving capacity never drops below ``spec.replicas`` groups. When the surge group cannot
be scheduled (no spare GPUs), it is given up for the rest of this rollout and groups are replaced
one at a time instead. The surge group goes away when no group is outdated (or on a cordoned
node) any more and the last replaced group is Ready again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmsvc.plan.groups import GroupView


@dataclass(frozen=True)
class Surge:
    """The surge decision for one reconcile."""

    index: int
    rolling: bool = False
    blocked: bool = False
    ready: bool = False
    stale: bool = False  # the group at the surge index runs an old template (after a scale-down)

    @property
    def wanted(self) -> bool:
        """Whether the surge group should exist now."""
        return self.rolling and not self.blocked

    def allows_replacing(self) -> bool:
        """Whether a Ready outdated group may be taken down now."""
        return self.blocked or self.ready


def assess(
    views: Sequence[GroupView], surge: GroupView, was_blocked: bool, *, recovering: bool = False
) -> Surge:
    """Decide the surge from the regular groups' views and the surge group's own view.

    ``recovering`` says a regular group is coming back up (not Ready, not given up): a surge
    group that runs the current template then stays until it is Ready, since the group just
    replaced is not serving yet."""
    covering = recovering and bool(surge.live) and not surge.outdated and not was_blocked
    if not covering and not any(v.needs_replacing for v in views):
        return Surge(surge.index)
    blocked = was_blocked or bool(surge.unschedulable)
    ready = not blocked and surge.health() == "Ready" and not surge.outdated
    stale = not blocked and surge.outdated and surge.health() != "Terminating"
    return Surge(surge.index, rolling=True, blocked=blocked, ready=ready, stale=stale)
