"""Drain awareness: a group on a cordoned node is replaced elsewhere first, then moved."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from llmsvc.plan import key, plan
from llmsvc.plan.drain import EVICTION_WINDOW, RELAXED, cordoned_nodes, mark
from llmsvc.plan.groups import group_views
from llmsvc.plan.pods import pod_facts
from llmsvc.render import Capabilities, group, render, surge_extras
from tests.plan.fixtures import OWNERS, T0, healthy_group, pod, service, with_status
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


class Cluster:
    """The planner in a loop, as the controller runs it: applies, deletions and the status are
    written back, so each step sees what the previous one did."""

    def __init__(self, replicas: int = 2) -> None:
        self.svc, self.live = converge(service(replicas=replicas), [])
        self.live.update(as_live([surge_sts(self.svc)]) if replicas == 2 else {})

    def step(
        self, pods: list[dict[str, Any]], at: float, cordoned: frozenset[str] = CORDONED
    ) -> Any:
        svc = self.svc
        now = T0 + timedelta(seconds=at)
        surge = group(svc, svc.spec.replicas)
        p = plan(svc, render(svc), live=self.live, pods=pods, now=now, policy=POLICY,
                 surge_group=surge, cordoned=cordoned)  # fmt: skip
        self.live.update(as_live(p.apply))
        for obj in p.delete:
            self.live.pop(key(obj))
        self.svc = with_status(svc, p.status) if p.status else svc
        return p

    def budget(self, g: int) -> object:
        return self.live[("PodDisruptionBudget", f"llama-{g}")]["spec"]["maxUnavailable"]

    def group_status(self, g: int) -> dict[str, Any]:
        groups = self.svc.status.model_dump(by_alias=True, exclude_none=True)["groups"]
        return next(s for s in groups if s["index"] == g)


def spread(g: int, nodes: tuple[str, str], **kwargs: Any) -> list[dict[str, Any]]:
    """Group ``g``'s two ranks, rank r on ``nodes[r]``."""
    return [on(n, [pod(g, r, **kwargs)])[0] for r, n in enumerate(nodes)]


STUCK = spread(0, ("gpu-node-0", "gpu-node-4")) + spread(1, ("gpu-node-1", "gpu-node-5"))
SURGE = spread(2, ("gpu-node-2", "gpu-node-6"))


def test_a_ready_surge_relaxes_only_the_moving_groups_budget_and_deletes_nothing_yet() -> None:
    c = Cluster()
    p = c.step(STUCK + SURGE, at=1)
    assert p.restart_groups == []
    assert p.evict == []
    assert [key(o) for o in p.apply] == [("PodDisruptionBudget", "llama-0")]
    assert (c.budget(0), c.budget(1)) == (RELAXED, 0)
    assert c.group_status(0)["movingSince"] == "2026-01-01T12:00:01Z"
    assert "movingSince" not in c.group_status(1)
    assert [e.reason for e in p.events] == ["Evacuating"]
    assert p.recheck == EVICTION_WINDOW.total_seconds()  # look again when the window ends
    again = c.step(STUCK + SURGE, at=10)  # within the window: nothing to write
    assert again.writes == 0
    assert again.recheck == EVICTION_WINDOW.total_seconds() - 9


def test_a_surge_that_is_not_ready_keeps_every_budget_tight() -> None:
    c = Cluster()
    starting = spread(2, ("gpu-node-2", "gpu-node-6"), ready=False)
    p = c.step(STUCK + starting, at=1)
    assert ("PodDisruptionBudget", "llama-0") not in [key(o) for o in p.apply]
    assert c.budget(0) == 0
    assert p.restart_groups == []


def test_a_drain_evicting_one_rank_makes_the_operator_delete_only_the_others() -> None:
    c = Cluster()
    c.step(STUCK + SURGE, at=1)
    evicted = [on("gpu-node-0", [pod(0, 0, terminating=True)])[0], spread(0, ("", "gpu-node-4"))[1]]
    p = c.step(evicted + STUCK[2:] + SURGE, at=6)
    assert p.restart_groups == [0]
    assert [o["metadata"]["name"] for o in p.evict] == ["llama-0-1"]
    assert "GroupRestarted" not in [e.reason for e in p.events]  # a move, not a failure
    assert c.group_status(0)["restarts"] == 0
    assert c.budget(0) == 0  # tight again: the ranks it protects next are the re-created ones


