"""LLMServices whose ranks really run on the real kubelet node: probes, rendezvous, the puller.

The engine image is the project image plus the fake ``vllm`` CLI (``llmsvc/sim/vllm_cli.py``), so
the command lines the operator renders run as they are; the puller init container is the
project image pulling from a server on the pod bridge. The operator runs as a local process.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections import Counter

from e2e import realnode
from e2e.helpers import apply, kubectl, kubectl_json, wait_for
from e2e.operator_process import OperatorProcess

READY_TIMEOUT = 240.0


def endpoint_ready(namespace: str, pod_name: str, service: str) -> bool | None:
    """The ready condition of ``pod_name`` in the EndpointSlices of Service ``service``
    (the ones the router reads), None while it is not listed."""
    selector = f"kubernetes.io/service-name={service}"
    slices = kubectl_json("get", "endpointslices", "-n", namespace, "-l", selector)["items"]
    for item in slices:
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("targetRef") or {}).get("name") == pod_name:
                return bool(endpoint.get("conditions", {}).get("ready"))
    return None


def models_of(pod_ip: str) -> list[str]:
    """GET /v1/models of an engine pod (this machine reaches pod IPs over the bridge)."""
    with urllib.request.urlopen(f"http://{pod_ip}:8000/v1/models", timeout=5) as response:
        return [m["id"] for m in json.load(response)["data"]]


def test_one_node_group_is_ready_only_after_real_probes_pass(
    real_operator: OperatorProcess, real_namespace: str, tiny_model: tuple[str, Counter[str]]
) -> None:
    ns, uri = real_namespace, tiny_model[0]
    apply(realnode.llmservice("one", uri, env={"LLMSVC_SIM_LOAD_SECONDS": "20"}), ns)

    def loading() -> realnode.Manifest | None:
        pod = realnode.pod(ns, "one-0-0")
        running = "running" in realnode.container_status(pod, "engine").get("state", {})
        return pod if running else None

    pod = wait_for(loading, timeout=READY_TIMEOUT, interval=1, what="the engine to start")
    assert pod["spec"]["nodeName"] == realnode.node_name()
    # The engine process runs, but /health answers 503 while it "loads": not Ready, and the
    # endpoint the router reads is not ready either.
    assert realnode.condition(pod, "Ready").get("status") != "True"
    assert endpoint_ready(ns, "one-0-0", "one-leaders") is not True
    realnode.wait_condition(ns, "one", "Ready", READY_TIMEOUT)
    pod = realnode.pod(ns, "one-0-0")
    assert realnode.condition(pod, "Ready")["status"] == "True"
    assert endpoint_ready(ns, "one-0-0", "one-leaders") is True
    assert models_of(pod["status"]["podIP"]) == ["one"]


def test_two_ranks_rendezvous_through_master_addr(
    real_operator: OperatorProcess, real_namespace: str, tiny_model: tuple[str, Counter[str]]
) -> None:
    ns, uri = real_namespace, tiny_model[0]
    apply(realnode.llmservice("two", uri, nodes=2), ns)
    realnode.wait_condition(ns, "two", "Ready", READY_TIMEOUT)
    leader, worker = realnode.pod(ns, "two-0-0"), realnode.pod(ns, "two-0-1")
    env = {e["name"]: e.get("value") for e in worker["spec"]["containers"][0]["env"]}
    master = env["MASTER_ADDR"]
    assert master.startswith("two-0-0.")
    assert master.endswith(f".{ns}.svc.cluster.local")
    # The worker reached rank 0 by its headless-Service DNS name; rank 0 counted it in.
    worker_log = kubectl("logs", "-n", ns, "two-0-1", "-c", "engine").stdout
    assert f"rank 1 connected to {master}:" in worker_log
    leader_log = kubectl("logs", "-n", ns, "two-0-0", "-c", "engine").stdout
    assert "rank 1 joined (2/2)" in leader_log
    assert "world formed" in leader_log
    assert models_of(leader["status"]["podIP"]) == ["two"]
    assert os.path.basename(uri) in kubectl("logs", "-n", ns, "two-0-1", "-c", "pull").stdout
