"""The operator against hostile objects and faults on the real local control plane (issue 13).

Foreign pods carrying our labels, quantities in non-canonical spelling, ranks replaced at awkward
moments and children the API server refuses: each observed through the API server, with the
operator as a real process (see e2e/test_operator.py for the basics).
"""

from __future__ import annotations

import time
from typing import Any

from e2e.helpers import apply, events_of, is_ready, kubectl, kubectl_json, wait_for
from e2e.operator_process import RESYNC_SECONDS, OperatorProcess
from e2e.test_operator import (
    READY_TIMEOUT,
    children,
    condition,
    get,
    group_pods,
    llmservice,
    uids,
    wait_ready,
)

TWO_NODES = {"tensor": 2, "pipeline": 2, "gpusPerNode": 2}


def stray_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A pod someone else made (a debug pod) that carries an LLMService's labels."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "containers": [{"name": "debug", "image": "registry.k8s.io/pause:3.10"}],
            "enableServiceLinks": False,
        },
    }


def restarts_of(name: str, ns: str) -> dict[int, int]:
    return {g["index"]: g["restarts"] for g in get(name, ns)["status"].get("groups", [])}


def replaced(
    ns: str, name: str, group: int, before: set[str], ignore: frozenset[str] = frozenset()
) -> bool:
    """Every rank of ``group`` (pods with uids in ``ignore`` are not ranks) is new, and Ready."""
    now = [p for p in group_pods(ns, name, group) if p["metadata"]["uid"] not in ignore]
    return len(now) == 2 and uids(now).isdisjoint(before) and all(is_ready(p) for p in now)


def test_stray_pods_never_stop_a_reconcile_nor_die_in_a_restart(
    operator: OperatorProcess, namespace: str
) -> None:
    strays = [
        stray_pod("debug", {"llmsvc.io/name": "stray", "llmsvc.io/group": "debug"}),
        stray_pod("impostor", {"llmsvc.io/name": "stray", "llmsvc.io/group": "1"}),
    ]
    apply(strays, namespace)
    stray_uids = frozenset(
        uids(kubectl_json("get", "pods", "debug", "impostor", "-n", namespace)["items"])
    )
    apply(llmservice("stray", replicas=2, parallelism=TWO_NODES), namespace)
    wait_ready("stray", namespace)
    before = uids(group_pods(namespace, "stray", 1)) - stray_uids
    kubectl("delete", "pod", "stray-1-1", "-n", namespace, "--wait=false")
    wait_for(
        lambda: replaced(namespace, "stray", 1, before, ignore=stray_uids),
        timeout=60,
        what="both ranks of group 1 recreated",
    )
    wait_ready("stray", namespace)
    assert restarts_of("stray", namespace)[1] == 1
    left = kubectl_json("get", "pods", "debug", "impostor", "-n", namespace)["items"]
    assert uids(left) == stray_uids, "a group restart deleted a pod the group does not own"


def test_quantities_in_any_spelling_make_no_writes_at_rest(
    operator: OperatorProcess, namespace: str
) -> None:
    resources = {
        "requests": {"cpu": "0.5", "memory": "1024Mi"},
        "limits": {"cpu": "1.5", "memory": "2048Mi"},
    }
    engine = {"maxModelLen": 4096, "resources": resources}
    apply(llmservice("spelling", engine=engine), namespace)
    wait_ready("spelling", namespace)
    stored = kubectl_json("get", "sts", "spelling-0", "-n", namespace)["spec"]["template"]["spec"]
    engine_resources = next(c for c in stored["containers"] if c["name"] == "engine")["resources"]
    assert engine_resources["requests"]["cpu"] == "500m"  # the server's own spelling
    operator.settle(2 * RESYNC_SECONDS)
    versions = {c["kind"] + c["metadata"]["name"]: c["metadata"]["resourceVersion"]
                for c in children("spelling", namespace)}  # fmt: skip
    own = get("spelling", namespace)["metadata"]["resourceVersion"]
    writes = operator.writes(namespace)
    operator.settle(4 * RESYNC_SECONDS)
    assert operator.writes(namespace) == writes, "a resync re-applied an unchanged object"
    assert get("spelling", namespace)["metadata"]["resourceVersion"] == own
    assert {c["kind"] + c["metadata"]["name"]: c["metadata"]["resourceVersion"]
            for c in children("spelling", namespace)} == versions  # fmt: skip


