"""The traffic side of an LLMService's spec: the router in front of the replicas
(``spec.router``) and the autoscaler on its queue (``spec.autoscaling``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from llmsvc.api.base import KubeObject, Model
from llmsvc.api.overrides import K8S_NAME
from llmsvc.api.rules import AUTOSCALING_RULES, MAX_REPLICAS, Rule


class SecretKeyRef(Model):
    """One key of a Secret in the LLMService's namespace."""

    name: str = Field(pattern=K8S_NAME, max_length=253, description="Secret name.")
    key: str = Field(
        pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key within the Secret."
    )


class RouterSpec(Model):
    """The OpenAI-compatible load balancer in front of the model replicas."""

    enabled: bool = Field(
        default=True,
        description="Run the router; when false the client Service points at the leaders.",
    )
    replicas: int = Field(default=1, ge=1, le=100, description="Router pods.")
    policy: Literal["round-robin", "least-request", "prefix-aware", "session"] = Field(
        default="least-request",
        description="How a request picks a replica: round-robin, least-request (fewest in "
        "flight), prefix-aware (reuse prefix caches, bounded by load), session (x-session-id).",
    )
    image: str | None = Field(
        default=None,
        max_length=512,
        description="Router image; defaults to the operator's own image.",
    )
    api_key_secret: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the API keys clients must send (Authorization: Bearer "
        "KEY), one per line; unset means no key is needed. Changing the Secret rotates keys "
        "within seconds, without restarting the router.",
    )
    queue_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=3600,
        description="Longest wait of a request for a free backend slot (or, scaled to zero, "
        "for the service to wake) before the router answers 503. Unset: 30 s, or 600 s with "
        "autoscaling.minReplicas 0, so requests that wake the service outlast the model load.",
    )
    pod_template: KubeObject = Field(
        default_factory=dict,
        description="Strategic overlay on the router pod template, merged like "
        "engine.podTemplate. Rejected: changes to the router container's image, command, args "
        "and ports, serviceAccountName, imagePullSecrets and owned labels.",
    )


class AutoscalingSpec(Model):
    """A HorizontalPodAutoscaler (or KEDA ScaledObject) on the queue of waiting requests."""

    cel_rules: ClassVar[tuple[Rule, ...]] = AUTOSCALING_RULES

    enabled: bool = Field(
        default=False,
        description="Create the HPA; it then owns spec.replicas and the operator never writes it "
        "(except waking a service scaled to zero, and putting an idle one to zero).",
    )
    min_replicas: int = Field(
        default=1,
        ge=0,
        le=MAX_REPLICAS,
        description="Fewest replicas. 0 scales an idle service to zero groups after "
        "idleSecondsBeforeZero; the router then holds requests and wakes it (needs the router).",
    )
    max_replicas: int = Field(
        default=4, ge=1, le=MAX_REPLICAS, description="Most replicas (at most 999, as replicas)."
    )
    target_queue_length: int = Field(
        default=5,
        ge=1,
        le=10_000,
        description="Waiting requests per model replica to aim for: the router's queue plus "
        "vllm:num_requests_waiting of every leader, divided by the replicas.",
    )
    metrics: Literal["builtin", "prometheus", "keda"] = Field(
        default="builtin",
        description="Where the queue metric comes from: builtin (the operator serves "
        "external.metrics.k8s.io itself; nothing else to install), prometheus (an HPA on "
        "custom metrics from prometheus-adapter; the chart ships its rules and PodMonitors) or "
        "keda (a KEDA ScaledObject with a Prometheus trigger instead of an HPA).",
    )
    scale_up_stabilization_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="HPA scale-up stabilization window: the highest recommendation of this "
        "window is used, so 0 reacts at once.",
    )
    scale_down_stabilization_seconds: int = Field(
        default=600,
        ge=0,
        le=3600,
        description="HPA scale-down stabilization window: a model replica takes minutes to "
        "start, so the default waits 10 minutes of lower demand before removing one.",
    )
    idle_seconds_before_zero: int = Field(
        default=600,
        ge=0,
        le=86_400,
        description="With minReplicas 0: how long the queue must stay empty (and the service at "
        "one replica) before the operator scales it to zero.",
    )
    prometheus_address: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090",
        max_length=512,
        pattern=r"^https?://\S+$",
        description="Prometheus server the KEDA trigger queries (metrics: keda).",
    )
