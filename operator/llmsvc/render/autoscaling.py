"""Queue-based autoscaling: an HPA on the LLMService's scale subresource, or a KEDA ScaledObject.

The queue of a service is the router's queue plus ``vllm:num_requests_waiting`` of every leader
(only leaders serve metrics), aimed at ``targetQueueLength`` per replica. Where it comes from is
``spec.autoscaling.metrics``:

- ``builtin``: the operator serves ``external.metrics.k8s.io`` itself; the HPA asks it for
  ``llmsvc_queue_length`` selected by ``llmsvc.io/name`` (an ``AverageValue`` target divides the
  total by the current replicas).
- ``prometheus``: prometheus-adapter serves ``custom.metrics.k8s.io`` (the chart ships the rules):
  leader pods' ``vllm_num_requests_waiting`` and the router queue on the client Service.
- ``keda``: a KEDA ``ScaledObject`` with a Prometheus trigger, instead of an HPA.

With ``minReplicas: 0`` the HPA keeps a floor of 1 and the operator moves 0 <-> 1 (KEDA's
activation, done by the operator); KEDA does both itself.
"""

from __future__ import annotations

from typing import Any

from llmsvc.api import API_VERSION, KIND, LLMService
from llmsvc.render import names

Manifest = dict[str, Any]

QUEUE_METRIC = "llmsvc_queue_length"
ENGINE_QUEUE_METRIC = "vllm_num_requests_waiting"
ROUTER_QUEUE_METRIC = "llmsvc_router_queue_length"
KEDA_API = "keda.sh/v1alpha1"
KEDA_POLLING_SECONDS = 5


def _target(svc: LLMService) -> Manifest:
    return {"type": "AverageValue", "averageValue": str(svc.spec.autoscaling.target_queue_length)}


def builtin_metrics(svc: LLMService) -> list[Manifest]:
    """The operator's own external metric, selected by the service's name."""
    metric = {"name": QUEUE_METRIC, "selector": {"matchLabels": {names.LABEL_NAME: svc.name}}}
    return [{"type": "External", "external": {"metric": metric, "target": _target(svc)}}]


def prometheus_metrics(svc: LLMService) -> list[Manifest]:
    """Custom metrics from prometheus-adapter: leaders' queue, plus the router's when it runs."""
    result: list[Manifest] = [
        {"type": "Pods", "pods": {"metric": {"name": ENGINE_QUEUE_METRIC}, "target": _target(svc)}}
    ]
    if svc.spec.router.enabled:
        described = {"apiVersion": "v1", "kind": "Service", "name": names.client_service(svc.name)}
        metric = {"describedObject": described, "metric": {"name": ROUTER_QUEUE_METRIC}}
        result.append({"type": "Object", "object": metric | {"target": _target(svc)}})
    return result


def behavior(svc: LLMService) -> Manifest:
    """Stabilization windows: react to a queue at once, give up a replica only slowly."""
    auto = svc.spec.autoscaling
    return {
        "scaleUp": {"stabilizationWindowSeconds": auto.scale_up_stabilization_seconds},
        "scaleDown": {"stabilizationWindowSeconds": auto.scale_down_stabilization_seconds},
    }


def _meta(svc: LLMService) -> Manifest:
    return {
        "name": names.hpa(svc.name),
        "namespace": svc.namespace,
        "labels": names.common_labels(svc.name, names.SERVICE),
    }


def _target_ref(svc: LLMService) -> Manifest:
    return {"apiVersion": API_VERSION, "kind": KIND, "name": svc.name}


def hpa(svc: LLMService) -> list[Manifest]:
    """HorizontalPodAutoscaler ``NAME`` (builtin or prometheus metrics), else nothing."""
    auto = svc.spec.autoscaling
    if not auto.enabled or auto.metrics == "keda":
        return []
    found = builtin_metrics(svc) if auto.metrics == "builtin" else prometheus_metrics(svc)
    spec = {
        "scaleTargetRef": _target_ref(svc),
        "minReplicas": max(1, auto.min_replicas),
        "maxReplicas": auto.max_replicas,
        "metrics": found,
        "behavior": behavior(svc),
    }
    return [
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"}
        | {
            "metadata": _meta(svc),
            "spec": spec,
        }
    ]


def keda_query(svc: LLMService) -> str:
    """PromQL of the queue (PodMonitors copy the ``llmsvc.io/name`` pod label)."""
    labels = f'namespace="{svc.namespace}",llmsvc_io_name="{svc.name}"'
    engines = f"sum(vllm:num_requests_waiting{{{labels}}}) or vector(0)"
    if not svc.spec.router.enabled:
        return engines
    return f"sum(llmsvc_router_queue_length{{{labels}}}) + ({engines})"


def scaled_object(svc: LLMService) -> list[Manifest]:
    """KEDA ScaledObject ``NAME`` when ``metrics: keda``, else nothing."""
    auto = svc.spec.autoscaling
    if not auto.enabled or auto.metrics != "keda":
        return []
    trigger = {
        "type": "prometheus",
        "metadata": {
            "serverAddress": auto.prometheus_address,
            "query": keda_query(svc),
            "threshold": str(auto.target_queue_length),
            "activationThreshold": "0",
        },
    }
    spec = {
        "scaleTargetRef": _target_ref(svc),
        "minReplicaCount": auto.min_replicas,
        "maxReplicaCount": auto.max_replicas,
        "pollingInterval": KEDA_POLLING_SECONDS,
        "cooldownPeriod": auto.idle_seconds_before_zero,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(svc)}},
        "triggers": [trigger],
    }
    return [{"apiVersion": KEDA_API, "kind": "ScaledObject", "metadata": _meta(svc), "spec": spec}]


def autoscaler(svc: LLMService) -> list[Manifest]:
    """Whatever scales this service: an HPA, a ScaledObject, or nothing."""
    return hpa(svc) + scaled_object(svc)