def test_worker_deleted_two_seconds_after_its_group_started_restarts_the_group(
    operator: OperatorProcess, namespace: str
) -> None:
    apply(llmservice("early", parallelism=TWO_NODES), namespace)

    def both_ranks() -> set[str] | None:
        ranks = uids(group_pods(namespace, "early", 0))
        return ranks if len(ranks) == 2 else None

    first = wait_for(both_ranks, timeout=30, interval=0.05, what="both ranks created")
    started = time.monotonic()

    def remembered() -> bool:  # on a loaded machine the operator may need a moment
        groups = get("early", namespace).get("status", {}).get("groups", [])
        return bool(groups) and set(groups[0].get("podUIDs", [])) == first

    wait_for(remembered, timeout=30, what="the operator to remember both ranks")
    time.sleep(max(0.0, 2 - (time.monotonic() - started)))
    # Forced, as when a lost node's pods are garbage-collected: the operator never sees the pod
    # terminating, only its replacement, a rank created two seconds after the others.
    kubectl("delete", "pod", "early-0-1", "-n", namespace, "--grace-period=0", "--force")
    wait_for(
        lambda: replaced(namespace, "early", 0, first),
        timeout=60,
        what="the whole group restarted (the leader replaced too)",
    )
    wait_ready("early", namespace)
    assert restarts_of("early", namespace)[0] == 1
    now = set(get("early", namespace)["status"]["groups"][0]["podUIDs"])
    assert now == uids(group_pods(namespace, "early", 0))


def test_ranks_of_a_restarted_group_recreated_far_apart_restart_it_once(
    operator: OperatorProcess, namespace: str
) -> None:
    apply(llmservice("slow", parallelism=TWO_NODES), namespace)
    wait_ready("slow", namespace)
    first = uids(group_pods(namespace, "slow", 0))
    hold = '{"metadata":{"finalizers":["e2e.llmsvc.io/hold"]}}'
    kubectl("patch", "pod", "slow-0-1", "-n", namespace, "--type=merge", "-p", hold)
    kubectl("delete", "pod", "slow-0-0", "-n", namespace, "--wait=false")

    def worker_held_terminating() -> bool:
        worker = kubectl_json("get", "pod", "slow-0-1", "-n", namespace)
        return bool(worker["metadata"].get("deletionTimestamp"))

    wait_for(worker_held_terminating, timeout=30, what="the restart to delete the held worker")
    time.sleep(8)  # the new leader runs long before its worker can be recreated
    release = '{"metadata":{"finalizers":null}}'
    kubectl("patch", "pod", "slow-0-1", "-n", namespace, "--type=merge", "-p", release)
    wait_for(
        lambda: replaced(namespace, "slow", 0, first),
        timeout=60,
        what="both ranks recreated",
    )
    wait_ready("slow", namespace)
    operator.settle(3 * RESYNC_SECONDS)
    assert restarts_of("slow", namespace)[0] == 1
    restarted = [e for e in events_of(namespace, "slow") if e["reason"] == "GroupRestarted"]
    assert sum(e.get("count", 1) for e in restarted) == 1


def test_a_child_the_api_server_rejects_is_degraded_with_its_message(
    operator: OperatorProcess, namespace: str
) -> None:
    resources = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
    apply(llmservice("refused", engine={"maxModelLen": 4096, "resources": resources}), namespace)

    def degraded() -> dict[str, Any]:
        cond = condition(get("refused", namespace), "Degraded")
        return cond if cond.get("reason") == "ApplyRejected" else {}

    cond = wait_for(degraded, timeout=READY_TIMEOUT, what="Degraded=ApplyRejected")
    assert cond["status"] == "True"
    assert "StatefulSet/refused-0" in cond["message"]
    assert "must be less than or equal to cpu limit" in cond["message"]
    assert condition(get("refused", namespace), "Ready")["reason"] == "ApplyRejected"
    wait_for(
        lambda: any(e["reason"] == "ApplyRejected" for e in events_of(namespace, "refused")),
        timeout=30,
        what="an ApplyRejected Event",
    )
    kubectl("get", "service", "refused", "-n", namespace)  # the rest was applied
    operator.settle(3 * RESYNC_SECONDS)
    rejected = [e for e in events_of(namespace, "refused") if e["reason"] == "ApplyRejected"]
    assert sum(e.get("count", 1) for e in rejected) == 1, "the same rejection reported again"
