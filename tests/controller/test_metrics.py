"""The operator's per-LLMService gauges and process metrics, on statuses from the real planner."""

from __future__ import annotations

from prometheus_client import generate_latest

from llmsvc.controller.metrics import OperatorMetrics
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
