"""Facts read from live Pods and StatefulSets, as small immutable values.

The planner never looks at raw API dicts directly: this module turns them into :class:`PodFacts`
so that the decisions in :mod:`llmsvc.plan.groups` are easy to table-test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GROUP_LABEL = "llmsvc.io/group"
REVISION_LABEL = "controller-revision-hash"

Obj = dict[str, Any]


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp from the API server (``2026-01-02T03:04:05Z``)."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 with second precision, as Kubernetes writes it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PodFacts:
    """What the planner needs to know about one rank's pod."""

    name: str
    group: int
    created: datetime
    terminating: bool
    phase: str
    ready: bool
    scheduled: bool
    unschedulable_message: str
    restarts: int
    revision: str
    node: str = ""  # spec.nodeName once bound


def _condition(pod: Obj, kind: str) -> Obj:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def pod_facts(pod: Obj) -> PodFacts | None:
    """Facts of one pod, or None when it carries no group label (not one of our ranks)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if GROUP_LABEL not in labels:
        return None
    status = pod.get("status") or {}
    scheduled = _condition(pod, "PodScheduled")
    containers = status.get("containerStatuses") or []
    return PodFacts(
        name=str(meta.get("name", "")),
        group=int(labels[GROUP_LABEL]),
        created=parse_time(meta.get("creationTimestamp")) or datetime.now(UTC),
        terminating=bool(meta.get("deletionTimestamp")),
        phase=str(status.get("phase", "Pending")),
        ready=_condition(pod, "Ready").get("status") == "True",
        scheduled=scheduled.get("status") == "True",
        unschedulable_message=str(scheduled.get("message", ""))
        if scheduled.get("reason") == "Unschedulable"
        else "",
        restarts=sum(int(c.get("restartCount", 0)) for c in containers),
        revision=str(labels.get(REVISION_LABEL, "")),
        node=str((pod.get("spec") or {}).get("nodeName") or ""),
    )
