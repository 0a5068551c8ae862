"""Assess each group (one StatefulSet of ranks) from its pods: ready, starting, broken or stale.

A rank cannot rejoin a running NCCL world, so a group is healthy only when all of its ranks were
started together and none has failed, restarted or left since. The checks:

* a pod in phase Failed, or any engine container with restartCount > 0;
* a member left: the operator remembers the UIDs of the group's ranks (``status.groups[].podUIDs``,
  see :mod:`llmsvc.plan.restarts`). When one of them is gone or being deleted while another still
  runs, the survivors belong to a world that no longer exists, however soon or late it happened.

Ranks the operator has not seen before simply join the remembered set. When every remembered rank
is gone at once (the operator's own restart, a deleted StatefulSet, a lost node pool), the new
ranks start a new world together and nothing needs restarting. Pending pods are never failures,
but a world that lost a member is broken even while its replacement is still pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from llmsvc.plan.pods import PodFacts

Health = Literal["Pending", "Starting", "Ready", "Broken", "Terminating"]


@dataclass(frozen=True)
class GroupView:
    """The observed state of one group."""

    index: int
    expected: int
    pods: tuple[PodFacts, ...]
    update_revision: str
    members: frozenset[str] = field(default_factory=frozenset)  # remembered rank pod UIDs
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
    def pull_error(self) -> str:
        """The last error of a rank's weight puller, or ''."""
        return next((p.pull_error for p in self.live if p.pull_error), "")

    @property
    def unschedulable_since(self) -> datetime | None:
        """When the longest-refused rank was first refused by the scheduler, or None."""
        times = [p.unschedulable_since for p in self.live if p.unschedulable_since]
        return min(times) if times else None

    @property
    def outdated(self) -> bool:
        """Some rank runs an older pod template than the StatefulSet's current one."""
        return bool(self.update_revision) and any(
            p.revision and p.revision != self.update_revision for p in self.pods
        )

    def _lost(self) -> str:
        """Why a remembered rank counts as lost while another still runs, or ''."""
        running = {p.uid for p in self.live}
        lost = self.members - running
        if not lost or not self.members & running:
            return ""
        deleting = any(p.uid in lost for p in self.pods)
        return "a rank was deleted" if deleting else "a rank was replaced"

    def remembered(self) -> tuple[str, ...]:
        """The rank pod UIDs to remember after this observation (sorted, for a stable status).

        A broken world keeps its old members until it is restarted; otherwise the running ranks
        are the members (new ones join, a wholly replaced set starts a new world)."""
        if self._lost():
            return tuple(sorted(self.members))
        return tuple(sorted(p.uid for p in self.live if p.uid))

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
        return self._lost()

    def health(self) -> Health:
        """One word for the group's state, before any restart decision."""
        live = self.live
        if self.pods and not live:
            return "Terminating"
        if self._lost():
            return "Broken"
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
    pods: list[PodFacts],
    expected: int,
    revisions: dict[int, str],
    indices: list[int],
    members: dict[int, frozenset[str]] | None = None,
) -> list[GroupView]:
    """A view per group index in ``indices``: its pods, update revision and remembered ranks."""
    by_group: dict[int, list[PodFacts]] = {i: [] for i in indices}
    for pod in pods:
        if pod.group in by_group:
            by_group[pod.group].append(pod)
    remembered = members or {}
    return [
        GroupView(
            i,
            expected,
            tuple(sorted(by_group[i], key=_name)),
            revisions.get(i, ""),
            remembered.get(i, frozenset()),
        )
        for i in indices
    ]
