"""Facts read from live Pods and StatefulSets, as small immutable values.

The planner never looks at raw API dicts directly: this module turns them into :class:`PodFacts`
so that the decisions in :mod:`llmsvc.plan.groups` are easy to table-test.

A pod is a rank of group ``g`` only when its controller ownerReference points at the UID of the
group's StatefulSet: labels alone prove nothing (anyone can label a pod ``llmsvc.io/group=0``), so
foreign or malformed pods are ignored instead of being counted, restarted or parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
    uid: str
    group: int
    terminating: bool
    phase: str
    ready: bool
    scheduled: bool
    unschedulable_message: str
    restarts: int
    revision: str
    pull_error: str = ""
    pull_state: str = "pending"  # one of PULL_STATES
    node: str = ""  # spec.nodeName once bound
    # Since when the scheduler has refused it (PodScheduled=False/Unschedulable), else None.
    unschedulable_since: datetime | None = None


def _condition(pod: Obj, kind: str) -> Obj:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


PULLER = "pull"  # the init container that downloads the weights
_MAX_MESSAGE = 300


def _pull_error(status: Obj) -> str:
    """The puller's last failure (last line of its termination message), '' while it has none.

    The puller's container uses ``terminationMessagePolicy: FallbackToLogsOnError``, so the
    message is the tail of its log, whose last line is the error.
    """
    for container in status.get("initContainerStatuses") or []:
        if container.get("name") != PULLER:
            continue
        state = (container.get("state") or {}).get("terminated")
        if state and not state.get("exitCode"):
            return ""  # it succeeded since
        last = state or (container.get("lastState") or {}).get("terminated")
        if last and last.get("exitCode"):
            lines = [ln for ln in str(last.get("message") or "").splitlines() if ln.strip()]
            text = (
                lines[-1] if lines else f"{last.get('reason', 'Error')} (exit {last['exitCode']})"
            )
            return text.split(" ERROR ", 1)[-1].strip()[:_MAX_MESSAGE]
    return ""


PULL_STATES = ("pending", "running", "failed", "done")


def _pull_state(status: Obj, error: str) -> str:
    """Where the rank's weight pull is: not started, running, failed (also while it retries
    after a failure, as Degraded=PullFailed says), or done."""
    puller: Obj = next(
        (c for c in status.get("initContainerStatuses") or [] if c.get("name") == PULLER), {}
    )
    state = puller.get("state") or {}
    if not puller and status.get("phase") in ("Running", "Succeeded"):
        return "done"  # past its init containers (a status without them, as in old records)
    if "terminated" in state and not (state["terminated"] or {}).get("exitCode"):
        return "done"
    if error:
        return "failed"
    return "running" if "running" in state else "pending"


def controller_uid(obj: Obj) -> str:
    """The UID of ``obj``'s controller (its ownerReference with ``controller: true``), or ''."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    owner = next((r for r in refs if isinstance(r, dict) and r.get("controller")), {})
    return str(owner.get("uid") or "")


def pod_facts(pod: Obj, groups: Mapping[str, int]) -> PodFacts | None:
    """Facts of one pod, or None when it is not a rank of one of our groups.

    ``groups`` maps the UID of each group's StatefulSet to the group's index; the pod belongs to
    the group whose StatefulSet controls it.
    """
    group = groups.get(controller_uid(pod))
    if group is None:
        return None
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = pod.get("status") or {}
    scheduled = _condition(pod, "PodScheduled")
    unschedulable = scheduled.get("reason") == "Unschedulable"
    created = parse_time(meta.get("creationTimestamp")) or datetime.now(UTC)
    containers = status.get("containerStatuses") or []
    return PodFacts(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        group=group,
        terminating=bool(meta.get("deletionTimestamp")),
        phase=str(status.get("phase", "Pending")),
        ready=_condition(pod, "Ready").get("status") == "True",
        scheduled=scheduled.get("status") == "True",
        unschedulable_message=str(scheduled.get("message", "")) if unschedulable else "",
        restarts=sum(int(c.get("restartCount", 0)) for c in containers),
        revision=str(labels.get(REVISION_LABEL, "")),
        pull_error=(error := _pull_error(status)),
        pull_state=_pull_state(status, error),
        node=str((pod.get("spec") or {}).get("nodeName") or ""),
        unschedulable_since=(parse_time(scheduled.get("lastTransitionTime")) or created)
        if unschedulable
        else None,
    )
