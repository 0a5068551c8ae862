"""vLLM-named Prometheus metrics for the simulator, on an injected registry.

Names follow vLLM v1 (``vllm:num_requests_running``, ``vllm:prefix_cache_hits_total``, ...) so
that dashboards, the HPA and routers that scrape vLLM work against the simulator unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmsvc.sim.engine import Engine

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60)
LABELS = ("model_name", "engine")


class SimMetrics:
    """Latency histograms (an ``engine.Observer``) plus a collector reading engine state."""

    def __init__(self, registry: CollectorRegistry, model: str) -> None:
        self._labels = (model, "0")

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, LABELS, buckets=LATENCY_BUCKETS, registry=registry)

        self._ttft = histogram("vllm:time_to_first_token_seconds", "Time to first token.")
        self._itl = histogram("vllm:inter_token_latency_seconds", "Inter-token latency.")
        self._e2e = histogram("vllm:e2e_request_latency_seconds", "End-to-end latency.")

    def ttft(self, seconds: float) -> None:
        """Observe a time to first token."""
        self._ttft.labels(*self._labels).observe(seconds)

    def itl(self, seconds: float) -> None:
        """Observe an inter-token latency."""
        self._itl.labels(*self._labels).observe(seconds)

    def e2e(self, seconds: float) -> None:
        """Observe an end-to-end request latency."""
        self._e2e.labels(*self._labels).observe(seconds)


class EngineCollector(Collector):
    """Gauges and counters computed from the engine at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        """Yield the engine's current state under vLLM's metric names."""
        labels = [self._engine.config.model, "0"]
        stats = self._engine.stats
        gauges = {
            "vllm:num_requests_running": ("Requests in the running batch.", stats.running),
            "vllm:num_requests_waiting": ("Requests waiting to run.", stats.waiting),
            "vllm:kv_cache_usage_perc": ("KV cache usage, 0..1.", self._engine.cache.usage()),
        }
        for name, (doc, value) in gauges.items():
            gauge = GaugeMetricFamily(name, doc, labels=LABELS)
            gauge.add_metric(labels, value)
            yield gauge
        counters = {
            "vllm:prefix_cache_queries": ("Prompt tokens queried.", stats.prefix_queries),
            "vllm:prefix_cache_hits": ("Prompt tokens found in cache.", stats.prefix_hits),
            "vllm:prompt_tokens": ("Prompt tokens processed.", stats.prompt_tokens),
            "vllm:generation_tokens": ("Tokens generated.", stats.generation_tokens),
        }
        for name, (doc, value) in counters.items():
            counter = CounterMetricFamily(name, doc, labels=LABELS)
            counter.add_metric(labels, value)
            yield counter
        yield self._finished(labels)

    def _finished(self, labels: list[str]) -> Metric:
        stats = self._engine.stats
        counter = CounterMetricFamily(
            "vllm:request_success",
            "Finished requests by reason.",
            labels=[*LABELS, "finished_reason"],
        )
        counter.add_metric([*labels, "length"], stats.finished)
        counter.add_metric([*labels, "abort"], stats.aborted)
        return counter
