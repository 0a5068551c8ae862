"""A cordoned or drained node under an LLMService: the group moves, replacement first.

Each test gives its LLMService a private pool of fake GPU nodes. The operator sees the cordoned
node, brings a surge group up elsewhere first, then relaxes the moving group's disruption budget so
that ``kubectl drain``'s own eviction takes its rank (the operator deletes it itself after a short
window when nobody drains). Serving capacity (Ready leaders, which the router sends requests to,
and ``status.readyReplicas``, sampled all along) never drops below two, no group ever mixes pod
templates, and ``kubectl drain`` exits 0.

With no room for a surge group, the group moves alone while the other serves (an Event says so)
and waits, Progressing=WaitingForNodes, until a node has room: the drain still completes. The only
group of a one-replica service is never moved without a replacement: its budget keeps blocking
the drain and the status says why (Progressing=DrainBlocked).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

from e2e.gang_helpers import add_nodes, node, placement, pool
from e2e.helpers import apply, created, events_of, is_ready, kubectl, kubectl_json, pods, wait_for
from e2e.operator_process import OperatorProcess
from e2e.test_operator import get, llmservice, wait_ready

ONE_NODE = {"tensor": 8, "gpusPerNode": 8}  # one group = one 8-GPU pod
DRAIN_TIMEOUT = 60


def ranks(namespace: str, name: str) -> list[dict[str, Any]]:
    return [p for p in pods(namespace, f"llmsvc.io/name={name},llmsvc.io/group")
            if not p["metadata"].get("deletionTimestamp")]  # fmt: skip


def ready_leaders(items: list[dict[str, Any]]) -> int:
    return sum(1 for p in items if is_ready(p)
               and p["metadata"]["labels"].get("apps.kubernetes.io/pod-index") == "0")  # fmt: skip


def mixed_groups(items: list[dict[str, Any]]) -> list[str]:
    revisions: dict[str, set[str]] = {}
    for p in items:
        labels = p["metadata"]["labels"]
        revisions.setdefault(labels["llmsvc.io/group"], set()).add(
            labels.get("controller-revision-hash", "")
        )
    return [g for g, revs in revisions.items() if len(revs) > 1]


def drain(node_name: str, timeout: int = DRAIN_TIMEOUT) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "kubectl",
            "drain",
            node_name,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            f"--timeout={timeout}s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def watch(namespace: str, name: str, done: Callable[[], bool], seconds: float) -> tuple[int, int]:
    """Poll until ``done()``; return the fewest Ready leaders and the lowest
    ``status.readyReplicas`` seen on the way."""
    leaders, reported = 99, 99
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "timed out"
        items = ranks(namespace, name)
        leaders = min(leaders, ready_leaders(items))
        reported = min(reported, int(get(name, namespace)["status"].get("readyReplicas") or 0))
        assert mixed_groups(items) == [], "a group mixes pod templates"
        time.sleep(0.3)
    return leaders, reported


def moved_off(namespace: str, name: str, victim: str) -> Callable[[], bool]:
    def done() -> bool:
        items = ranks(namespace, name)
        return (victim not in [p["spec"].get("nodeName") for p in items]
                and ready_leaders(items) >= 2 and not any(
                    p["metadata"]["labels"]["llmsvc.io/group"] == "2" for p in items))  # fmt: skip

    return done


def watch_drain(namespace: str, name: str, proc: subprocess.Popen[str]) -> tuple[int, int]:
    """Poll while the drain runs; return the fewest Ready leaders and readyReplicas seen."""
    started = time.monotonic()
    fewest = watch(namespace, name, lambda: proc.poll() is not None, DRAIN_TIMEOUT + 10)
    output = proc.communicate(timeout=10)[0]
    assert proc.returncode == 0, f"kubectl drain did not complete:\n{output}"
    print(f"kubectl drain completed in {time.monotonic() - started:.1f}s")
    return fewest


def budget(namespace: str, name: str) -> Any:
    return kubectl_json("get", "pdb", name, "-n", namespace)["spec"]["maxUnavailable"]


def progressing(namespace: str, name: str) -> dict[str, Any]:
    return next(c for c in get(name, namespace)["status"]["conditions"]
                if c["type"] == "Progressing")  # fmt: skip


def node_of_group(namespace: str, name: str, g: int) -> str:
    (leader,) = pods(namespace, f"llmsvc.io/name={name},llmsvc.io/group={g}")
    return str(leader["spec"]["nodeName"])


def test_a_cordon_moves_a_group_after_its_replacement_is_ready(
    operator: OperatorProcess, namespace: str
) -> None:
    with pool(f"cordon-{namespace}") as name:
        add_nodes(*(node(f"{name}-{i}", name) for i in range(4)))
        svc = llmservice("co", replicas=2, parallelism=ONE_NODE, scheduling=placement(name))
        apply(svc, namespace)
        wait_ready("co", namespace)
        victim = node_of_group(namespace, "co", 0)
        kubectl("cordon", victim)
        leaders, reported = watch(namespace, "co", moved_off(namespace, "co", victim), 90)
        assert leaders >= 2, f"serving capacity dropped to {leaders} Ready replicas"
        assert reported >= 2, f"status.readyReplicas dropped to {reported}"
        reasons = [e["reason"] for e in events_of(namespace, "co")]
        assert "Evacuating" in reasons
        assert "StatefulSet co-2" in created(events_of(namespace, "co"))
        wait_ready("co", namespace)


def test_drain_completes_after_the_group_moved(operator: OperatorProcess, namespace: str) -> None:
    with pool(f"drain-{namespace}") as name:
        add_nodes(*(node(f"{name}-{i}", name) for i in range(4)))
        svc = llmservice("dr", replicas=2, parallelism=ONE_NODE, scheduling=placement(name))
        apply(svc, namespace)
        wait_ready("dr", namespace)
        victim = node_of_group(namespace, "dr", 0)
        leaders, reported = watch_drain(namespace, "dr", drain(victim))
        assert leaders >= 2, f"serving capacity dropped to {leaders} Ready replicas"
        assert reported >= 2, f"status.readyReplicas dropped to {reported}"
        assert victim not in [p["spec"].get("nodeName") for p in ranks(namespace, "dr")]
        wait_for(lambda: not pods(namespace, "llmsvc.io/name=dr,llmsvc.io/group=2"),
                 timeout=60, what="surge group removed")  # fmt: skip
        wait_ready("dr", namespace)
        reasons = [e["reason"] for e in events_of(namespace, "dr")]
        assert "Evacuating" in reasons
        assert "GroupRestarted" not in reasons  # a move, not a failure
        # the budgets are tight again; the surge group's went with it
        assert [budget(namespace, f"dr-{g}") for g in (0, 1)] == [0, 0]
        wait_for(lambda: not kubectl_json("get", "pdb", "-n", namespace, "-l",
                                          "llmsvc.io/name=dr,llmsvc.io/group=2")["items"],
                 timeout=30, what="surge budget removed")  # fmt: skip


def test_a_drain_without_room_for_a_surge_completes_with_one_group_serving(
    operator: OperatorProcess, namespace: str
) -> None:
    with pool(f"tightdr-{namespace}") as name:
        add_nodes(*(node(f"{name}-{i}", name) for i in range(3)))
        svc = llmservice("td", replicas=2, parallelism=ONE_NODE, scheduling=placement(name))
        apply(svc, namespace)
        wait_ready("td", namespace)
        spare = next(f"{name}-{i}" for i in range(3) if f"{name}-{i}" not in
                     {p["spec"].get("nodeName") for p in ranks(namespace, "td")})  # fmt: skip
        kubectl("cordon", spare)  # taken by something else: no room for a surge group
        victim = node_of_group(namespace, "td", 0)
        leaders, _ = watch_drain(namespace, "td", drain(victim))
        assert leaders >= 1, f"serving capacity dropped to {leaders} Ready replicas"
        reasons = [e["reason"] for e in events_of(namespace, "td")]
        assert "SurgeUnschedulable" in reasons  # "no room for surge group 2: ... one at a time"
        assert victim not in [p["spec"].get("nodeName") for p in ranks(namespace, "td")]
        wait_for(lambda: progressing(namespace, "td")["reason"] == "WaitingForNodes",
                 timeout=30, what="the moved group waits for room")  # fmt: skip
        kubectl("uncordon", spare)
        wait_ready("td", namespace)


def test_a_drain_never_moves_the_only_group_without_a_replacement(
    operator: OperatorProcess, namespace: str
) -> None:
    with pool(f"onlydr-{namespace}") as name:
        add_nodes(*(node(f"{name}-{i}", name) for i in range(2)))
        svc = llmservice("od", replicas=1, parallelism=ONE_NODE, scheduling=placement(name))
        apply(svc, namespace)
        wait_ready("od", namespace)
        victim = node_of_group(namespace, "od", 0)
        kubectl("cordon", next(f"{name}-{i}" for i in range(2) if f"{name}-{i}" != victim))
        proc = drain(victim, timeout=20)
        leaders, reported = watch(namespace, "od", lambda: proc.poll() is not None, 40)
        output = proc.communicate(timeout=10)[0]
        assert proc.returncode != 0, f"the drain broke the only group:\n{output}"
        assert "Cannot evict pod as it would violate the pod's disruption budget" in output
        assert (leaders, reported) == (1, 1)
        assert node_of_group(namespace, "od", 0) == victim
        blocked = progressing(namespace, "od")
        assert blocked["reason"] == "DrainBlocked", blocked
        assert victim in blocked["message"]
        assert budget(namespace, "od-0") == 0


def test_a_cordon_without_room_for_a_surge_moves_one_group_and_says_so(
    operator: OperatorProcess, namespace: str
) -> None:
    with pool(f"tight-{namespace}") as name:
        add_nodes(*(node(f"{name}-{i}", name) for i in range(3)))
        svc = llmservice("tight", replicas=2, parallelism=ONE_NODE, scheduling=placement(name))
        apply(svc, namespace)
        wait_ready("tight", namespace)
        # the node no group uses is taken by something else: no room for a surge group
        used = {p["spec"].get("nodeName") for p in ranks(namespace, "tight")}
        free = sorted({f"{name}-{i}" for i in range(3)} - used)
        assert len(free) == 1, f"two one-node groups should leave one of 3 nodes free: {used}"
        kubectl("cordon", free[0])
        victim = node_of_group(namespace, "tight", 0)
        kubectl("cordon", victim)

        def moved() -> bool:
            on_victim = [
                p for p in ranks(namespace, "tight") if p["spec"].get("nodeName") == victim
            ]
            reasons = [e["reason"] for e in events_of(namespace, "tight")]
            return not on_victim and "SurgeUnschedulable" in reasons

        leaders, _ = watch(namespace, "tight", moved, 90)
        assert leaders >= 1
        reasons = [e["reason"] for e in events_of(namespace, "tight")]
        assert "SurgeUnschedulable" in reasons  # "no room for surge group 2: ... one at a time"
        # the moved group waits for room (Degraded=Unschedulable only after the grace period)
        wait_for(lambda: progressing(namespace, "tight")["reason"] == "WaitingForNodes",
                 timeout=30, what="the moved group waits for room")  # fmt: skip
        kubectl("uncordon", free[0])
        wait_ready("tight", namespace)
