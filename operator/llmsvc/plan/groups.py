"""Assess each group (one StatefulSet of ranks) from its pods: ready, starting, broken or stale.

A rank cannot rejoin a running NCCL world, so a group is healthy only when all of its ranks were
started together and none has failed or restarted since. The checks are stateless, read from the
pods alone:

* a pod in phase Failed, or any engine container with restartCount > 0;
* a pod being deleted while the rest of the group is not (someone deleted one rank);
* ranks whose creation times are further apart than :data:`WAVE_SECONDS` (one rank was replaced
  by the StatefulSet controller after a deletion or eviction).

Pending pods (scheduling, image pulls) are never treated as failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmsvc.plan.pods import PodFacts

# Ranks created further apart than this were not started together.
WAVE_SECONDS = 5.0

Health = Literal["Pending", "Starting", "Ready", "Broken", "Terminating"]


@dataclass(frozen=True)
class GroupView:
    """The observed state of one group."""

    index: int
    expected: int
    pods: tuple[PodFacts, ...]
    update_revision: str
    evacuate: bool = False  # a rank runs on a cordoned node (plan/drain.py)

    @property
    def live(self) -> tuple[PodFacts, ...]:
        """Pods not being deleted."""
        return tuple(p for p in self.pods if not p.terminating)

    @property
    def ready_pods(self) -> int:
        """Ranks that are Ready and not being deleted."""
        return sum(1 for p in self.live if p.ready)

    @property
    def unschedulable(self) -> str:
        """The scheduler's message for a pending rank, or ''."""
        return next((p.unschedulable_message for p in self.live if p.unschedulable_message), "")

    @property
    def outdated(self) -> bool:
        """Some rank runs an older pod template than the StatefulSet's current one."""
        return bool(self.update_revision) and any(
            p.revision and p.revision != self.update_revision for p in self.pods
        )

    @property
    def needs_replacing(self) -> bool:
        """The group must move to a new set of pods: outdated template, or a cordoned node."""
        return self.outdated or self.evacuate

    def broken_reason(self) -> str:
        """Why the whole group must be restarted, or '' when it need not be."""
        live = self.live
        if any(p.phase == "Failed" for p in live):
            return "a rank failed"
        if any(p.restarts > 0 for p in live):
            return "a rank's container restarted"
        if live and len(live) < len(self.pods):
            return "a rank was deleted"
        created = [p.created for p in live]
        if len(created) > 1 and (max(created) - min(created)).total_seconds() > WAVE_SECONDS:
            return "a rank was replaced"
        return ""

    def health(self) -> Health:
        """One word for the group's state, before any restart decision."""
        live = self.live
        if self.pods and not live:
            return "Terminating"
        if any(p.phase == "Pending" for p in live):
            return "Pending"
        if self.broken_reason():
            return "Broken"
        if len(live) == self.expected and self.ready_pods == self.expected:
            return "Ready"
        return "Starting"


def _name(pod: PodFacts) -> str:
    return pod.name


def group_views(
    pods: list[PodFacts], expected: int, revisions: dict[int, str], indices: list[int]
) -> list[GroupView]:
    """A view per group index in ``indices``, with that group's pods and update revision."""
    by_group: dict[int, list[PodFacts]] = {i: [] for i in indices}
    for pod in pods:
        if pod.group in by_group:
            by_group[pod.group].append(pod)
    return [
        GroupView(i, expected, tuple(sorted(by_group[i], key=_name)), revisions.get(i, ""))
        for i in indices
    ]
