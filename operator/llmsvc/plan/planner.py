"""The whole reconcile decision: desired children + observed state -> writes and the new status.

``plan`` is pure: it receives what the controller observed (children, pods), the rendered desired
children and the time, and returns a :class:`Plan` saying exactly which objects to apply, which
to delete, which groups to restart and what the status becomes. The controller executes it.
"""

from __future__ import annotations

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
from llmsvc.plan.pods import PULL_STATES, PodFacts, pod_facts
from llmsvc.plan.restarts import GroupDecision, RestartPolicy, decide
from llmsvc.plan.status import build_status, rejected_status
from llmsvc.plan.surge import Surge, assess
from llmsvc.render import names

Obj = dict[str, Any]
Key = tuple[str, str]  # (kind, name)
MAX_REJECTION = 1024  # characters of each server message kept in the condition and the Event


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
    evict: list[Obj] = field(default_factory=list)  # the pods of restart_groups, to delete
    # Rank pods by the state of their weight pull (PULL_STATES), for the operator's gauges.
    pulls: dict[str, int] = field(default_factory=dict)
    recheck: float | None = None  # seconds until a relaxed budget's eviction window ends

    @property
    def child_writes(self) -> int:
        """Writes of children: applied, deleted or evicted objects, and restarted groups."""
        return len(self.apply) + len(self.delete) + len(self.evict) + len(self.restart_groups)

    @property
    def writes(self) -> int:
        """API write requests this plan needs (one per applied, deleted or evicted object)."""
        return len(self.apply) + len(self.delete) + len(self.evict) + bool(self.status)


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


def _group_index(obj: Obj) -> int:
    """The group label of a StatefulSet as a number (-1 when absent, foreign or malformed)."""
    labels = obj.get("metadata", {}).get("labels") or {}
    value = str(labels.get(names.LABEL_GROUP, ""))
    return int(value) if obj["kind"] == "StatefulSet" and value.isdecimal() else -1


def group_owners(svc: LLMService, live: dict[Key, Obj], indices: Sequence[int]) -> dict[str, int]:
    """The UID of each group's StatefulSet (only those this LLMService owns) -> the group index."""
    owners = {}
    for g in indices:
        sts = live.get(("StatefulSet", names.statefulset(svc.name, g)))
        uid = str((sts or {}).get("metadata", {}).get("uid") or "")
        if sts is not None and uid and owned_by(sts, svc.metadata.uid):
            owners[uid] = g
    return owners


def _may_roll(views: Sequence[GroupView], surge: Surge) -> int | None:
    """The one Ready-but-outdated group allowed to roll now: only while every group is Ready and
    the surge group is Ready (or could not be scheduled). A group on a cordoned node moves only
    while another group serves (``drain.may_move``)."""
    if not views or not surge.allows_replacing() or any(v.health() != "Ready" for v in views):
        return None
    first = next((v for v in views if v.needs_replacing), None)
    if first is None or (not first.outdated and not drain.may_move(views, surge.ready)):
        return None
    return first.index


def _held(views: Sequence[GroupView], surge: Surge, rolling: int | None) -> GroupView | None:
    """The group kept on a cordoned node because moving it would leave nothing serving."""
    if rolling is not None or not surge.blocked or drain.may_move(views, surge.ready):
        return None
    held = (v for v in views if v.evacuate and not v.outdated and v.health() == "Ready")
    return next(held, None)


@dataclass(frozen=True)
class Groups:
    """The per-group decisions and the surge decision of one reconcile."""

    decisions: list[GroupDecision]
    surge: Surge
    ranks: list[tuple[Obj, PodFacts]]  # the pods of our groups, with their facts
    held: str = ""  # why a group stays on a cordoned node (drain.held_message), or ''


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
    owners = group_owners(svc, live, indices)
    ranks = [(p, f) for p in pods if (f := pod_facts(p, owners)) is not None]
    previous = {g.index: g for g in svc.status.groups}
    members = {g: frozenset(s.pod_uids) for g, s in previous.items() if g < replicas}
    *views, surge_view = group_views(
        [f for _, f in ranks], svc.spec.parallelism.nodes, revisions, indices, members
    )
    views = drain.mark(views, cordoned)
    down = {g for g, s in previous.items() if s.phase == "Failed"}
    recovering = any(v.health() != "Ready" and v.index not in down for v in views)
    surge = assess(views, surge_view, bool(svc.status.surge_blocked), recovering=recovering)
    reset = svc.status.observed_generation != svc.metadata.generation
    policy = dataclasses.replace(policy, max_restarts=svc.spec.restart.max_group_restarts)
    rolling = _may_roll(views, surge)
    decisions = [
        decide(v, previous.get(v.index), policy, now, reset=reset, may_roll=v.index == rolling)
        for v in views
    ]
    held = _held(views, surge, rolling)
    message = drain.held_message(held, cordoned) if held else ""
    return Groups(decisions, surge, ranks, message)


