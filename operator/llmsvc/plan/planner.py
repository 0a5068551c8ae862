"""The whole reconcile decision: desired children + observed state -> writes and the new status.

``plan`` is pure: it receives what the controller observed (children, pods), the rendered desired
children and the time, and returns a :class:`Plan` saying exactly which objects to apply, which
to delete, which groups to restart and what the status becomes. The controller executes it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmsvc.api import LLMService
from llmsvc.api.status import GroupStatus
from llmsvc.plan import drain
from llmsvc.plan.diff import satisfies
from llmsvc.plan.groups import GroupView, group_views
from llmsvc.plan.pods import pod_facts
from llmsvc.plan.restarts import GroupDecision, RestartPolicy, decide
from llmsvc.plan.status import build_status
from llmsvc.plan.surge import Surge, assess
from llmsvc.render import names

Obj = dict[str, Any]
Key = tuple[str, str]  # (kind, name)


@dataclass(frozen=True)
class Event:
    """An Event to post on the LLMService."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    """Everything one reconcile will write; empty lists and ``status is None`` mean no writes."""

    apply: list[Obj] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)
    restart_groups: list[int] = field(default_factory=list)
    status: Obj | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def writes(self) -> int:
        """API write requests this plan needs (a group restart deletes its pods in one call)."""
        return len(self.apply) + len(self.delete) + len(self.restart_groups) + bool(self.status)


def key(obj: Obj) -> Key:
    """(kind, name) of a manifest."""
    return str(obj["kind"]), str(obj["metadata"]["name"])


def owner_reference(svc: LLMService) -> Obj:
    """The controller ownerReference every child carries (garbage collection on delete)."""
    return {
        "apiVersion": svc.api_version,
        "kind": svc.kind,
        "name": svc.name,
        "uid": svc.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_by(obj: Obj, uid: str | None) -> bool:
    """Whether ``obj`` has an ownerReference to the object with ``uid``."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return bool(uid) and any(ref.get("uid") == uid for ref in refs)


def _group_index(svc: LLMService, obj: Obj) -> int:
    labels = obj.get("metadata", {}).get("labels") or {}
    return int(labels.get(names.LABEL_GROUP, -1)) if obj["kind"] == "StatefulSet" else -1


def _may_roll(views: Sequence[GroupView], surge: Surge) -> int | None:
    """The one Ready-but-outdated group allowed to roll now: only while every group is Ready and
    the surge group is Ready (or could not be scheduled)."""
    if not views or not surge.allows_replacing() or any(v.health() != "Ready" for v in views):
        return None
    return next((v.index for v in views if v.needs_replacing), None)


@dataclass(frozen=True)
class Groups:
    """The per-group decisions and the surge decision of one reconcile."""

    decisions: list[GroupDecision]
    surge: Surge


def decide_groups(
    svc: LLMService,
    live: dict[Key, Obj],
    pods: list[Obj],
    now: datetime,
    policy: RestartPolicy,
    *,
    cordoned: frozenset[str] = frozenset(),
) -> Groups:
    """A decision per group index 0..replicas-1, and whether a surge group is wanted."""
    replicas = svc.spec.replicas
    indices = [*range(replicas), replicas]  # the last one is the surge group's
    revisions = {g: _update_revision(live, svc.name, g) for g in indices}
    facts = [f for f in (pod_facts(p) for p in pods) if f is not None]
    *views, surge_view = group_views(facts, svc.spec.parallelism.nodes, revisions, indices)
    views = drain.mark(views, cordoned)
    surge = assess(views, surge_view, was_blocked=bool(svc.status.surge_blocked))
    previous = {g.index: g for g in svc.status.groups}
    reset = svc.status.observed_generation != svc.metadata.generation
    policy = dataclasses.replace(policy, max_restarts=svc.spec.restart.max_group_restarts)
    rolling = _may_roll(views, surge)
    decisions = [
        decide(v, previous.get(v.index), policy, now, reset=reset, may_roll=v.index == rolling)
        for v in views
    ]
    return Groups(decisions, surge)


def _update_revision(live: dict[Key, Obj], name: str, g: int) -> str:
    sts = live.get(("StatefulSet", names.statefulset(name, g))) or {}
    return str(sts.get("status", {}).get("updateRevision", ""))


def _desired(
    svc: LLMService, rendered: list[Obj], decisions: list[GroupDecision], surge: Obj | None
) -> list[Obj]:
    down = {
        names.statefulset(svc.name, d.status.index) for d in decisions if d.status.phase == "Failed"
    }
    result = []
    for original in [*rendered, *([surge] if surge else [])]:
        obj = copy.deepcopy(original)
        obj["metadata"]["ownerReferences"] = [owner_reference(svc)]
        if obj["kind"] == "StatefulSet" and obj["metadata"]["name"] in down:
            obj["spec"]["replicas"] = 0
        result.append(obj)
    return result


