"""The status the operator reports: counts, selector, endpoint, groups and five conditions.

``Ready`` is what ``kubectl wait --for=condition=Ready`` and GitOps tools read; its reason is the
STATUS column of ``kubectl get llmservices``. ``Progressing`` says what is changing and
``Degraded`` what is wrong. ``Reconciling`` and ``Stalled`` carry kstatus' meaning for Flux:
Reconciling=True while the operator still works towards the spec (InProgress), Stalled=True when
it cannot get there without a human (Failed). An unschedulable group is Degraded only after
:data:`UNSCHEDULABLE_GRACE`, since a node autoscaler may still be adding GPU nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from llmsvc.api import LLMService
from llmsvc.api.status import LLMServiceStatus
from llmsvc.plan.conditions import Verdict, settle
from llmsvc.plan.restarts import GroupDecision
from llmsvc.plan.surge import Surge
from llmsvc.render import names

Obj = dict[str, Any]
OK = Verdict("Degraded", False, "AsExpected")
SCALED_TO_ZERO = "scaled to zero while idle: the router holds new requests and wakes the service"
UNSCHEDULABLE_GRACE = timedelta(minutes=10)
# Degraded reasons that no amount of waiting fixes: Stalled (kstatus Failed).
STALLED_REASONS = ("GroupRestartLimitExceeded", "NameConflict", "InvalidSpec")


def _unschedulable(
    decisions: Sequence[GroupDecision], now: datetime, *, past_grace: bool
) -> tuple[int, str] | None:
    """(group, scheduler message) of the first group refused (past the grace period or not)."""
    for d in decisions:
        view = d.view
        if view is None or view.unschedulable_since is None or not view.unschedulable:
            continue
        if (now - view.unschedulable_since >= UNSCHEDULABLE_GRACE) == past_grace:
            return d.status.index, view.unschedulable
    return None


def _router_available(svc: LLMService, live: dict[tuple[str, str], Obj]) -> bool:
    if not svc.spec.router.enabled:
        return True
    deployment = live.get(("Deployment", names.router(svc.name))) or {}
    return int(deployment.get("status", {}).get("availableReplicas") or 0) >= 1


def _degraded(
    decisions: Sequence[GroupDecision], conflicts: Sequence[str], now: datetime
) -> Verdict:
    if conflicts:
        return Verdict(
            "Degraded",
            True,
            "NameConflict",
            f"{', '.join(conflicts)} exist and are not owned by this LLMService: "
            "rename or delete them",
        )
    failed = [d for d in decisions if d.status.phase == "Failed"]
    if failed:
        groups = ", ".join(str(d.status.index) for d in failed)
        return Verdict(
            "Degraded",
            True,
            "GroupRestartLimitExceeded",
            f"group(s) {groups} exceeded restart.maxGroupRestarts and are left down; "
            "fix the cause, then change the spec or wait an hour to retry",
        )
    pending = _unschedulable(decisions, now, past_grace=True)
    if pending:
        g, message = pending[0], pending[1]
        minutes = int(UNSCHEDULABLE_GRACE.total_seconds() // 60)
        return Verdict(
            "Degraded", True, "Unschedulable", f"group {g} unschedulable for {minutes}m+: {message}"
        )
    pulls = [(d.status.index, d.view.pull_error) for d in decisions if d.view and d.view.pull_error]
    if pulls:
        g, message = pulls[0]
        return Verdict(
            "Degraded", True, "PullFailed", f"group {g}: the weights puller failed: {message}"
        )
    return OK


def _rolling_message(surge: Surge) -> str:
    if surge.blocked:
        return "replacing groups one at a time (no room for a surge group)"
    if not surge.ready:
        return f"starting surge group {surge.index} on the new template"
    return f"surge group {surge.index} ready; replacing groups one at a time"


def _progressing(
    svc: LLMService,
    decisions: Sequence[GroupDecision],
    groups: int,
    router_ok: bool,
    surge: Surge,
    *,
    now: datetime,
    held: str = "",
) -> Verdict:
    if surge.rolling:  # a group held on a cordoned node (``held``) only happens in a rollout
        reason, message = (
            ("DrainBlocked", held) if held else ("RollingUpdate", _rolling_message(surge))
        )
        return Verdict("Progressing", True, reason, message)
    if groups != svc.spec.replicas:
        return Verdict(
            "Progressing", True, "Scaling", f"{groups} of {svc.spec.replicas} groups exist"
        )
    starting = [d.status.index for d in decisions if d.status.phase not in ("Ready", "Failed")]
    waiting = _unschedulable(decisions, now, past_grace=False)
    if waiting:
        return Verdict(
            "Progressing",
            True,
            "WaitingForNodes",
            f"group {waiting[0]} is not schedulable yet (a node autoscaler may add nodes; "
            f"Degraded after {UNSCHEDULABLE_GRACE}): {waiting[1]}",
        )
    if starting:
        return Verdict(
            "Progressing",
            True,
            "GroupsStarting",
            f"waiting for group(s) {', '.join(map(str, starting))}",
        )
    if not router_ok:
        return Verdict("Progressing", True, "RouterStarting", "waiting for the router")
    return Verdict("Progressing", False, "Stable")


def _ready(
    ready: int, svc: LLMService, router_ok: bool, progressing: Verdict, degraded: Verdict
) -> Verdict:
    """Ready means serving at full size: every group Ready, the router up, nothing degraded.

    A rollout with a surge group keeps the service Ready (Progressing says it is rolling).
    Scaled to zero by the autoscaler is Ready too: the router holds requests and wakes it."""
    asleep = svc.spec.replicas == 0 and svc.spec.autoscaling.enabled
    if asleep and router_ok and not degraded.status:
        return Verdict("Ready", True, "ScaledToZero", SCALED_TO_ZERO)
    if ready == svc.spec.replicas and router_ok and not degraded.status:
        return Verdict("Ready", True, "Ready", f"{ready} of {svc.spec.replicas} replicas ready")
    blocker = degraded if degraded.status else progressing
    return Verdict("Ready", False, blocker.reason, blocker.message)


def kstatus(ready: Verdict, progressing: Verdict, degraded: Verdict) -> list[Verdict]:
    """Reconciling and Stalled, derived from the other three (kstatus reads only these)."""
    if degraded.status and degraded.reason in STALLED_REASONS:
        return [
            Verdict("Reconciling", False, degraded.reason, degraded.message),
            Verdict("Stalled", True, degraded.reason, degraded.message),
        ]
    if progressing.status or not ready.status:
        cause = progressing if progressing.status else ready
        return [
            Verdict("Reconciling", True, cause.reason, cause.message),
            Verdict("Stalled", False, "AsExpected"),
        ]
    return [Verdict("Reconciling", False, "Reconciled"), Verdict("Stalled", False, "AsExpected")]


def build_status(
    svc: LLMService,
    decisions: Sequence[GroupDecision],
    *,
    live: dict[tuple[str, str], Obj],
    conflicts: Sequence[str],
    now: datetime,
    surge: Surge,
    gang: str = "",
    held: str = "",
) -> Obj:
    """The full status for this observation, as it is written to the API server (``held``: why
    a group stays on a cordoned node, see ``plan/drain.py``)."""
    groups = sum(
        1 for d in decisions if ("StatefulSet", names.statefulset(svc.name, d.status.index)) in live
    )
    # A Ready surge group serves in place of the group it replaces (up to spec.replicas).
    ready = min(
        sum(1 for d in decisions if d.status.phase == "Ready") + surge.ready, len(decisions)
    )
    outdated = sum(1 for d in decisions if d.view is not None and d.view.outdated)
    router_ok = _router_available(svc, live)
    degraded = _degraded(decisions, conflicts, now)
    progressing = _progressing(svc, decisions, groups, router_ok, surge, now=now, held=held)
    verdict = _ready(ready, svc, router_ok, progressing, degraded)
    verdicts = [verdict, progressing, degraded, *kstatus(verdict, progressing, degraded)]
    return _status(
        svc,
        groups=groups,
        ready=ready,
        updated=groups - outdated,
        decisions=decisions,
        verdicts=verdicts,
        now=now,
        surge_blocked=(surge.rolling and surge.blocked) or None,
        gang=gang,
    )


def _status(
    svc: LLMService,
    *,
    groups: int,
    ready: int,
    updated: int,
    decisions: Sequence[GroupDecision],
    verdicts: Sequence[Verdict],
    now: datetime,
    surge_blocked: bool | None,
    gang: str = "",
) -> Obj:
    generation = svc.metadata.generation
    return LLMServiceStatus(
        observed_generation=generation,
        replicas=groups,
        ready_replicas=ready,
        updated_replicas=max(updated, 0),
        nodes_per_replica=svc.spec.parallelism.nodes,
        selector=names.selector_string(names.leader_selector(svc.name)),
        endpoint=names.endpoint(svc.name, svc.namespace),
        conditions=settle(verdicts, svc.status.conditions, now, generation),
        groups=[d.status for d in decisions],
        surge_blocked=surge_blocked,
        gang_scheduling=gang or None,
    ).wire()


def rejected_status(svc: LLMService, status: Obj, rejections: Sequence[str], now: datetime) -> Obj:
    """``status`` with Degraded=True and Ready=False (reason ApplyRejected) naming what the API
    server refused to store and why, in its own words; Progressing is kept."""
    message = "; ".join(rejections)
    current = LLMServiceStatus.model_validate(status)
    progressing = next(
        (Verdict(c.type, c.status == "True", c.reason, c.message) for c in current.conditions
         if c.type == "Progressing"),
        Verdict("Progressing", False, "ApplyRejected", message),
    )  # fmt: skip
    verdicts = [
        Verdict("Ready", False, "ApplyRejected", message),
        progressing,
        Verdict("Degraded", True, "ApplyRejected", message),
    ]
    conditions = settle(verdicts, svc.status.conditions, now, svc.metadata.generation)
    return current.model_copy(update={"conditions": conditions}).wire()


def invalid_status(
    svc_status: LLMServiceStatus, generation: int | None, problems: Sequence[str], now: datetime
) -> Obj:
    """Status of an object the operator cannot act on: Degraded=InvalidSpec, nothing moves."""
    message = "; ".join(problems)
    ready = Verdict("Ready", False, "InvalidSpec", message)
    progressing = Verdict("Progressing", False, "InvalidSpec", message)
    degraded = Verdict("Degraded", True, "InvalidSpec", message)
    verdicts = [ready, progressing, degraded, *kstatus(ready, progressing, degraded)]
    conditions = settle(verdicts, svc_status.conditions, now, generation)
    return svc_status.model_copy(
        update={"observed_generation": generation, "conditions": conditions}
    ).wire()
