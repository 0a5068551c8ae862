"""The operator's per-LLMService gauges and process metrics, on statuses from the real planner."""

from __future__ import annotations

import threading

import aiohttp
from prometheus_client import generate_latest

from llmsvc.controller.metrics import OperatorMetrics, serve_metrics
from llmsvc.router.server import free_port
from tests.plan.test_gitops_statuses import CASES


def _text(metrics: OperatorMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_gauges_follow_the_written_status_and_go_with_the_object() -> None:
    metrics = OperatorMetrics()
    ready = CASES["ready"][0]()["status"]
    failed = CASES["restart-limit"][0]()["status"]
    metrics.observe("ml", "llama", ready)
    metrics.observe("ml", "broken", failed)
    text = _text(metrics)
    labels = 'llmservice="llama",namespace="ml"'
    assert f"llmsvc_operator_llmservice_ready_replicas{{{labels}}} 2.0" in text
    assert f'llmsvc_operator_llmservice_condition{{{labels},type="Ready"}} 1.0' in text
    assert f'llmsvc_operator_llmservice_condition{{{labels},type="Reconciling"}} 0.0' in text
    broken = 'llmservice="broken",namespace="ml"'
    assert f"llmsvc_operator_llmservice_failed_groups{{{broken}}} 1.0" in text
    assert f'llmsvc_operator_llmservice_condition{{{broken},type="Stalled"}} 1.0' in text
    metrics.forget("ml", "llama")
    metrics.forget("ml", "never-seen")
    text = _text(metrics)
    assert 'llmservice="llama"' not in text
    assert 'llmservice="broken"' in text


def test_process_metrics_are_exported() -> None:
    text = _text(OperatorMetrics())
    assert "process_resident_memory_bytes" in text
    assert "process_cpu_seconds_total" in text


def test_pull_gauges_count_ranks_per_state_and_go_with_the_object() -> None:
    metrics = OperatorMetrics()
    metrics.observe_pulls("ml", "llama", {"pending": 0, "running": 1, "failed": 2, "done": 5})
    text = _text(metrics)
    labels = 'llmservice="llama",namespace="ml"'
    assert f'llmsvc_operator_llmservice_pulls{{{labels},state="failed"}} 2.0' in text
    assert f'llmsvc_operator_llmservice_pulls{{{labels},state="done"}} 5.0' in text
    metrics.forget("ml", "llama")
    assert "llmsvc_operator_llmservice_pulls{" not in _text(metrics)


async def test_metrics_are_served_from_the_event_loop() -> None:
    """``/metrics`` over real HTTP, from the running loop (no polling thread), with the GC
    counters beside the operator's own; other paths are 404."""
    metrics = OperatorMetrics()
    metrics.observe("ml", "llama", CASES["ready"][0]()["status"])
    threads = threading.active_count()
    port = free_port()
    runner = await serve_metrics(f"127.0.0.1:{port}", metrics.registry)
    try:
        assert threading.active_count() == threads  # nothing polls while nobody scrapes
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain; version=")
                text = await response.text()
            async with session.get(f"http://127.0.0.1:{port}/other") as response:
                assert response.status == 404
    finally:
        await runner.cleanup()
    assert 'llmsvc_operator_llmservice_ready_replicas{llmservice="llama",namespace="ml"}' in text
    assert 'python_gc_collections_total{generation="2"}' in text
    assert "process_cpu_seconds_total" in text
