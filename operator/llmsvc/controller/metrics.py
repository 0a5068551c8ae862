"""The operator's own Prometheus metrics (``llmsvc_operator_*``), on an injected registry.

Besides its own work (reconciles, API writes, restarts) it exports one set of gauges per
LLMService, read from the status it last wrote and the rank pods' weight pulls (labels
``namespace`` and ``llmservice``), the ``process_*`` metrics of its own process and its
garbage collections (``python_gc_*``). :func:`serve_metrics` serves them over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from llmsvc.plan.pods import PULL_STATES

SERVICE_LABELS = ("namespace", "llmservice")
CONDITIONS = ("Ready", "Progressing", "Degraded", "Reconciling", "Stalled")


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
        self.held = Gauge(
            "llmsvc_operator_creations_held",
            "New LLMServices whose children wait for a batch being applied to pause.",
            registry=r,
        )
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        self._service_gauges(r)

    def _service_gauges(self, r: CollectorRegistry) -> None:
        def gauge(name: str, doc: str, *extra: str) -> Gauge:
            return Gauge(
                f"llmsvc_operator_llmservice_{name}", doc, [*SERVICE_LABELS, *extra], registry=r
            )

        self.replicas = gauge("replicas", "Groups (model replicas) that exist.")
        self.ready_replicas = gauge(
            "ready_replicas",
            "Groups fully Ready (a Ready surge group counts for the one it replaces).",
        )
        self.failed_groups = gauge(
            "failed_groups", "Groups left down after exhausting restart.maxGroupRestarts."
        )
        self.group_restarts = gauge(
            "group_restarts", "Whole-group restarts recorded in status, summed over groups."
        )
        self.condition = gauge("condition", "1 when the condition is True, else 0.", "type")
        self.pulls = gauge(
            "pulls",
            "Rank pods by the state of their weight pull (init container pull): pending, "
            "running, failed (also while retrying after a failure), done.",
            "state",
        )

    def observe(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Set the per-LLMService gauges from the status the operator just wrote."""
        labels = {"namespace": namespace, "llmservice": name}
        groups = status.get("groups") or []
        self.replicas.labels(**labels).set(status.get("replicas") or 0)
        self.ready_replicas.labels(**labels).set(status.get("readyReplicas") or 0)
        self.failed_groups.labels(**labels).set(sum(g.get("phase") == "Failed" for g in groups))
        self.group_restarts.labels(**labels).set(sum(g.get("restarts", 0) for g in groups))
        states = {c.get("type"): c.get("status") == "True" for c in status.get("conditions") or []}
        for kind in CONDITIONS:
            self.condition.labels(**labels, type=kind).set(1 if states.get(kind) else 0)

    def observe_pulls(self, namespace: str, name: str, pulls: dict[str, int]) -> None:
        """Set the pull-state gauges from the pods one reconcile saw (``Plan.pulls``)."""
        for state, count in pulls.items():
            self.pulls.labels(namespace=namespace, llmservice=name, state=state).set(count)

    def forget(self, namespace: str, name: str) -> None:
        """Drop the gauges of a deleted LLMService."""
        with contextlib.suppress(KeyError):  # never observed: nothing to drop
            for gauge in (self.replicas, self.ready_replicas, self.failed_groups):
                gauge.remove(namespace, name)
            self.group_restarts.remove(namespace, name)
            for kind in CONDITIONS:
                self.condition.remove(namespace, name, kind)
        for state in PULL_STATES:
            with contextlib.suppress(KeyError):  # no pods seen yet
                self.pulls.remove(namespace, name, state)

    def count_write(self, verb: str, kind: str, namespace: str) -> None:
        """Hook for :class:`llmsvc.controller.kube.Kube`."""
        self.writes.labels(verb=verb, kind=kind, namespace=namespace).inc()


async def serve_metrics(address: str, registry: CollectorRegistry) -> web.AppRunner:
    """Serve ``registry`` on ``http://HOST:PORT/metrics`` from the running event loop.

    prometheus_client's own server is a thread that wakes twice a second even when nobody
    scrapes: most of an idle operator's CPU. This one wakes only for a request; the exposition
    is rendered in the default executor, so a large registry does not stall reconciles."""

    async def metrics(_request: web.Request) -> web.Response:
        body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = address.rsplit(":", 1)
    await web.TCPSite(runner, host, int(port)).start()
    return runner
