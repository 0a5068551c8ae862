"""A PodDisruptionBudget per group: a voluntary eviction cannot take one rank of a Ready group.

A rank cannot rejoin a running NCCL world, so evicting one pod breaks the whole group. The budget
allows no eviction while every rank is Ready (``maxUnavailable: 0``); ranks that are not Ready may
be evicted (``unhealthyPodEvictionPolicy: AlwaysAllow``), so a group that is loading or broken never
blocks a drain. ``kubectl drain`` of a node hosting a Ready group therefore waits, and the operator
moves the group: a replacement group elsewhere first, then the planner relaxes this budget
(``maxUnavailable: 100%``) for the moving group alone, so that the drain's own eviction takes
its rank: see ``plan/drain.py``.
"""

from __future__ import annotations

from typing import Any

from llmsvc.api import LLMService
from llmsvc.render import names

Manifest = dict[str, Any]


def pdb(svc: LLMService, g: int) -> Manifest:
    """PodDisruptionBudget ``NAME-g`` over the ranks of group ``g``."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": names.statefulset(svc.name, g),
            "namespace": svc.namespace,
            "labels": names.common_labels(svc.name, names.ENGINE) | {names.LABEL_GROUP: str(g)},
        },
        "spec": {
            "maxUnavailable": 0,
            "selector": {"matchLabels": names.group_selector(svc.name, g)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
