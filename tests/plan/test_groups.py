"""Group health from pods alone: which states are Ready, Starting, Pending, Broken."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from llmsvc.plan.groups import GroupView, group_views
from llmsvc.plan.pods import pod_facts
from tests.plan.fixtures import healthy_group, pod


def view(pods: list[dict[str, Any]], expected: int = 2, revision: str = "rev1") -> GroupView:
    facts = [f for f in (pod_facts(p) for p in pods) if f is not None]
    return group_views(facts, expected, {0: revision}, [0])[0]


CASES = [
    ("all ranks ready", healthy_group(0), "Ready", ""),
    ("no pods yet", [], "Starting", ""),
    ("one rank still loading", [pod(0, 0, ready=False), pod(0, 1)], "Starting", ""),
    ("one rank missing", [pod(0, 0)], "Starting", ""),
    (
        "a rank failed",
        [pod(0, 0), pod(0, 1, phase="Failed", ready=False)],
        "Broken",
        "a rank failed",
    ),
    (
        "a container restarted",
        [pod(0, 0, restarts=1), pod(0, 1)],
        "Broken",
        "a rank's container restarted",
    ),
    (
        "a rank is being deleted",
        [pod(0, 0), pod(0, 1, terminating=True)],
        "Broken",
        "a rank was deleted",
    ),
    (
        "a rank was replaced later",
        [pod(0, 0), pod(0, 1, created=timedelta(seconds=40))],
        "Broken",
        "a rank was replaced",
    ),
    (
        "ranks created a second apart are one wave",
        [pod(0, 0), pod(0, 1, created=timedelta(seconds=1))],
        "Ready",
        "",
    ),
    (
        "a replaced rank still pending is not a failure",
        [pod(0, 0), pod(0, 1, created=timedelta(seconds=40), phase="Pending", ready=False)],
        "Pending",
        "a rank was replaced",
    ),
    (
        "unschedulable rank",
        [pod(0, 0), pod(0, 1, unschedulable="0/5 nodes are available")],
        "Pending",
        "",
    ),
    ("whole group terminating", healthy_group(0, terminating=True), "Terminating", ""),
]


@pytest.mark.parametrize(
    ("pods", "health", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_group_health(pods: list[dict[str, Any]], health: str, reason: str) -> None:
    v = view(pods)
    assert v.health() == health
    assert v.broken_reason() == reason


def test_unschedulable_message_is_the_schedulers() -> None:
    v = view([pod(0, 0), pod(0, 1, unschedulable="0/5 nodes: Insufficient nvidia.com/gpu")])
    assert v.unschedulable == "0/5 nodes: Insufficient nvidia.com/gpu"


def test_outdated_when_a_rank_runs_an_older_revision() -> None:
    assert view(healthy_group(0, revision="old"), revision="new").outdated
    assert not view(healthy_group(0), revision="rev1").outdated
    assert not view(healthy_group(0), revision="").outdated


def test_pods_without_group_label_are_ignored() -> None:
    stray = pod(0, 0)
    del stray["metadata"]["labels"]["llmsvc.io/group"]
    assert pod_facts(stray) is None


def test_views_split_pods_by_group() -> None:
    pods = healthy_group(0) + healthy_group(1) + healthy_group(5)
    facts = [f for f in (pod_facts(p) for p in pods) if f is not None]
    views = group_views(facts, 2, {}, [0, 1])
    assert [len(v.pods) for v in views] == [2, 2]
    assert [p.name for p in views[1].pods] == ["llama-1-0", "llama-1-1"]
