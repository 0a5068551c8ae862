"""A single-node group of real vLLM run from the rendered rank script + env: the openai client,
the metric names everything of ours relies on, and the probes."""

from __future__ import annotations

import re
from pathlib import Path

import openai
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client import CollectorRegistry, generate_latest

from llmsvc.probe.rank_check import BUSY_GAUGES, PROGRESS_COUNTERS
from llmsvc.sim.engine import Engine, SimConfig
from llmsvc.sim.metrics import EngineCollector, SimMetrics
from tests.vllm import engine
from tests.vllm.engine import Rank

# Every vllm: series read by the operator, the router, the autoscaling docs or dashboards.
RELIED_ON = {
    "vllm:num_requests_running",  # router load, rank check
    "vllm:num_requests_waiting",  # HPA queue metric, rank check
    "vllm:kv_cache_usage_perc",  # router load
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "vllm:time_to_first_token_seconds_bucket",
    "vllm:inter_token_latency_seconds_bucket",
    "vllm:e2e_request_latency_seconds_bucket",
    *BUSY_GAUGES,
    *PROGRESS_COUNTERS,
}
SERIES = re.compile(r"^(vllm:[a-zA-Z0-9_:]+)(\{[^}]*\})? ", re.MULTILINE)
TYPES = re.compile(r"^# TYPE (vllm:\S+) (\S+)$", re.MULTILINE)


def exposed(text: str) -> dict[str, set[str]]:
    """Series name -> its label names, from Prometheus text."""
    found: dict[str, set[str]] = {}
    for name, labels in SERIES.findall(text):
        keys = set(re.findall(r'(\w+)="', labels))
        found.setdefault(name, set()).update(keys - {"le", "finished_reason"})
    return found


def chat(server: Rank) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
    reply = client.chat.completions.create(
        model=engine.MODEL_NAME,
        messages=messages,
        max_tokens=8,
    )
    assert reply.choices[0].message.content is not None
    assert reply.usage is not None
    assert reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(
        model=engine.MODEL_NAME,
        messages=messages,
        max_tokens=8,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    deltas = [chunk.choices[0].delta.content for chunk in stream if chunk.choices]
    assert len([d for d in deltas if d]) >= 2


def test_rendered_single_node_group_serves_chat_and_streaming(single_servers: list[Rank]) -> None:
    chat(single_servers[0])
    models = openai.OpenAI(base_url=f"{single_servers[0].url}/v1", api_key="x").models.list()
    assert [m.id for m in models.data] == [engine.MODEL_NAME]  # --served-model-name took


def test_every_metric_we_rely_on_is_exposed(single_servers: list[Rank]) -> None:
    chat(single_servers[1])
    status, text = engine.get(f"{single_servers[1].url}/metrics")
    assert status == 200
    missing = RELIED_ON - set(exposed(text))
    assert not missing, f"real vLLM {engine.pinned_version()} does not expose {sorted(missing)}"


def sim_metrics_text() -> str:
    registry = CollectorRegistry()
    sim = Engine(SimConfig())
    registry.register(EngineCollector(sim))
    metrics = SimMetrics(registry, "m")
    metrics.ttft(0.1)
    metrics.itl(0.1)
    metrics.e2e(0.1)
    return generate_latest(registry).decode()


def test_simulator_metrics_are_a_faithful_subset(single_servers: list[Rank]) -> None:
    """Every vllm: series of the simulator exists in real vLLM, with the same type and labels."""
    chat(single_servers[0])
    real_text = engine.get(f"{single_servers[0].url}/metrics")[1]
    real, sim = exposed(real_text), exposed(sim_metrics_text())
    assert set(sim) <= set(real), f"only in the simulator: {sorted(set(sim) - set(real))}"
    for name, labels in sim.items():
        assert labels <= real[name], f"{name}: labels {labels} vs real {real[name]}"
    real_types, sim_types = dict(TYPES.findall(real_text)), dict(TYPES.findall(sim_metrics_text()))
    for name, kind in sim_types.items():
        assert real_types.get(name) == kind, (
            f"{name} is a {kind}, real vLLM: {real_types.get(name)}"
        )


def test_probes_pass_on_a_healthy_single_node_group(
    single_servers: list[Rank], tmp_path: Path
) -> None:
    container = engine.engine_container(engine.tiny_service("single"))
    for kind in ("startup", "readiness", "liveness"):
        status, why = engine.run_probe(container, kind, single_servers[0], tmp_path / "s.json")
        assert status == 0, f"{kind}: {why}"
