"""The operator's own Prometheus metrics (``llmsvc_operator_*``), on an injected registry."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class OperatorMetrics:
    """Reconciles by result, their duration, API writes by verb and kind, group restarts."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.reconciles = Counter(
            "llmsvc_operator_reconciles", "Reconciles by result.", ["result"], registry=r
        )
        self.duration = Histogram(
            "llmsvc_operator_reconcile_duration_seconds",
            "Time one reconcile took.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.writes = Counter(
            "llmsvc_operator_api_writes",
            "API write requests.",
            ["verb", "kind", "namespace"],
            registry=r,
        )
        self.restarts = Counter(
            "llmsvc_operator_group_restarts", "Whole-group restarts.", registry=r
        )

    def count_write(self, verb: str, kind: str, namespace: str) -> None:
        """Hook for :class:`llmsvc.controller.kube.Kube`."""
        self.writes.labels(verb=verb, kind=kind, namespace=namespace).inc()
