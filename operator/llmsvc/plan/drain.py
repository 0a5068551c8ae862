"""Drain awareness: a group with a rank on a cordoned node is moved, replacement first.

``kubectl drain`` cordons a node, then evicts its pods. The per-group PodDisruptionBudget
(``render/pdb.py``) refuses to evict a rank of a Ready group, so the drain waits; meanwhile the
planner treats the group like one running an outdated template: the surge group comes up
elsewhere first (the cordoned node takes no new pods), and once it is Ready the old group's pods
are deleted (a deletion is not an eviction, so the budget does not block it) and recreated on
other nodes. The drain then completes, and serving capacity never drops below ``spec.replicas``
groups. With no room for a surge group, groups move one at a time and the status says so
(``surgeBlocked``), exactly as in a rollout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from llmsvc.plan.groups import GroupView


def cordoned_nodes(view: GroupView, cordoned: Collection[str]) -> list[str]:
    """The cordoned nodes that host a live rank of ``view``, sorted."""
    return sorted({p.node for p in view.live if p.node and p.node in cordoned})


def mark(views: Sequence[GroupView], cordoned: Collection[str]) -> list[GroupView]:
    """``views`` with ``evacuate`` set on each group that has a rank on a cordoned node."""
    if not cordoned:
        return list(views)
    return [dataclasses.replace(v, evacuate=bool(cordoned_nodes(v, cordoned))) for v in views]
