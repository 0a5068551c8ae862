"""Proofs that the local control plane is real: scheduling counts GPUs, KWOK makes pods Ready,
the garbage collector follows owner references, a CRD's scale subresource works, and the Service
range holds the Services of 1,000 LLMServices."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from e2e.conftest import Cluster
from e2e.helpers import (
    CLUSTER_DIR,
    apply,
    apply_timeout,
    cluster_setting,
    exists,
    kubectl,
    kubectl_json,
    pods,
    wait_established,
    wait_for,
)

GPU = "nvidia.com/gpu"
WIDGET_CRD = CLUSTER_DIR / "testdata" / "widgets.e2e.llmsvc.io.yaml"


def gpu_nodes() -> list[dict[str, Any]]:
    """The fake GPU nodes (label nvidia.com/gpu.product set)."""
    items: list[dict[str, Any]] = kubectl_json("get", "nodes", "-l", f"{GPU}.product")["items"]
    return items


def gpus_in_use() -> dict[str, int]:
    """GPUs requested by running or pending pods, per node they are bound to."""
    used: dict[str, int] = {}
    for pod in kubectl_json("get", "pods", "-A")["items"]:
        node = pod["spec"].get("nodeName")
        if not node or pod["status"].get("phase") in {"Succeeded", "Failed"}:
            continue
        for container in pod["spec"]["containers"]:
            asked = container.get("resources", {}).get("requests", {}).get(GPU, 0)
            used[node] = used.get(node, 0) + int(asked)
    return used


def gpu_pod_spec(selector: dict[str, str]) -> dict[str, Any]:
    """A pod spec asking for one whole 8-GPU node among the nodes matching `selector`."""
    return {
        "nodeSelector": selector,
        "containers": [
            {
                "name": "vllm",
                "image": "vllm/vllm-openai:v0.12.0",
                "resources": {"limits": {GPU: "8"}, "requests": {GPU: "8"}},
            }
        ],
    }


@pytest.fixture
def two_free_gpu_nodes(namespace: str) -> Iterator[dict[str, str]]:
    """Two idle 8-GPU nodes labelled for this test only, so the pod count is deterministic."""
    used = gpus_in_use()
    free = [
        n["metadata"]["name"]
        for n in gpu_nodes()
        if n["status"]["allocatable"].get(GPU) == "8" and used.get(n["metadata"]["name"], 0) == 0
    ]
    assert len(free) >= 2, f"need two idle 8-GPU nodes, found {free} (usage {used})"
    label = f"e2e.llmsvc.io/{namespace}"
    for node in free[:2]:
        kubectl("label", "node", node, f"{label}=yes")
    yield {label: "yes"}
    for node in free[:2]:
        kubectl("label", "node", node, f"{label}-", check=False)


def test_scheduler_counts_gpus_and_kwok_makes_pods_ready(
    namespace: str, two_free_gpu_nodes: dict[str, str]
) -> None:
    labels = {"app": "gpu-ranks"}
    apply(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "ranks"},
            "spec": {
                "replicas": 2,
                "serviceName": "ranks",
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": gpu_pod_spec(two_free_gpu_nodes),
                },
            },
        },
        namespace,
    )
    wait_for(
        lambda: (
            kubectl_json("get", "statefulset", "ranks", "-n", namespace)["status"].get(
                "readyReplicas"
            )
            == 2
        ),
        what="both 8-GPU ranks Ready",
    )
    nodes = {p["spec"]["nodeName"] for p in pods(namespace, "app=gpu-ranks")}
    assert len(nodes) == 2, f"each rank needs a whole node, got {nodes}"

    extra = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "extra"}}
    apply({**extra, "spec": gpu_pod_spec(two_free_gpu_nodes)}, namespace)

    def unschedulable() -> str | None:
        pod = kubectl_json("get", "pod", "extra", "-n", namespace)
        for cond in pod["status"].get("conditions", []):
            if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return str(cond.get("message", ""))
        return None

    message = wait_for(unschedulable, what="the third 8-GPU pod to be Unschedulable")
    assert f"Insufficient {GPU}" in message
    pod = kubectl_json("get", "pod", "extra", "-n", namespace)
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")


@pytest.fixture(scope="module")
def widget_crd(bare_cluster: Cluster) -> None:
    """The tiny test CRD with status and scale subresources."""
    kubectl("apply", "--server-side", "-f", str(WIDGET_CRD))
    wait_established(WIDGET_CRD)


def widget(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "e2e.llmsvc.io/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    }


def test_garbage_collector_deletes_children_of_a_deleted_owner(
    namespace: str, widget_crd: None
) -> None:
    apply(widget("owner"), namespace)
    uid = kubectl_json("get", "widget", "owner", "-n", namespace)["metadata"]["uid"]
    owner_ref = {"apiVersion": "e2e.llmsvc.io/v1", "kind": "Widget", "name": "owner", "uid": uid}
    children = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"child-{i}", "ownerReferences": [owner_ref]},
            "data": {"i": str(i)},
        }
        for i in range(2)
    ]
    bystander = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bystander"}}
    apply([*children, bystander], namespace)
    kubectl("delete", "widget", "owner", "-n", namespace)
    wait_for(
        lambda: (
            not exists("configmap", "child-0", namespace)
            and not exists("configmap", "child-1", namespace)
        ),
        what="the garbage collector to delete the owned ConfigMaps",
    )
    assert exists("configmap", "bystander", namespace), "a ConfigMap without owner must stay"


def test_scale_subresource_of_a_custom_resource(namespace: str, widget_crd: None) -> None:
    apply(widget("w"), namespace)
    kubectl("scale", "widget/w", "--replicas=3", "-n", namespace)
    assert kubectl_json("get", "widget", "w", "-n", namespace)["spec"]["replicas"] == 3
    scale = kubectl_json("get", "widget", "w", "-n", namespace, "--subresource=scale")
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 3


SERVICES_PAST_THE_OLD_RANGE = 300  # the former 10.0.0.0/24 range was full at 253


def test_service_range_holds_more_than_a_slash_24(namespace: str) -> None:
    """Each LLMService makes a ClusterIP Service; 1,000 of them need more than 253 addresses."""
    services = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"s-{i}"},
            "spec": {"selector": {"app": f"s-{i}"}, "ports": [{"port": 80}]},
        }
        for i in range(SERVICES_PAST_THE_OLD_RANGE)
    ]
    apply(services, namespace)
    items = kubectl_json("get", "services", "-n", namespace)["items"]
    ips = {s["spec"]["clusterIP"] for s in items}
    assert len(ips) == SERVICES_PAST_THE_OLD_RANGE
    kubernetes = kubectl_json("get", "service", "kubernetes", "-n", "default")
    assert kubernetes["spec"]["clusterIP"] == cluster_setting("API_SERVICE_IP")


def test_apply_timeout_grows_with_the_number_of_objects() -> None:
    """kubectl apply of 1,000 objects took ~200 s on a loaded 2-core server; 60 s cut it off."""
    assert apply_timeout(1) >= 60
    assert apply_timeout(1000) >= 1000 * 0.4
