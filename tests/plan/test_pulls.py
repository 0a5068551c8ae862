"""Where each rank's weight pull is (``PodFacts.pull_state``) and the counts a plan carries."""

from __future__ import annotations

from typing import Any

import pytest

from llmsvc.plan.pods import pod_facts
from tests.plan.fixtures import OWNERS, pod, service
from tests.plan.test_planner import PULL_LOG, converge, run


def _with_puller(state: dict[str, Any], last_exit: int | None = None) -> dict[str, Any]:
    raw = pod(0, 0, ready=False, phase="Pending")
    puller: dict[str, Any] = {"name": "pull", "state": state, "restartCount": 0}
    if last_exit is not None:
        puller["lastState"] = {"terminated": {"exitCode": last_exit, "message": "boom"}}
    raw["status"]["initContainerStatuses"] = [puller]
    return raw


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        (_with_puller({"waiting": {"reason": "PodInitializing"}}), "pending"),
        (pod(0, 0, ready=False, phase="Pending"), "pending"),  # not started: no status yet
        (_with_puller({"running": {"startedAt": "2026-01-01T00:00:00Z"}}), "running"),
        (pod(0, 0, pull_log=PULL_LOG), "failed"),  # CrashLoopBackOff after exit 4
        (_with_puller({"running": {}}, last_exit=6), "failed"),  # retrying after a failure
        (_with_puller({"terminated": {"exitCode": 5}}), "failed"),
        (_with_puller({"terminated": {"exitCode": 0}}, last_exit=6), "done"),
        (pod(0, 0), "done"),  # Running: past its init containers
    ],
)
def test_pull_state_of_a_rank(raw: dict[str, Any], state: str) -> None:
    facts = pod_facts(raw, OWNERS)
    assert facts is not None
    assert facts.pull_state == state


def test_plan_counts_live_ranks_by_pull_state() -> None:
    svc, live = converge(service(), [])
    pods = [
        pod(0, 0, ready=False, pull_log=PULL_LOG),
        _with_puller({"running": {}}),
        pod(1, 0),
        pod(1, 1),
        pod(1, 1, terminating=True, uid="old"),  # on its way out: not counted
    ]
    pods[1]["metadata"] |= {"name": "llama-0-1", "uid": "pod-0-1"}
    assert run(svc, live, pods).pulls == {"pending": 0, "running": 1, "failed": 1, "done": 2}
