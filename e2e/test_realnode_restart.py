"""A rank that really dies on the real node: the operator restarts its whole group, once.

The worker's engine process is killed from this machine (the container exits for real); with
vLLM's native multi-node launch rank 0 then loses its peer too. The ranks shut down at different
speeds on SIGTERM (``LLMSVC_SIM_STOP_SECONDS``, inside the real 60 s termination grace period),
which must not count as a second failure. (That other groups stay untouched is checked on the KWOK
nodes in test_operator.py: two more ranks do not fit the real node's two CPUs, because each
rank's puller init container requests one.)
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

from e2e import realnode
from e2e.helpers import apply, kubectl_json, pods, wait_for
from e2e.operator_process import OperatorProcess

READY_TIMEOUT = 240.0
SELECTOR = "llmsvc.io/group=0"


def group_status(namespace: str, name: str) -> realnode.Manifest:
    """status.groups[0] of the LLMService."""
    groups = realnode.llmservice_status(namespace, name).get("status", {}).get("groups") or [{}]
    return dict(groups[0])


def uids(namespace: str) -> dict[str, str]:
    """Pod name -> uid of group 0's live pods."""
    return {
        p["metadata"]["name"]: p["metadata"]["uid"]
        for p in pods(namespace, SELECTOR)
        if not p["metadata"].get("deletionTimestamp")
    }


def test_killed_worker_restarts_the_whole_group_once(
    real_operator: OperatorProcess, real_namespace: str, tiny_model: tuple[str, Counter[str]]
) -> None:
    ns = real_namespace
    stop_speeds = {"LLMSVC_SIM_STOP_SECONDS": "1,15"}  # rank 1 takes 15 s to stop
    apply(realnode.llmservice("grp", tiny_model[0], nodes=2, env=stop_speeds), ns)
    realnode.wait_condition(ns, "grp", "Ready", READY_TIMEOUT)
    before = uids(ns)
    assert sorted(before) == ["grp-0-0", "grp-0-1"]
    assert group_status(ns, "grp").get("restarts", 0) == 0

    os.kill(realnode.engine_pid(realnode.pod(ns, "grp-0-1")), signal.SIGKILL)

    def recreated() -> dict[str, str] | None:
        now = uids(ns)
        fresh = len(now) == 2 and not set(now.values()) & set(before.values())
        return now if fresh and realnode.is_ready_service(ns, "grp") else None

    after = wait_for(recreated, timeout=READY_TIMEOUT, interval=1, what="the group recreated")
    assert group_status(ns, "grp")["restarts"] == 1
    # The slow rank's old pod finished terminating long ago; nothing counts it as a new failure.
    time.sleep(25)
    assert uids(ns) == after
    status = group_status(ns, "grp")
    assert status["restarts"] == 1, status
    assert status["phase"] == "Ready", status
    assert kubectl_json("get", "llmservice", "grp", "-n", ns)["status"]["readyReplicas"] == 1
