"""Leader election on the real API server: two operator processes, one Lease, failover times.

Both processes run cluster-wide with ``--leader-elect`` (client-go's default timing: a 15 s
Lease, renewed every 2 s) and ``--mark-leader-pod``, each named after a (never scheduled) pod.
Only the holder reconciles and carries the leader label on its pod; the standby serves /healthz,
makes no API writes but clearing its own label, and a leader that comes back as a standby
clears the label it kept. The measured failover times are printed (``pytest -s``) and
documented in the chart README ("High availability").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.plan.test_gitops_statuses import CASES

from e2e.helpers import apply, kubectl, kubectl_json, wait_for
from e2e.operator_process import OperatorProcess

LEASE = "e2e-leader"
LEASE_SECONDS = 15.0
RETRY_SECONDS = 2.0


def holder(namespace: str) -> str:
    proc = kubectl("get", "lease", LEASE, "-n", namespace, "-o", "json", check=False)
    if proc.returncode != 0:
        return ""
    lease = kubectl_json("get", "lease", LEASE, "-n", namespace)
    return str(lease["spec"].get("holderIdentity") or "")


def placeholder_pod(name: str) -> dict[str, Any]:
    """A pod no node takes: what the downward API names, for the label to land on."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"llmsvc.io/no-such-node": "true"},
            "containers": [{"name": "operator", "image": "registry.k8s.io/pause:3.10"}],
        },
    }


def leader_label(namespace: str, pod: str) -> str | None:
    labels = kubectl_json("get", "pod", pod, "-n", namespace)["metadata"].get("labels") or {}
    return labels.get("llmsvc.io/leader")


def wait_labels(namespace: str, leader: str, standby: str) -> None:
    wait_for(
        lambda: leader_label(namespace, leader) == "true" and not leader_label(namespace, standby),
        timeout=30,
        what=f"the leader label on pod {leader} only",
    )


@pytest.fixture
def candidates(cluster: object, namespace: str) -> Iterator[dict[str, OperatorProcess]]:
    args = ("--leader-elect", f"--leader-election-namespace={namespace}",
            f"--leader-election-name={LEASE}", "--mark-leader-pod")  # fmt: skip
    for name in ("a", "b"):
        apply(placeholder_pod(name), namespace)
        kubectl("label", "pod", name, "-n", namespace, "llmsvc.io/leader=true")  # a stale one
    procs = {
        n: OperatorProcess(extra_args=args, env={"POD_NAME": n, "POD_NAMESPACE": namespace})
        for n in ("a", "b")
    }
    try:
        yield procs
    finally:
        for proc in procs.values():
            proc.kill()


def _takeover(namespace: str, previous: str) -> tuple[str, float]:
    started = time.monotonic()
    new = wait_for(
        lambda: (h := holder(namespace)) not in ("", previous) and h,
        timeout=LEASE_SECONDS * 3,
        what="the standby to take the Lease over",
    )
    return str(new), time.monotonic() - started


def test_one_leader_reconciles_and_the_standby_takes_over(
    namespace: str, candidates: dict[str, OperatorProcess]
) -> None:
    for proc in candidates.values():
        proc.start()  # both answer /healthz: the standby too
    leader = str(wait_for(lambda: holder(namespace), timeout=30, what="a leader"))
    standby = "b" if leader == "a" else "a"
    wait_labels(namespace, leader, standby)  # the standby cleared the stale label at start
    manifest = CASES["fresh"][0]()
    manifest["metadata"] = {"name": "elected"}
    manifest.pop("status")
    apply(manifest, namespace)
    wait_for(
        lambda: (
            kubectl_json("get", "llmservice", "elected", "-n", namespace)["status"].get(
                "observedGeneration"
            )
            == 1
        ),
        timeout=60,
        what="the leader to reconcile",
    )
    assert candidates[standby].metric("llmsvc_operator_api_writes_total") == 0

    candidates[leader].kill()  # a crash: the Lease must expire first
    new, crash_seconds = _takeover(namespace, leader)
    assert new == standby
    assert crash_seconds <= LEASE_SECONDS + 3 * RETRY_SECONDS
    wait_for(lambda: leader_label(namespace, new) == "true", timeout=30, what="the new leader")
    assert leader_label(namespace, leader) == "true"  # killed: it could not clear its label

    candidates[leader].start()  # back as the standby: it clears the label it kept
    wait_labels(namespace, new, leader)
    candidates[new].stop()  # a clean shutdown clears its label and releases the Lease
    again, clean_seconds = _takeover(namespace, new)
    assert again == leader
    wait_labels(namespace, again, new)
    assert clean_seconds <= 3 * RETRY_SECONDS + 2
    print(f"\nfailover after SIGKILL: {crash_seconds:.1f} s; after SIGTERM: {clean_seconds:.1f} s")
