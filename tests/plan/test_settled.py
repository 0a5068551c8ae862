"""A settled status the planner writes is a fixed point: the next pass over the same children
writes nothing, now or later.

The operator marks an LLMService quiet (the resync sweep passes over it) after a pass that wrote
no child, only perhaps its status, when that status is settled
(:func:`llmsvc.controller.runtime.settled`). That skips the confirming pass only while this holds:
each walk below takes an LLMService along a path to Ready, writing back each pass's status and
applied children as the controller would, and wherever a pass leaves it settled, passes again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from llmsvc.api import LLMService
from llmsvc.controller.runtime import settled
from tests.plan.fixtures import healthy_group, pod, service, with_status
from tests.plan.test_planner import POLICY, Live, as_live, run

Pods = list[dict[str, Any]]
Step = tuple[float, Callable[[Live], Pods]]  # (seconds after T0, live children -> the pods)
LATER = 6 * 3600.0  # past every restart window and grace period


def healthy(live: Live) -> Pods:
    return healthy_group(0) + healthy_group(1)


def starting(live: Live) -> Pods:
    return [*healthy_group(0), pod(1, 0, ready=False), pod(1, 1, ready=False)]


def broken(live: Live) -> Pods:
    return [*healthy_group(0), pod(1, 0), pod(1, 1, uid="new", created=timedelta(seconds=90))]


def replaced(live: Live) -> Pods:
    fresh = timedelta(seconds=200)
    return healthy_group(0) + [pod(1, r, uid=f"r{r}", created=fresh) for r in range(2)]


def rolled(live: Live) -> Pods:
    for obj in live.values():
        if obj["kind"] == "StatefulSet":
            obj["status"]["updateRevision"] = "rev2"
    return healthy_group(0, revision="rev2") + healthy_group(1, revision="rev2")


def router_down(live: Live) -> Pods:
    live[("Deployment", "llama-router")]["status"]["availableReplicas"] = 0
    return healthy(live)


def router_up(live: Live) -> Pods:
    live[("Deployment", "llama-router")]["status"]["availableReplicas"] = 1
    return healthy(live)


def nothing(live: Live) -> Pods:
    return []


# name: (the LLMService, its steps, the steps after which it is settled)
WALKS: dict[str, tuple[LLMService, list[Step], list[str]]] = {
    "first Ready": (service(), [(0, nothing), (30, starting), (60, healthy)], ["60"]),
    "a group restarted, then its window ends": (
        service(),
        [
            (0, healthy),
            (60, healthy),
            (120, broken),
            (200, replaced),
            (POLICY.window + 300, replaced),
        ],
        ["60", f"{POLICY.window + 300:.0f}"],
    ),
    "a rollout of every group": (service(), [(0, healthy), (60, rolled)], ["60"]),
    "the router down, then back": (
        service(),
        [(0, healthy), (30, router_down), (60, router_up)],
        ["60"],
    ),
    "scaled to zero": (
        service(replicas=0, autoscaling={"enabled": True, "minReplicas": 0}),
        [(0, nothing), (30, nothing)],
        ["30"],
    ),
    "one node per replica": (
        service(parallelism={"tensor": 1, "pipeline": 1, "gpusPerNode": 1}),
        [(0, nothing), (30, lambda live: [pod(0, 0), pod(1, 0)])],
        ["30"],
    ),
}


def walk(svc: LLMService, steps: list[Step]) -> list[str]:
    """Run each step's pass (first pass: no children); after each that leaves ``svc`` settled
    with no child written, pass again now and later. The steps at which the walk settled."""
    live: Live = {}
    settled_at = []
    for at, pods_of in steps:
        pods = pods_of(live)
        todo = run(svc, live, pods, at)
        live.update(as_live(todo.apply))
        if todo.status is not None:
            svc = with_status(svc, todo.status)
        wire = svc.status.wire() if svc.status else None
        if todo.child_writes or todo.recheck is not None or not settled({"status": wire}):
            continue
        settled_at.append(f"{at:.0f}")
        for again_at in (at, at + LATER):
            again = run(svc, live, pods, again_at)
            assert again.writes == 0, f"at {at:.0f} s, again at {again_at:.0f} s: {again}"
    return settled_at


@pytest.mark.parametrize("name", WALKS)
def test_a_settled_status_is_a_fixed_point_of_the_planner(name: str) -> None:
    svc, steps, settles = WALKS[name]
    assert walk(svc, steps) == settles
