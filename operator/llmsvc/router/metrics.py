"""The router's Prometheus metrics (``llmsvc_router_*``) on an injected registry.

``llmsvc_router_queue_length`` is what the HPA scales on. Gauges are read from the pool and
the admission queue at scrape time, so they can never drift from the real state.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmsvc.router.admission import Admission

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class RouterMetrics:
    """Counters and histograms the proxy updates."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "llmsvc_router_requests",
            "Requests answered, by HTTP status code.",
            ["code"],
            registry=registry,
        )
        self.retries = Counter(
            "llmsvc_router_retries", "Requests retried on another backend.", registry=registry
        )
        self.first_byte = Histogram(
            "llmsvc_router_time_to_first_byte_seconds",
            "Time from request arrival to the first response byte sent to the client.",
            buckets=BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "llmsvc_router_request_duration_seconds",
            "Time from request arrival to the end of the response.",
            buckets=BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "llmsvc_router_queue_wait_seconds",
            "Time spent waiting for a backend slot.",
            buckets=BUCKETS,
            registry=registry,
        )


class StateCollector(Collector):
    """Queue length, in-flight, health and load per backend, read at scrape time."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def collect(self) -> Iterator[Metric]:
        """Yield the current gauges."""
        queue = GaugeMetricFamily(
            "llmsvc_router_queue_length", "Requests waiting for a backend slot."
        )
        queue.add_metric([], self._admission.waiting)
        yield queue
        in_flight = GaugeMetricFamily(
            "llmsvc_router_backend_in_flight", "Requests in flight per backend.", labels=["backend"]
        )
        healthy = GaugeMetricFamily(
            "llmsvc_router_backend_healthy",
            "1 when the backend passes health checks and is not ejected.",
            labels=["backend"],
        )
        for url, backend in sorted(self._admission.pool.backends.items()):
            in_flight.add_metric([url], backend.in_flight)
            usable = self._admission.pool.snapshot_usable(url)
            healthy.add_metric([url], 1.0 if usable else 0.0)
        yield in_flight
        yield healthy
        yield from self._loads()

    def _loads(self) -> Iterator[Metric]:
        load = GaugeMetricFamily(
            "llmsvc_router_backend_load",
            "The load the policies balance on per backend (engine requests when scraped).",
            labels=["backend"],
        )
        scraped = GaugeMetricFamily(
            "llmsvc_router_backend_load_scraped",
            "1 when a fresh /metrics scrape of the backend is in use, 0 on own counts.",
            labels=["backend"],
        )
        for endpoint in self._admission.pool.snapshot().endpoints:
            load.add_metric([endpoint.url], endpoint.load)
            fresh = endpoint.engine_load is not None
            scraped.add_metric([endpoint.url], 1.0 if fresh else 0.0)
        yield load
        yield scraped
