"""Queue-based autoscaling with real pods on the real kubelet node: the router pod takes the load,
the operator (a local process serving ``external.metrics.k8s.io`` through the aggregation layer)
scrapes the real router and engine pods, the real HPA of kube-controller-manager (1 s sync)
scales the LLMService through /scale, and the new groups become Ready through their real probes.

Engines are the test engine image (the fake ``vllm`` running ``llmsvc sim``) with
``--max-num-seqs 2``, so a few clients make ``vllm:num_requests_waiting`` grow. The node has
this machine's two CPUs: every container requests 100m (the pullers' 1 CPU is lowered through
``engine.podTemplate``) and at most 3 engine pods run at once. The loopback variant,
e2e/test_autoscaling.py, runs the same checks without the real node in a fraction of the time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from e2e import realnode
from e2e.autoscale_checks import (
    Answer,
    burst,
    engine_pods,
    hpa_condition,
    load,
    lost,
    metrics_api,
    missing,
    queue_value,
    ready_reason,
    unimodal,
)
from e2e.autoscale_harness import ReplicaRecorder, replicas, router_backends
from e2e.helpers import apply, kubectl, wait_for
from e2e.operator_process import OperatorProcess

READY_TIMEOUT = 240.0
SMALL = {"requests": {"cpu": "100m", "memory": "128Mi"}}


@pytest.fixture
def operator_api(real_namespace: str) -> Iterator[OperatorProcess]:
    """The operator with the metrics API, its routers and pullers in the project image."""
    with metrics_api(real_namespace, env={"LLMSVC_IMAGE": realnode.OPERATOR_IMAGE}) as operator:
        yield operator


def autoscaled(name: str, uri: str, **autoscaling: Any) -> realnode.Manifest:
    """A real-node LLMService, 1..3 replicas on the built-in queue metric (target 2)."""
    manifest = realnode.llmservice(name, uri)
    manifest["spec"]["model"]["servedName"] = "demo"  # the model the clients ask for
    engine = manifest["spec"]["engine"]
    engine["args"] = ["--max-num-seqs", "2"]
    engine["podTemplate"] = {"spec": {"initContainers": [{"name": "pull", "resources": SMALL}]}}
    auto = {"enabled": True, "minReplicas": 1, "maxReplicas": 3, "targetQueueLength": 2}
    auto |= {"scaleUpStabilizationSeconds": 0, "scaleDownStabilizationSeconds": 15}
    manifest["spec"]["autoscaling"] = auto | autoscaling
    return manifest


def serving(namespace: str, name: str, uri: str, **autoscaling: Any) -> str:
    """Apply the service, put its router on the real node; the router pod's URL once it is
    Ready and the metrics API serves the service's queue."""
    apply(autoscaled(name, uri, **autoscaling), namespace)
    realnode.place_router(namespace, name)
    router = wait_for(
        lambda: realnode.router_pod(namespace, name), timeout=READY_TIMEOUT, what="router pod"
    )
    wait_for(
        lambda: queue_value(namespace, name) is not None,
        timeout=READY_TIMEOUT,
        interval=1,
        what=f"the queue of {name} served",
    )
    return f"http://{router['status']['podIP']}:8000"


def ready_groups(namespace: str, name: str) -> int:
    """status.readyReplicas of the LLMService."""
    status = realnode.llmservice_status(namespace, name).get("status", {})
    return int(status.get("readyReplicas") or 0)


class Load:
    """``load`` in a background thread, so the test can watch the cluster meanwhile."""

    def __init__(self, url: str, concurrency: int, seconds: float, tokens: int) -> None:
        self.answers: list[Answer] = []
        self._thread = threading.Thread(
            target=self._run, args=(url, concurrency, seconds, tokens), daemon=True
        )
        self._thread.start()

    def _run(self, url: str, concurrency: int, seconds: float, tokens: int) -> None:
        self.answers = asyncio.run(load(url, concurrency, seconds, tokens))

    def join(self, timeout: float) -> list[Answer]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load did not finish"
        return self.answers


