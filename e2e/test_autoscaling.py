"""Queue-based autoscaling on the real control plane: the operator's metrics API, the real HPA
(kube-controller-manager, 1 s sync) scaling an LLMService through /scale, scale to zero and back,
missing data, and KEDA's real CRD schema for the rendered ScaledObject.

Engines and routers are real processes on loopback (see e2e/autoscale_harness.py); the pods they
stand for are KWOK pods. This is the fast variant, for clusters without the real node;
e2e/test_realnode_autoscaling.py makes the same checks with real router and engine pods.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.autoscale_checks import (
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
from e2e.autoscale_harness import (
    Fleet,
    ReplicaRecorder,
    loopback_node,
    replicas,
    router_backends,
)
from e2e.conftest import Cluster
from e2e.helpers import apply, is_ready, kubectl, kubectl_json, to_yaml, wait_established, wait_for
from e2e.operator_process import OperatorProcess
from llmsvc.api import parse
from llmsvc.render import render

KEDA_VERSION = "v2.18.1"
SIM_ARGS = ("--max-num-seqs", "2", "--itl-base-ms", "40", "--itl-ms-per-seq", "0")
ROUTER_ARGS = ("--max-concurrency", "2")


def llmservice(name: str, **autoscaling: Any) -> dict[str, Any]:
    """One-GPU LLMService with the router and the built-in queue metric."""
    auto = {"enabled": True, "minReplicas": 1, "maxReplicas": 3, "targetQueueLength": 2}
    auto |= {"scaleUpStabilizationSeconds": 0, "scaleDownStabilizationSeconds": 5}
    return {
        "apiVersion": "llmsvc.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "model": {"uri": "hf://example/demo", "servedName": "demo"},
            "engine": {"maxModelLen": 4096},
            "autoscaling": auto | autoscaling,
        },
    }


@pytest.fixture(scope="module")
def loopback(cluster: Cluster) -> Iterator[None]:
    """The loopback node (pods get 127.95.0.x); every other node cordoned meanwhile."""
    undo = loopback_node(95)
    try:
        yield
    finally:
        undo()


@pytest.fixture
def operator_api(loopback: None, namespace: str) -> Iterator[OperatorProcess]:
    """The operator (metrics API on, this namespace only), registered as the APIService."""
    with metrics_api(namespace) as operator:
        yield operator


@pytest.mark.slow
def test_queue_scales_up_through_the_hpa_drains_and_scales_back_down(
    operator_api: OperatorProcess, namespace: str
) -> None:
    apply(llmservice("auto"), namespace)
    fleet = Fleet(namespace, "auto", sim_args=SIM_ARGS, router_args=ROUTER_ARGS)
    fleet.start()
    recorder = ReplicaRecorder(namespace, "auto")
    try:
        url = wait_for(fleet.router_url, timeout=60, what="the router process")
        wait_for(lambda: queue_value(namespace, "auto") == 0, timeout=60, what="queue 0 served")
        wait_for(lambda: router_backends(url), timeout=60, what="the router knowing the leader")
        recorder.start()
        answers = asyncio.run(load(url, concurrency=16, seconds=25))
        failed = lost(answers)
        assert answers, "no request was sent"
        assert not failed, f"lost requests: {failed}\n{fleet.router_logs()}"
        wait_for(lambda: queue_value(namespace, "auto") == 0, timeout=30, what="queue drained")
        wait_for(lambda: replicas(namespace, "auto") == 1, timeout=90, what="scaled back to 1")
        recorder.stop()
        sequence = recorder.sequence
        assert (sequence[0], sequence[-1]) == (1, 1), sequence
        assert max(sequence) >= 2, f"never scaled up: {sequence}"
        assert unimodal(sequence), f"flapped: {sequence}"
        print(f"replica sequence: {sequence}")
        hpa = kubectl_json("get", "hpa", "auto", "-n", namespace)
        assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "llmsvc_queue_length"
    finally:
        recorder.stop()
        fleet.stop()


@pytest.mark.slow
def test_a_stopped_engine_or_router_is_missing_data_not_zero(
    operator_api: OperatorProcess, namespace: str
) -> None:
    apply(llmservice("gone", scaleDownStabilizationSeconds=600), namespace)
    fleet = Fleet(namespace, "gone", sim_args=SIM_ARGS)
    fleet.start()
    try:
        wait_for(fleet.router_url, timeout=60, what="the router process")
        wait_for(lambda: queue_value(namespace, "gone") == 0, timeout=60, what="queue 0 served")
        leader = next(p for p in fleet.processes if "-router-" not in p)
        fleet.end(leader, dead=True)  # its pod stays Ready: a hung engine
        body = wait_for(
            lambda: missing(namespace, "gone"),
            timeout=20,
            what="missing data after the engine stopped",
        )
        assert "missing (not zero)" in body["error"], body
        assert leader in body["error"]
        hpa = wait_for(
            lambda: hpa_condition(namespace, "gone", "ScalingActive", "False"),
            timeout=30,
            what="the HPA reporting the metric as unavailable",
        )
        assert "llmsvc_queue_length" in hpa["message"]
        assert replicas(namespace, "gone") == 1  # missing data did not scale anything
    finally:
        fleet.stop()


@pytest.mark.slow
def test_scale_to_zero_and_back_without_losing_a_request(
    operator_api: OperatorProcess, namespace: str
) -> None:
    apply(llmservice("nap", minReplicas=0, idleSecondsBeforeZero=3), namespace)
    fleet = Fleet(namespace, "nap", sim_args=SIM_ARGS)
    fleet.start()
    recorder = ReplicaRecorder(namespace, "nap")
    recorder.start()
    try:
        url = wait_for(fleet.router_url, timeout=60, what="the router process")
        wait_for(lambda: replicas(namespace, "nap") == 0, timeout=60, what="scaled to zero")
        wait_for(
            lambda: ready_reason(namespace, "nap") == "ScaledToZero",
            timeout=30,
            what="status ScaledToZero",
        )
        assert is_ready(kubectl_json("get", "llmservice", "nap", "-n", namespace))
        table = kubectl("get", "llmservice", "nap", "-n", namespace).stdout
        assert "ScaledToZero" in table, table
        wait_for(lambda: not engine_pods(namespace, "nap"), timeout=30, what="no engine pods")
        # the router has dropped the last backend (as the endpointslice controller would have
        # unpublished it while the pod terminated, before the engine stopped)
        wait_for(lambda: fleet.router_backends() == set(), timeout=30, what="router: no backends")
        statuses = asyncio.run(burst(url, 4))
        assert statuses == [200] * 4, statuses
        # woken 0 -> 1 by the operator; the HPA may take the held queue on to 2 within a sample
        assert recorder.sequence[:2] == [1, 0], recorder.sequence
        assert recorder.sequence[2] >= 1, recorder.sequence
    finally:
        recorder.stop()
        fleet.stop()


def keda_crd() -> Path:
    """KEDA's ScaledObject CRD from its Go module (the Go module proxy, cached by go)."""
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/kedacore/keda/v2@{KEDA_VERSION}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"go mod download of KEDA {KEDA_VERSION} failed: {proc.stderr}")
    folder = Path(json.loads(proc.stdout)["Dir"])
    return folder / "config" / "crd" / "bases" / "keda.sh_scaledobjects.yaml"


def test_the_rendered_scaled_object_passes_kedas_real_crd_schema(
    cluster: Cluster, namespace: str
) -> None:
    crd = keda_crd()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    wait_established(crd)
    manifest = llmservice("keda", metrics="keda", minReplicas=0)
    manifest["metadata"]["namespace"] = namespace
    (scaled,) = [c for c in render(parse(manifest)) if c["kind"] == "ScaledObject"]
    dry = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=to_yaml(scaled))
    assert "scaledobject.keda.sh/keda" in dry.stdout
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["triggers"][0].pop("type")
    refused = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=to_yaml(broken), check=False
    )
    assert refused.returncode != 0, "KEDA's schema accepted a trigger without a type"
    assert "type" in refused.stderr, refused.stderr
