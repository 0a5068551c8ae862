"""Drain awareness: a group with a rank on a cordoned node is moved, replacement first.

``kubectl drain`` cordons a node, then evicts its pods by name, retrying every 5 s while a
PodDisruptionBudget refuses. The per-group budget (``render/pdb.py``) refuses to evict a rank of
a Ready group, so the drain waits; meanwhile the planner treats the group like one running an
outdated template: the surge group comes up elsewhere first (the cordoned node takes no new
pods). Once it is Ready, the moving group's budget is *relaxed* (``status.groups[].movingSince``)
and the drain's own retry evicts the rank on the cordoned node; the operator then deletes the
group's other ranks, the StatefulSet re-creates them all on other nodes, and the budget is tight
again. Letting the drain evict is what lets it finish: had the operator deleted the rank, the
StatefulSet would re-create it under the same name, and the drain's next retry would meet a
Ready rank of a tight budget. A plain cordon evicts nothing, so after :data:`EVICTION_WINDOW`
the operator deletes the ranks itself. The surge group stays until the moved group is Ready
again, so serving capacity never drops below ``spec.replicas`` groups.

With no room for a surge group, groups move one at a time while the others serve, and the
status says so (``surgeBlocked``), exactly as in a rollout. A group that is the only one
serving is never moved without a replacement: it stays on the cordoned node, its budget keeps
blocking the drain, and the status says why (Progressing=DrainBlocked).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from llmsvc.plan.groups import GroupView
from llmsvc.plan.pods import parse_time

# How long a relaxed budget waits for a drain's eviction (kubectl retries every 5 s) before the
# operator deletes the ranks itself (a cordon without a drain).
EVICTION_WINDOW = timedelta(seconds=15)
RELAXED = "100%"  # maxUnavailable of a moving group's budget


def cordoned_nodes(view: GroupView, cordoned: Collection[str]) -> list[str]:
    """The cordoned nodes that host a live rank of ``view``, sorted."""
    return sorted({p.node for p in view.live if p.node and p.node in cordoned})


def mark(views: Sequence[GroupView], cordoned: Collection[str]) -> list[GroupView]:
    """``views`` with ``evacuate`` set on each group that has a rank on a cordoned node."""
    if not cordoned:
        return list(views)
    return [dataclasses.replace(v, evacuate=bool(cordoned_nodes(v, cordoned))) for v in views]


def window_over(since: datetime, now: datetime) -> bool:
    """Whether a budget relaxed at ``since`` has waited long enough for a drain's eviction."""
    return now - since >= EVICTION_WINDOW


def recheck(moving: Sequence[str | None], now: datetime) -> float | None:
    """Seconds until the first eviction window of ``moving`` (``movingSince`` times) ends, so that
    a plain cordon is acted on then rather than at the next periodic resync; None if none runs."""
    ends = [since + EVICTION_WINDOW for since in map(parse_time, moving) if since]
    return max(0.0, (min(ends) - now).total_seconds()) if ends else None


def may_move(views: Sequence[GroupView], surge_ready: bool) -> bool:
    """Whether a Ready group may leave a cordoned node now: only while another group serves
    (the Ready surge group, or, with no room for one, another Ready group)."""
    return surge_ready or sum(1 for v in views if v.health() == "Ready") > 1


def relax(pdb: dict[str, Any]) -> dict[str, Any]:
    """The budget ``pdb`` relaxed so that a drain may evict the moving group's ranks."""
    return pdb | {"spec": pdb["spec"] | {"maxUnavailable": RELAXED}}


def held_message(view: GroupView, cordoned: Collection[str]) -> str:
    """Why group ``view`` stays on a cordoned node (the only serving group, no room to surge)."""
    nodes = ", ".join(cordoned_nodes(view, cordoned))
    return (
        f"group {view.index} stays on cordoned node(s) {nodes}: no room for a replacement group "
        "and no other group serves, so its disruption budget blocks the drain until a node "
        "with room for a whole group is added"
    )
