"""A batch of new LLMServices being applied goes first: the operator creates none of their
children until the client's requests stop arriving for half a second (``arrival_quiet``), so a
`kubectl apply` or GitOps sync of hundreds is not slowed by the thousands of writes it causes.

Ordered by etcd itself: the resourceVersion of each object as created is etcd's revision of that
write, and every StatefulSet is created after the batch's last LLMService. Without the hold the
operator starts creating after its 0.5 s debounce, while kubectl still has most of the batch to
send. That a single new LLMService is not held is timed in tests/controller/test_priority.py."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

from e2e.helpers import apply_timeout, kubectl, to_yaml
from e2e.operator_process import OperatorProcess
from e2e.test_operator import llmservice

BATCH = 80  # about 1.5 s of kubectl apply on the 2-core local cluster, 3x the debounce
CHILDREN_WITHIN = 120.0  # seconds after the batch for the first StatefulSet, on a loaded CI


def first_statefulset(namespace: str) -> subprocess.Popen[str]:
    """`kubectl get statefulsets --watch`, printing each object's resourceVersion."""
    return subprocess.Popen(
        ["kubectl", "get", "statefulsets", "-n", namespace, "--watch",
         "-o", "jsonpath={.metadata.resourceVersion}{\"\\n\"}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_children_of_a_batch_are_created_after_the_batch(
    operator: OperatorProcess, namespace: str
) -> None:
    watch = first_statefulset(namespace)
    try:
        batch = [llmservice(f"b{i}") for i in range(BATCH)]
        out = kubectl("apply", "-n", namespace, "-f", "-", "-o", "json",
                      input=to_yaml(batch), timeout=apply_timeout(BATCH))  # fmt: skip
        created = json.loads(out.stdout)["items"]
        assert len(created) == BATCH
        last = max(int(obj["metadata"]["resourceVersion"]) for obj in created)
        assert watch.stdout is not None
        with ThreadPoolExecutor(1) as pool:  # killing the watch ends a readline still waiting
            line = pool.submit(watch.stdout.readline)
            try:
                first = line.result(timeout=CHILDREN_WITHIN).strip()
            except TimeoutError:
                first = ""
            finally:
                watch.kill()
        assert first, f"no StatefulSet within {CHILDREN_WITHIN:.0f} s of the batch"
    finally:
        watch.kill()
        watch.wait()
    assert int(first) > last, "a child was created while the batch was still arriving"