# Pod spec fields the operator sets only sometimes (gang scheduling on or off): the subset check
# cannot see that one was dropped, so a live template still holding one is re-applied.
DROPPABLE = ("schedulingGroup",)


def _dropped(current: Obj, obj: Obj) -> bool:
    if obj["kind"] != "StatefulSet":
        return False
    live = current.get("spec", {}).get("template", {}).get("spec") or {}
    want = obj["spec"]["template"]["spec"]
    return any(field in live and field not in want for field in DROPPABLE)


def _writes(
    svc: LLMService, desired: list[Obj], live: dict[Key, Obj]
) -> tuple[list[Obj], list[Obj], list[str]]:
    """(objects to apply, objects to delete, names we may not touch)."""
    uid = svc.metadata.uid
    apply, conflicts = [], []
    for obj in desired:
        current = live.get(key(obj))
        if current is not None and not owned_by(current, uid):
            conflicts.append(f"{obj['kind']}/{obj['metadata']['name']}")
        elif current is None or not satisfies(current, obj) or _dropped(current, obj):
            apply.append(obj)
    wanted = {key(o) for o in desired}
    stale = [o for k, o in live.items() if k not in wanted and owned_by(o, uid)]
    stale.sort(key=lambda o: (o["kind"] != "StatefulSet", -_group_index(svc, o), key(o)))
    return apply, stale, conflicts


def plan(
    svc: LLMService,
    rendered: list[Obj],
    *,
    live: dict[Key, Obj],
    pods: list[Obj],
    now: datetime,
    policy: RestartPolicy,
    surge_group: Obj | None = None,
    surge_extras: Sequence[Obj] = (),
    cordoned: frozenset[str] = frozenset(),
    gang: str = "",
) -> Plan:
    """Decide every write of one reconcile.

    ``surge_group`` is the StatefulSet that group ``replicas`` would be (rendered by the caller);
    it is created only while a rollout wants a surge group, with ``surge_extras`` (its PodGroup).
    ``cordoned`` names the unschedulable nodes (groups on them move, see ``plan/drain.py``);
    ``gang`` says how groups are gang-scheduled (status.gangScheduling).
    """
    groups = decide_groups(svc, live, pods, now, policy, cordoned=cordoned)
    decisions, surge = groups.decisions, groups.surge
    extras = list(surge_extras) if surge.wanted else []
    desired = _desired(svc, [*rendered, *extras], decisions, surge_group if surge.wanted else None)
    apply, delete, conflicts = _writes(svc, desired, live)
    restart = [d.status.index for d in decisions if d.action in ("restart", "rollout")]
    restart += [surge.index] if surge.stale else []  # bring it to the new template first
    status = build_status(
        svc, decisions, live=live, conflicts=conflicts, now=now, surge=surge, gang=gang
    )
    new_status = status if status != svc.status.wire() else None
    events = _events(svc, decisions, apply=apply, delete=delete, live=live, conflicts=conflicts)
    if surge.rolling and surge.blocked and not svc.status.surge_blocked:
        message = f"no room for surge group {surge.index}: replacing groups one at a time"
        events.append(Event("Normal", "SurgeUnschedulable", message))
    return Plan(apply, delete, restart, new_status, events)


def _events(
    svc: LLMService,
    decisions: list[GroupDecision],
    *,
    apply: list[Obj],
    delete: list[Obj],
    live: dict[Key, Obj],
    conflicts: list[str],
) -> list[Event]:
    events = [
        Event("Normal", "Created", f"created {k} {n}")
        for k, n in (key(o) for o in apply)
        if (k, n) not in live
    ]
    events += [Event("Normal", "Deleted", f"deleted {k} {n}") for k, n in (key(o) for o in delete)]
    previous = {g.index: g for g in svc.status.groups}
    for d in decisions:
        g = d.status.index
        if d.action == "restart":
            events.append(
                Event(
                    "Warning",
                    "GroupRestarted",
                    f"restarted group {g} ({d.reason}), restart {d.status.restarts}",
                )
            )
        elif d.action == "rollout" and d.reason == "node cordoned":
            events.append(Event("Normal", "Evacuating", f"moving group {g} off a cordoned node"))
        elif d.action == "rollout":
            events.append(
                Event("Normal", "RollingUpdate", f"replacing group {g} with the new template")
            )
        elif d.action == "give-up" and _phase(previous.get(g)) != "Failed":
            events.append(
                Event(
                    "Warning",
                    "GroupRestartLimitExceeded",
                    f"group {g} failed {d.status.restarts} times ({d.reason}); left down",
                )
            )
    reported = next((c.message for c in svc.status.conditions if c.type == "Degraded"), "")
    events += [
        Event("Warning", "NameConflict", f"{c} exists and is not owned by this LLMService")
        for c in conflicts
        if c not in reported  # once per conflict, not on every pass
    ]
    return events


def _phase(status: GroupStatus | None) -> str:
    return status.phase if status else ""
