"""The operator serves its reconciles from watch caches: quiet at rest, yet quick to react.

Measured by kube-apiserver itself (``apiserver_request_total``): with several LLMServices Ready
and a resync every 2 s, the operator makes no GET or LIST request (and no write) in a minute at
rest, where it used to read each LLMService and list its children on every resync. With the
resync turned off in practice (an hour), a deleted pod still restarts its group and a deleted or
changed child is still repaired at once: watch events alone drive the reconciles. Both operators
run in namespaced mode (``--namespace``), as the Helm chart's ``watchNamespaces`` runs them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from e2e.helpers import (
    apiserver_requests,
    apply,
    is_ready,
    kubectl,
    kubectl_json,
    reads_between,
    wait_for,
)
from e2e.operator_process import OperatorProcess
from e2e.test_operator import group_pods, llmservice, uids, wait_ready

AT_REST_SECONDS = 60.0
SERVICES = 4
EVENT_DRIVEN = 10.0  # seconds an event-driven repair may take (the resync is an hour away)


def no_namespace_terminating() -> bool:
    phases = {n["status"].get("phase") for n in kubectl_json("get", "namespaces")["items"]}
    return "Terminating" not in phases


@pytest.fixture
def operator_at(
    cluster: object, namespace: str, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    """An operator of ``namespace`` only (CRDs installed), with the resync the test asks for."""
    op = OperatorProcess(resync=request.param, namespaces=(namespace,))
    op.start()
    yield op
    op.stop()


@pytest.mark.parametrize("operator_at", [2.0], indirect=True)
def test_at_rest_no_reads_and_no_writes(operator_at: OperatorProcess, namespace: str) -> None:
    two_nodes = {"tensor": 2, "pipeline": 2, "gpusPerNode": 2}
    apply(llmservice("grp", parallelism=two_nodes), namespace)
    apply([llmservice(f"q{i}") for i in range(SERVICES - 1)], namespace)
    for name in ["grp", *(f"q{i}" for i in range(SERVICES - 1))]:
        wait_ready(name, namespace)
    operator_at.settle(5)  # the last status writes and their watch events
    # kube-apiserver does not count by client: no namespace may be in deletion meanwhile (the
    # namespace controller lists every kind in it), e.g. one of an earlier test or benchmark.
    wait_for(no_namespace_terminating, timeout=600, what="no namespace being deleted")
    writes, before = operator_at.writes(namespace), apiserver_requests()
    time.sleep(AT_REST_SECONDS)  # 30 resyncs of every LLMService
    read = reads_between(before, apiserver_requests())
    # The operator reads nodes only as a LIST (cordoned ones); single-node GETs are the node
    # controllers' (e.g. after an earlier test deleted its fake nodes).
    read.pop(("GET", "nodes"), None)
    # Other clients of the shared cluster (kube-proxy and CoreDNS of the real node, the KWOK
    # controller) relist now and then: one LIST of services was seen in a loaded CI run. So one
    # request per kind is tolerated; an operator that read on resync would make >= 30 per kind
    # here (the old one made 121: one per LLMService and resync).
    others = {slot: n for slot, n in read.items() if n <= 1}
    assert read == others, f"GET/LIST requests at rest in {AT_REST_SECONDS:.0f} s: {read}"
    assert sum(others.values()) <= 2, f"too many reads at rest to be other clients': {read}"
    assert operator_at.writes(namespace) == writes
    # The sweep still ran (30 per LLMService), but skipped the settled ones: unchanged inputs.
    assert operator_at.metric("llmsvc_operator_reconciles_total", "unchanged") >= SERVICES * 20


@pytest.mark.parametrize("operator_at", [3600.0], indirect=True)
def test_pod_failure_and_drift_are_repaired_from_events_alone(
    operator_at: OperatorProcess, namespace: str
) -> None:
    two_nodes = {"tensor": 2, "pipeline": 2, "gpusPerNode": 2}
    apply(llmservice("ev", parallelism=two_nodes), namespace)
    wait_ready("ev", namespace)
    before = uids(group_pods(namespace, "ev", 0))
    kubectl("delete", "pod", "ev-0-1", "-n", namespace, "--wait=false")

    def restarted() -> bool:
        now = group_pods(namespace, "ev", 0)
        return uids(now).isdisjoint(before) and len(now) == 2 and all(is_ready(p) for p in now)

    wait_for(restarted, timeout=60, what="both ranks of group 0 recreated")
    kubectl("delete", "service", "ev-leaders", "-n", namespace)
    kubectl("scale", "statefulset/ev-0", "--replicas=3", "-n", namespace)
    wait_for(
        lambda: (
            kubectl("get", "service", "ev-leaders", "-n", namespace, check=False).returncode == 0
        ),
        timeout=EVENT_DRIVEN,
        what="the deleted Service recreated from its watch event",
    )
    wait_for(
        lambda: kubectl_json("get", "sts", "ev-0", "-n", namespace)["spec"]["replicas"] == 2,
        timeout=EVENT_DRIVEN,
        what="the StatefulSet's replicas restored from its watch event",
    )