def test_a_cordon_without_a_drain_is_moved_by_the_operator_after_the_eviction_window() -> None:
    c = Cluster()
    c.step(STUCK + SURGE, at=1)
    window = EVICTION_WINDOW.total_seconds()
    assert c.step(STUCK + SURGE, at=window).restart_groups == []
    p = c.step(STUCK + SURGE, at=1 + window)
    assert p.restart_groups == [0]
    assert len(p.evict) == 2
    assert "Evacuating" in [e.reason for e in p.events]
    assert c.budget(0) == 0


def test_the_surge_group_serves_until_the_moved_group_is_ready_again() -> None:
    c = Cluster()
    c.step(STUCK + SURGE, at=1)
    c.step(STUCK + SURGE, at=20)  # moved by the operator
    others = STUCK[2:] + SURGE
    for at, moved in enumerate([
        [pod(0, r, terminating=True) for r in range(2)],
        [pod(0, r, uid=f"new-{r}", unschedulable="0/8 nodes are available") for r in range(2)],
        spread(0, ("gpu-node-3", "gpu-node-7"), uid="new", ready=False),
    ]):  # fmt: skip
        p = c.step(moved + others, at=21 + at)
        assert p.delete == [], at
        assert p.restart_groups == [], at
        ready = {x.type: x.status for x in c.svc.status.conditions}["Ready"]
        assert (c.svc.status.ready_replicas, ready) == (2, "True"), at  # the surge serves
    done = c.step(spread(0, ("gpu-node-3", "gpu-node-7"), uid="new") + others, at=30)
    assert [key(o) for o in done.delete] == [("StatefulSet", "llama-2")]


def test_without_room_for_a_surge_one_group_moves_while_the_other_serves() -> None:
    c = Cluster()
    stuck = [pod(2, r, unschedulable="0/8 nodes are available") for r in range(2)]
    p = c.step(STUCK + stuck, at=1)
    assert p.restart_groups == []
    assert (c.budget(0), c.budget(1)) == (RELAXED, 0)
    assert p.status is not None
    assert p.status["surgeBlocked"] is True
    assert "SurgeUnschedulable" in [e.reason for e in p.events]


def test_the_only_serving_group_is_never_moved_without_a_replacement() -> None:
    c = Cluster(replicas=1)
    only = spread(0, ("gpu-node-0", "gpu-node-4"))
    stuck = [pod(1, r, unschedulable="0/8 nodes are available") for r in range(2)]
    c.step(only, at=1)  # creates the surge group, which finds no room
    c.step(only + stuck, at=2)
    for at in (3, 60):
        p = c.step(only, at=at)
        assert p.restart_groups == [], at
        assert c.budget(0) == 0, at
    conditions = {x.type: x for x in c.svc.status.conditions}
    assert conditions["Progressing"].reason == "DrainBlocked"
    assert "cordoned node(s) gpu-node-0" in conditions["Progressing"].message
    assert conditions["Ready"].status == "True"  # it still serves
    assert "Evacuating" not in [e.reason for e in p.events]


def test_two_groups_on_the_drained_node_move_one_at_a_time() -> None:
    c = Cluster()
    both = spread(0, ("gpu-node-0", "gpu-node-4")) + spread(1, ("gpu-node-0", "gpu-node-5"))
    c.step(both + SURGE, at=1)
    assert (c.budget(0), c.budget(1)) == (RELAXED, 0)
    gone = [pod(0, r, terminating=True) for r in range(2)]
    c.step(gone + both[2:] + SURGE, at=3)
    assert (c.budget(0), c.budget(1)) == (0, 0)  # group 1 waits until group 0 is back
    moved = spread(0, ("gpu-node-3", "gpu-node-7"), uid="new")
    c.step(moved + both[2:] + SURGE, at=5)
    assert (c.budget(0), c.budget(1)) == (0, RELAXED)


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


def test_a_group_left_alone_on_the_drained_node_is_held_once_the_other_waits_for_room() -> None:
    c = Cluster()
    both = spread(0, ("gpu-node-0", "gpu-node-4")) + spread(1, ("gpu-node-0", "gpu-node-5"))
    stuck = [pod(2, r, unschedulable="0/8 nodes are available") for r in range(2)]
    c.step(both + stuck, at=1)
    assert (c.budget(0), c.budget(1)) == (RELAXED, 0)
    waiting = [pod(0, r, uid=f"new-{r}", unschedulable="0/8 nodes are available") for r in range(2)]
    p = c.step(waiting + both[2:], at=3)
    assert p.restart_groups == []
    assert (c.budget(0), c.budget(1)) == (0, 0)  # group 1 is all that serves: it stays
    progressing = {x.type: x for x in c.svc.status.conditions}["Progressing"]
    assert progressing.reason == "DrainBlocked"
    assert progressing.message.startswith("group 1 stays on cordoned node(s) gpu-node-0")
    assert p.recheck is None
