"""The operator's weight-pull gauge against the real API server: rank pods per pull state.

``llmsvc_operator_llmservice_pulls{state}`` is read from the pods' init container statuses as the
API server serves them: KWOK's fake kubelet completes the ``pull`` init container of a scheduled
pod, and an unschedulable pod has not started it. (A failing puller on a real kubelet:
e2e/test_realnode_pull.py.)
"""

from __future__ import annotations

from e2e.helpers import apply, wait_for
from e2e.operator_process import OperatorProcess
from e2e.test_operator import llmservice, wait_ready

PULLS = "llmsvc_operator_llmservice_pulls"


def pulls(operator: OperatorProcess, ns: str, name: str) -> dict[str, float]:
    who = f'llmservice="{name}",namespace="{ns}"'
    states = ("pending", "running", "failed", "done")
    return {s: operator.metric(PULLS, f'{who},state="{s}"') for s in states}


def test_pull_gauge_counts_ranks_by_init_container_state(
    operator: OperatorProcess, namespace: str
) -> None:
    apply(llmservice("two", replicas=2), namespace)
    apply(llmservice("huge", parallelism={"tensor": 16, "gpusPerNode": 16}), namespace)
    wait_ready("two", namespace)
    done = {"pending": 0, "running": 0, "failed": 0, "done": 2}
    wait_for(lambda: pulls(operator, namespace, "two") == done, timeout=30, what="2 pulls done")
    waiting = {"pending": 1, "running": 0, "failed": 0, "done": 0}
    wait_for(
        lambda: pulls(operator, namespace, "huge") == waiting, timeout=30, what="1 pull pending"
    )
