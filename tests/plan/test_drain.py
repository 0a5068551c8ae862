"""Drain awareness: a group on a cordoned node is replaced elsewhere first, then moved."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from llmsvc.plan import key, plan
from llmsvc.plan.drain import cordoned_nodes, mark
from llmsvc.plan.groups import group_views
from llmsvc.plan.pods import pod_facts
from llmsvc.render import Capabilities, group, render, surge_extras
from tests.plan.fixtures import OWNERS, T0, healthy_group, pod, service
from tests.plan.test_planner import POLICY, Live, as_live, converge, surge_sts

CORDONED = frozenset({"gpu-node-0"})
GANG = Capabilities(podgroup_version="scheduling.k8s.io/v1beta1")


def on(node: str, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for p in pods:
        p.setdefault("spec", {})["nodeName"] = node
    return pods


def run(live: Live, pods: list[dict[str, Any]], cordoned: frozenset[str] = CORDONED) -> Any:
    svc, _ = converge(service(), [])
    return plan(
        svc,
        render(svc),
        live=live,
        pods=pods,
        now=T0 + timedelta(seconds=1),
        policy=POLICY,
        surge_group=group(svc, svc.spec.replicas),
        cordoned=cordoned,
    )


def test_views_are_marked_only_for_groups_with_a_rank_on_a_cordoned_node() -> None:
    pods = on("gpu-node-0", healthy_group(0)) + on("gpu-node-1", healthy_group(1))
    facts = [f for f in (pod_facts(p, OWNERS) for p in pods) if f is not None]
    views = mark(group_views(facts, 2, {}, [0, 1]), CORDONED)
    assert [v.evacuate for v in views] == [True, False]
    assert cordoned_nodes(views[0], CORDONED) == ["gpu-node-0"]
    assert [v.evacuate for v in mark(views[1:], frozenset())] == [False]


def test_a_cordoned_node_starts_a_surge_group_and_moves_nothing_yet() -> None:
    _svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    pods = on("gpu-node-0", healthy_group(0)) + on("gpu-node-1", healthy_group(1))
    p = run(live, pods)
    assert p.restart_groups == []
    assert ("StatefulSet", "llama-2") in [key(o) for o in p.apply]
    assert p.status is not None
    ready = {c["type"]: c for c in p.status["conditions"]}["Ready"]
    assert ready["status"] == "True"


def test_without_a_cordon_nothing_moves() -> None:
    _svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    pods = on("gpu-node-0", healthy_group(0)) + on("gpu-node-1", healthy_group(1))
    p = run(live, pods, cordoned=frozenset())
    assert p.restart_groups == []
    assert p.apply == []


def test_once_the_surge_group_is_ready_the_group_moves_then_the_surge_goes() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    live.update(as_live([surge_sts(svc)]))
    surge = on("gpu-node-2", healthy_group(2))
    stuck = on("gpu-node-0", healthy_group(0)) + on("gpu-node-1", healthy_group(1))
    moving = run(live, stuck + surge)
    assert moving.restart_groups == [0]
    assert "Evacuating" in [e.reason for e in moving.events]
    moved = on("gpu-node-3", healthy_group(0, created=timedelta(minutes=1)))
    done = run(live, moved + on("gpu-node-1", healthy_group(1)) + surge)
    assert done.restart_groups == []
    assert [key(o) for o in done.delete] == [("StatefulSet", "llama-2")]


def test_no_room_for_a_surge_moves_one_group_at_a_time_and_says_so() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    live.update(as_live([surge_sts(svc)]))
    stuck = [pod(2, r, unschedulable="0/4 nodes are available") for r in range(2)]
    pods = on("gpu-node-0", healthy_group(0)) + on("gpu-node-1", healthy_group(1))
    p = run(live, pods + stuck)
    assert p.restart_groups == [0]
    assert p.status is not None
    assert p.status["surgeBlocked"] is True
    assert "SurgeUnschedulable" in [e.reason for e in p.events]


def test_the_surge_group_gets_its_podgroup_only_while_it_is_wanted() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    pods = on("gpu-node-0", healthy_group(0)) + on("gpu-node-1", healthy_group(1))
    kwargs: dict[str, Any] = {
        "live": live,
        "pods": pods,
        "now": T0,
        "policy": POLICY,
        "surge_group": group(svc, 2, caps=GANG),
        "surge_extras": surge_extras(svc, caps=GANG),
    }
    applied = [key(o) for o in plan(svc, render(svc), cordoned=CORDONED, **kwargs).apply]
    assert ("PodGroup", "llama-2") in applied
    idle = [key(o) for o in plan(svc, render(svc), **kwargs).apply]
    assert ("PodGroup", "llama-2") not in idle


def test_turning_gang_off_reapplies_the_template_without_its_scheduling_group() -> None:
    """The subset check alone would keep a template that still names a PodGroup."""
    svc, _ = converge(service(), [])
    gang = {key(o): o for o in render(svc, caps=GANG)}
    live = {k: o | {"metadata": o["metadata"] | {"ownerReferences": [{"uid": "uid-llama"}]}}
            for k, o in gang.items()}  # fmt: skip
    p = plan(svc, render(svc), live=live, pods=[], now=T0, policy=POLICY)
    applied = [key(o) for o in p.apply]
    assert ("StatefulSet", "llama-0") in applied
    assert ("PodGroup", "llama-0") in [key(o) for o in p.delete]