def _update_revision(live: dict[Key, Obj], name: str, g: int) -> str:
    sts = live.get(("StatefulSet", names.statefulset(name, g))) or {}
    return str(sts.get("status", {}).get("updateRevision", ""))


def _desired(
    svc: LLMService, rendered: list[Obj], decisions: list[GroupDecision], surge: Obj | None
) -> list[Obj]:
    down = {
        names.statefulset(svc.name, d.status.index) for d in decisions if d.status.phase == "Failed"
    }
    moving = {
        names.statefulset(svc.name, d.status.index) for d in decisions if d.status.moving_since
    }
    result = []
    for original in [*rendered, *([surge] if surge else [])]:
        # Copies of the changed levels only: the rendered children are left as they were.
        meta = original["metadata"] | {"ownerReferences": [owner_reference(svc)]}
        obj = original | {"metadata": meta}
        if obj["kind"] == "StatefulSet" and meta["name"] in down:
            obj["spec"] = obj["spec"] | {"replicas": 0}
        if obj["kind"] == "PodDisruptionBudget" and meta["name"] in moving:
            obj = drain.relax(obj)
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
    stale.sort(key=lambda o: (o["kind"] != "StatefulSet", -_group_index(o), key(o)))
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
    evict = [p for p, f in groups.ranks if f.group in restart and not f.terminating]
    status = build_status(
        svc,
        decisions,
        live=live,
        conflicts=conflicts,
        now=now,
        surge=surge,
        gang=gang,
        held=groups.held,
    )
    new_status = status if status != svc.status.wire() else None
    events = _events(svc, decisions, apply=apply, delete=delete, live=live, conflicts=conflicts)
    if surge.rolling and surge.blocked and not svc.status.surge_blocked:
        message = f"no room for surge group {surge.index}: replacing groups one at a time"
        events.append(Event("Normal", "SurgeUnschedulable", message))
    recheck = drain.recheck([d.status.moving_since for d in decisions], now)
    pulls = pull_counts(groups.ranks)
    return Plan(apply, delete, restart, new_status, events, evict, pulls, recheck)


def pull_counts(ranks: Sequence[tuple[Obj, PodFacts]]) -> dict[str, int]:
    """Live (not terminating) rank pods per pull state, every state present."""
    states = [f.pull_state for _, f in ranks if not f.terminating]
    return {state: states.count(state) for state in PULL_STATES}


def with_rejections(svc: LLMService, todo: Plan, rejections: dict[Key, str], now: datetime) -> Plan:
    """``todo`` after the API server refused some applies (HTTP 422): its status says so in
    Degraded (ApplyRejected), an Event carries each server message not reported yet, and no
    Event claims a rejected object was created.

    ``rejections`` maps (kind, name) to the server's message; a later pass that applies cleanly
    computes the status afresh, which clears the condition."""
    if not rejections:
        return todo
    problems = [f"{k}/{n}: {message}"[:MAX_REJECTION] for (k, n), message in rejections.items()]
    status = rejected_status(svc, todo.status or svc.status.wire(), problems, now)
    reported = next((c.message for c in svc.status.conditions if c.type == "Degraded"), "")
    refused = {f"created {k} {n}" for k, n in rejections}
    events = [e for e in todo.events if e.message not in refused]
    events += [
        Event("Warning", "ApplyRejected", f"the API server rejected {p}")
        for p in problems
        if p not in reported  # once per message, not on every pass
    ]
    new_status = status if status != svc.status.wire() else None
    return dataclasses.replace(todo, status=new_status, events=events)


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
        elif d.action == "relax" and d.reason:
            message = f"relaxed the disruption budget of group {g} so that a drain can evict it"
            events.append(Event("Normal", "Evacuating", message))
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