def test_real_pods_scale_up_through_the_hpa_drain_and_scale_back_down(
    operator_api: OperatorProcess, real_namespace: str, tiny_model: tuple[str, Counter[str]]
) -> None:
    ns = real_namespace
    url = serving(ns, "auto", tiny_model[0])
    realnode.wait_condition(ns, "auto", "Ready", READY_TIMEOUT)
    wait_for(lambda: queue_value(ns, "auto") == 0, timeout=60, what="queue 0 served")
    wait_for(lambda: router_backends(url), timeout=60, what="the router knowing the leader")
    recorder = ReplicaRecorder(ns, "auto")
    recorder.start()
    try:
        start = time.monotonic()
        running = Load(url, concurrency=12, seconds=75, tokens=40)
        wait_for(lambda: (queue_value(ns, "auto") or 0) > 2, timeout=30, what="a queue")
        print(f"queue built after {realnode.elapsed(start)}")
        wait_for(lambda: ready_groups(ns, "auto") >= 2, timeout=70, interval=1, what="a new group")
        print(f"second group Ready after {realnode.elapsed(start)}")
        new = [p for p in engine_pods(ns, "auto") if p["metadata"]["name"] != "auto-0-0"]
        assert all(p["spec"]["nodeName"] == realnode.node_name() for p in new), new
        answers = running.join(timeout=120)
        assert answers, "no request was sent"
        assert not lost(answers), lost(answers)
        wait_for(lambda: queue_value(ns, "auto") == 0, timeout=30, what="queue drained")
        print(f"load over, queue drained after {realnode.elapsed(start)}")
        wait_for(lambda: replicas(ns, "auto") == 1, timeout=120, what="scaled back to 1")
        print(f"back to 1 after {realnode.elapsed(start)}; {len(answers)} requests, all 200")
        wait_for(lambda: len(engine_pods(ns, "auto")) == 1, timeout=120, what="groups removed")
    finally:
        recorder.stop()
    sequence = recorder.sequence
    print(f"replica sequence: {sequence}")
    assert (sequence[0], sequence[-1]) == (1, 1), sequence
    assert max(sequence) >= 2, f"never scaled up: {sequence}"
    assert unimodal(sequence), f"flapped: {sequence}"


def test_a_paused_engine_or_router_pod_is_missing_data_not_zero(
    operator_api: OperatorProcess, real_namespace: str, tiny_model: tuple[str, Counter[str]]
) -> None:
    ns = real_namespace
    serving(ns, "gone", tiny_model[0], scaleDownStabilizationSeconds=600)
    realnode.wait_condition(ns, "gone", "Ready", READY_TIMEOUT)  # its leader is a scrape target
    wait_for(lambda: queue_value(ns, "gone") == 0, timeout=60, what="queue 0 served")
    engine = realnode.pod(ns, "gone-0-0")
    assert realnode.condition(engine, "Ready")["status"] == "True"
    with realnode.paused(engine, "engine"):  # a hung engine: its pod is still Ready a while
        body = wait_for(lambda: missing(ns, "gone"), timeout=15, what="missing data (engine)")
    assert "missing (not zero)" in body["error"], body
    assert "gone-0-0" in body["error"], body
    wait_for(lambda: queue_value(ns, "gone") == 0, timeout=60, what="queue served again")

    router = realnode.router_pod(ns, "gone")
    assert router is not None
    with realnode.paused(router, "router"):
        body = wait_for(lambda: missing(ns, "gone"), timeout=15, what="missing data (router)")
        assert "missing (not zero)" in body["error"], body
        condition = wait_for(
            lambda: hpa_condition(ns, "gone", "ScalingActive", "False"),
            timeout=30,
            what="the HPA reporting the metric as unavailable",
        )
        assert "llmsvc_queue_length" in condition["message"]
        assert replicas(ns, "gone") == 1  # missing data scaled nothing
    wait_for(lambda: queue_value(ns, "gone") == 0, timeout=90, what="queue served again")


def test_real_pods_scale_to_zero_and_back_without_losing_a_request(
    operator_api: OperatorProcess, real_namespace: str, tiny_model: tuple[str, Counter[str]]
) -> None:
    ns = real_namespace
    recorder = ReplicaRecorder(ns, "nap")
    recorder.start()
    try:
        url = serving(ns, "nap", tiny_model[0], minReplicas=0, idleSecondsBeforeZero=3)
        wait_for(lambda: replicas(ns, "nap") == 0, timeout=READY_TIMEOUT, what="scaled to zero")
        wait_for(lambda: ready_reason(ns, "nap") == "ScaledToZero", timeout=30, what="status")
        table = kubectl("get", "llmservice", "nap", "-n", ns).stdout
        assert "ScaledToZero" in table, table
        wait_for(lambda: not engine_pods(ns, "nap"), timeout=120, what="no engine pods")
        start = time.monotonic()
        statuses = asyncio.run(burst(url, 4))  # held by the router pod until a group is Ready
        print(f"woken and answered after {realnode.elapsed(start)}")
        assert statuses == [200] * 4, statuses
    finally:
        recorder.stop()
    # woken 0 -> 1 by the operator; the HPA may take the held queue on to 2 within a sample
    assert recorder.sequence[:2] == [1, 0], recorder.sequence
    assert recorder.sequence[2] >= 1, recorder.sequence
