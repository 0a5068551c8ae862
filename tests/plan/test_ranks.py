"""Which pods are ranks (ownership, not labels) and exact restarts from remembered rank UIDs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from llmsvc.plan import Plan
from tests.plan.fixtures import healthy_group, pod, service, with_status
from tests.plan.test_planner import Live, converge, run


def stray(group: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pod someone labelled as one of llama's ranks; ``owner`` is its controller, if any."""
    p = pod(0, 0, uid=f"stray-{group}-{bool(owner)}")
    p["metadata"]["name"] = f"debug-{group}"
    p["metadata"]["labels"] = {"llmsvc.io/name": "llama", "llmsvc.io/group": group}
    p["metadata"]["ownerReferences"] = [owner] if owner else []
    return p


STRAYS = [
    stray("debug"),
    stray(""),
    stray("1"),
    stray("1", {"kind": "ReplicaSet", "name": "x", "uid": "uid-x", "controller": True}),
]


def uids(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["metadata"]["uid"] for o in objs)


def test_foreign_pods_never_stop_a_reconcile() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    p = run(svc, live, healthy_group(0) + healthy_group(1) + STRAYS, at=60)
    assert p.writes == 0
    assert p.events == []


def test_a_group_restart_deletes_only_pods_its_statefulset_controls() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    broken = [*healthy_group(0), pod(1, 0), pod(1, 1, uid="new"), *STRAYS]
    p = run(svc, live, broken, at=60)
    assert p.restart_groups == [1]
    assert uids(p.evict) == ["new", "pod-1-0"]


def test_a_statefulset_we_do_not_own_lends_its_pods_no_group() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    live[("StatefulSet", "llama-1")]["metadata"]["ownerReferences"] = [{"uid": "someone"}]
    p = run(svc, live, [*healthy_group(0), pod(1, 0, restarts=3), pod(1, 1)], at=60)
    assert p.restart_groups == []
    assert p.evict == []


def test_a_stale_statefulset_with_a_malformed_group_label_is_still_pruned() -> None:
    svc, live = converge(service(replicas=3), [])
    live[("StatefulSet", "llama-2")]["metadata"]["labels"]["llmsvc.io/group"] = "debug"
    smaller = with_status(service(replicas=2), svc.status.wire())
    deleted = run(smaller, live, []).delete
    assert [o["metadata"]["name"] for o in deleted if o["kind"] == "StatefulSet"] == ["llama-2"]


def step(svc: Any, live: Live, pods: list[dict[str, Any]], at: float) -> tuple[Any, Plan]:
    """One reconcile whose status is written back, as the controller would."""
    p = run(svc, live, pods, at=at)
    return (with_status(svc, p.status) if p.status is not None else svc), p


def test_a_worker_replaced_two_seconds_after_start_restarts_its_group() -> None:
    svc, live = converge(service(), [])
    started = healthy_group(0) + healthy_group(1, ready=False)
    svc, _ = step(svc, live, started, at=0)
    assert svc.status.groups[1].pod_uids == ["pod-1-0", "pod-1-1"]
    replaced = [*healthy_group(0), pod(1, 0), pod(1, 1, uid="new", created=timedelta(seconds=2))]
    svc, p = step(svc, live, replaced, at=2)
    assert p.restart_groups == [1]
    assert [e.reason for e in p.events] == ["GroupRestarted"]
    assert "a rank was replaced" in p.events[0].message


def test_ranks_of_a_restarted_group_recreated_far_apart_cause_no_second_restart() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    broken = [*healthy_group(0), pod(1, 0), pod(1, 1, restarts=1)]
    svc, p = step(svc, live, broken, at=100)
    assert p.restart_groups == [1]
    timeline = [  # the leader comes back at once, the worker takes 40 s to terminate
        (101, [pod(1, 0, uid="a"), pod(1, 1, restarts=1, terminating=True)]),
        (120, [pod(1, 0, uid="a"), pod(1, 1, restarts=1, terminating=True)]),
        (141, [pod(1, 0, uid="a"), pod(1, 1, uid="b", created=timedelta(seconds=141))]),
        (400, [pod(1, 0, uid="a"), pod(1, 1, uid="b", created=timedelta(seconds=141))]),
    ]
    for at, group1 in timeline:
        svc, p = step(svc, live, healthy_group(0) + group1, at=at)
        assert p.restart_groups == [], f"restarted again at {at} s"
    assert svc.status.groups[1].restarts == 1
    assert svc.status.groups[1].pod_uids == ["a", "b"]
    assert svc.status.groups[1].phase == "Ready"
