"""A cordoned or drained node under a two-replica LLMService: the group moves, replacement first.

Each test gives its LLMService a private pool of fake GPU nodes. The operator sees the cordoned
node, brings a surge group up elsewhere first, then moves the group; serving capacity (Ready
leaders, which the router sends requests to) never drops below two, and no group ever mixes pod
templates.

KNOWN GAP (strict xfail below): ``kubectl drain`` itself does not complete yet. kubectl evicts
by pod NAME and retries on 429; the StatefulSet re-creates the moved rank under the same name on
another node, which the group's budget protects, so kubectl keeps retrying until its timeout.

With no room for a surge group, the group moves alone (an Event says so) and waits,
Progressing=WaitingForNodes (Degraded=Unschedulable after the grace period), until a node has room.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from e2e.gang_helpers import add_nodes, node, placement, pool
from e2e.helpers import apply, is_ready, kubectl, pods, wait_for
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


def drain(node_name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "kubectl",
            "drain",
            node_name,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            f"--timeout={DRAIN_TIMEOUT}s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def watch(namespace: str, name: str, done: Callable[[], bool], seconds: float) -> int:
    """Poll until ``done()``; return the fewest Ready leaders seen on the way."""
    fewest = 99
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "timed out"
        items = ranks(namespace, name)
        fewest = min(fewest, ready_leaders(items))
        assert mixed_groups(items) == [], "a group mixes pod templates"
        time.sleep(0.3)
    return fewest


def moved_off(namespace: str, name: str, victim: str) -> Callable[[], bool]:
    def done() -> bool:
        items = ranks(namespace, name)
        return (victim not in [p["spec"].get("nodeName") for p in items]
                and ready_leaders(items) >= 2 and not any(
                    p["metadata"]["labels"]["llmsvc.io/group"] == "2" for p in items))  # fmt: skip

    return done


def watch_drain(namespace: str, name: str, proc: subprocess.Popen[str]) -> int:
    """Poll while the drain runs; return the fewest Ready leaders seen."""
    fewest = watch(namespace, name, lambda: proc.poll() is not None, DRAIN_TIMEOUT + 10)
    output = proc.communicate(timeout=10)[0]
    assert proc.returncode == 0, f"kubectl drain did not complete:\n{output}"
    return fewest


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
        fewest = watch(namespace, "co", moved_off(namespace, "co", victim), 90)
        assert fewest >= 2, f"serving capacity dropped to {fewest} Ready replicas"
        reasons = [e["reason"] for e in kubectl_events(namespace, "co")]
        assert "Evacuating" in reasons
        assert "created StatefulSet co-2" in [e["message"] for e in kubectl_events(namespace, "co")]
        wait_ready("co", namespace)


@pytest.mark.xfail(strict=True, reason="kubectl drain evicts by name; see the module docstring")
def test_drain_completes_after_the_group_moved(operator: OperatorProcess, namespace: str) -> None:
    with pool(f"drain-{namespace}") as name:
        add_nodes(*(node(f"{name}-{i}", name) for i in range(4)))
        svc = llmservice("dr", replicas=2, parallelism=ONE_NODE, scheduling=placement(name))
        apply(svc, namespace)
        wait_ready("dr", namespace)
        victim = node_of_group(namespace, "dr", 0)
        fewest = watch_drain(namespace, "dr", drain(victim))
        assert fewest >= 2, f"serving capacity dropped to {fewest} Ready replicas"
        assert victim not in [p["spec"].get("nodeName") for p in ranks(namespace, "dr")]
        wait_for(lambda: not pods(namespace, "llmsvc.io/name=dr,llmsvc.io/group=2"),
                 timeout=60, what="surge group removed")  # fmt: skip
        wait_ready("dr", namespace)
        reasons = [e["reason"] for e in kubectl_events(namespace, "dr")]
        assert "Evacuating" in reasons


def test_a_cordon_without_room_for_a_surge_moves_one_group_and_says_so(
    operator: OperatorProcess, namespace: str
) -> None:
    with pool(f"tight-{namespace}") as name:
        add_nodes(*(node(f"{name}-{i}", name) for i in range(3)))
        svc = llmservice("tight", replicas=2, parallelism=ONE_NODE, scheduling=placement(name))
        apply(svc, namespace)
        wait_ready("tight", namespace)
        # the third node is taken by something else: no room for a surge group
        kubectl("cordon", f"{name}-2")
        spare = {n["spec"].get("nodeName") for n in ranks(namespace, "tight")}
        assert f"{name}-2" not in spare
        victim = node_of_group(namespace, "tight", 0)
        kubectl("cordon", victim)

        def moved() -> bool:
            on_victim = [
                p for p in ranks(namespace, "tight") if p["spec"].get("nodeName") == victim
            ]
            reasons = [e["reason"] for e in kubectl_events(namespace, "tight")]
            return not on_victim and "SurgeUnschedulable" in reasons

        fewest = watch(namespace, "tight", moved, 90)
        assert fewest >= 1
        reasons = [e["reason"] for e in kubectl_events(namespace, "tight")]
        assert "SurgeUnschedulable" in reasons  # "no room for surge group 2: ... one at a time"
        progressing = next(c for c in get("tight", namespace)["status"]["conditions"]
                           if c["type"] == "Progressing")  # fmt: skip
        # the moved group waits for room (Degraded=Unschedulable only after the grace period)
        assert progressing["reason"] == "WaitingForNodes", progressing
        kubectl("uncordon", f"{name}-2")
        wait_ready("tight", namespace)


def kubectl_events(namespace: str, name: str) -> list[dict[str, Any]]:
    from e2e.helpers import kubectl_json

    items: list[dict[str, Any]] = kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items
