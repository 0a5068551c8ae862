"""The queue-based HorizontalPodAutoscaler that scales the LLMService through its scale subresource.

The HPA's pods are the leaders (``status.selector``), whose ``vllm:num_requests_waiting`` is the
queue per model replica. With the router, its own queue (requests waiting for a backend) counts
too, averaged over the replicas the HPA scales.
"""

from __future__ import annotations

from typing import Any

from llmsvc.api import API_VERSION, KIND, LLMService
from llmsvc.render import names

Manifest = dict[str, Any]

ENGINE_QUEUE_METRIC = "vllm:num_requests_waiting"
ROUTER_QUEUE_METRIC = "llmsvc_router_queue_length"


def metrics(svc: LLMService) -> list[Manifest]:
    """The HPA's metrics: leader queue length, plus the router's queue when it runs."""
    target = {"type": "AverageValue", "averageValue": str(svc.spec.autoscaling.target_queue_length)}
    result: list[Manifest] = [
        {"type": "Pods", "pods": {"metric": {"name": ENGINE_QUEUE_METRIC}, "target": target}}
    ]
    if svc.spec.router.enabled:
        described = {"apiVersion": "v1", "kind": "Service", "name": names.client_service(svc.name)}
        result.append(
            {
                "type": "Object",
                "object": {
                    "describedObject": described,
                    "metric": {"name": ROUTER_QUEUE_METRIC},
                    "target": dict(target),
                },
            }
        )
    return result


def hpa(svc: LLMService) -> list[Manifest]:
    """HorizontalPodAutoscaler ``NAME`` when autoscaling is enabled, else nothing."""
    auto = svc.spec.autoscaling
    if not auto.enabled:
        return []
    hpa_obj = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": names.hpa(svc.name),
            "namespace": svc.namespace,
            "labels": names.common_labels(svc.name, names.SERVICE),
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": API_VERSION, "kind": KIND, "name": svc.name},
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": metrics(svc),
        },
    }
    return [hpa_obj]
