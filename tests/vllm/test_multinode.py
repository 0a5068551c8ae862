"""A two-node native group (tensor 1 x pipeline 2) of real vLLM on loopback, run from the rendered
rank script + env: it serves the openai client, its probes pass, and a dead rank is caught.

Rank death is measured the way the kubelet would see it: the rendered liveness probe runs every
periodSeconds on the surviving rank, and detection is the time from the kill until the probe has
failed failureThreshold times in a row. Results land in $LLMSVC_VLLM_RESULTS (JSON lines) when
set; docs/benchmarks.md records them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from llmsvc.probe.rank_check import metric_sums
from llmsvc.router.server import free_port
from tests.vllm import engine
from tests.vllm.engine import Manifest, Rank

DETECTION_GOAL_SECONDS = 30


@pytest.fixture(scope="module")
def container() -> Manifest:
    return engine.engine_container(engine.tiny_service("pair", pipeline=2))


def start_group(container: Manifest, model: Path, python: Path, logs: Path) -> list[Rank]:
    master_port = free_port()
    ranks = [engine.start_rank(container, r, model, python, logs, master_port) for r in (0, 1)]
    try:
        engine.wait_healthy(ranks[0], ranks[1:])
    except BaseException:
        for rank in ranks:
            rank.kill()
        raise
    return ranks


@pytest.fixture(scope="module")
def group(
    container: Manifest, tiny_model: Path, vllm_python: Path, engine_logs: Path
) -> Iterator[list[Rank]]:
    ranks = start_group(container, tiny_model, vllm_python, engine_logs)
    yield ranks
    for rank in ranks:
        rank.kill()


def test_two_node_group_serves_chat_and_streaming(group: list[Rank]) -> None:
    client = openai.OpenAI(base_url=f"{group[0].url}/v1", api_key="unused", max_retries=0)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
    reply = client.chat.completions.create(
        model=engine.MODEL_NAME,
        messages=messages,
        max_tokens=8,
    )
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
    assert len([d for d in deltas if d]) >= 2  # more than one chunk: really streamed


def test_every_probe_passes_on_a_healthy_group(
    group: list[Rank], container: Manifest, tmp_path: Path
) -> None:
    for rank in group:
        for kind in ("startup", "readiness", "liveness"):
            status, why = engine.run_probe(container, kind, rank, tmp_path / f"{rank.rank}.json")
            assert status == 0, f"rank {rank.rank} {kind}: {why}"


def detection_seconds(container: Manifest, survivor: Rank, state: Path) -> tuple[float, str]:
    """Run the liveness probe like the kubelet until it has failed failureThreshold times."""
    probe = container["livenessProbe"]
    start, failures, why = time.monotonic(), 0, ""
    while time.monotonic() - start < 300:
        tick = time.monotonic()
        status, why = engine.run_probe(container, "liveness", survivor, state)
        failures = failures + 1 if status else 0
        if failures >= probe["failureThreshold"]:
            return time.monotonic() - start, why
        time.sleep(max(0.0, probe["periodSeconds"] - (time.monotonic() - tick)))
    raise AssertionError("the surviving rank's liveness probe never failed in 300 s")


def record(case: str, seconds: float, why: str) -> None:
    print(f"\n{case}: detected in {seconds:.1f} s ({why})")
    out = os.environ.get("LLMSVC_VLLM_RESULTS")
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps({"case": case, "seconds": round(seconds, 1), "why": why}) + "\n")


def long_generation(leader: Rank) -> threading.Thread:
    """A streaming request that keeps the engine busy for a while (the group may die under it)."""

    def send() -> None:
        client = openai.OpenAI(base_url=f"{leader.url}/v1", api_key="x", max_retries=0)
        try:
            stream = client.completions.create(
                model=engine.MODEL_NAME,
                prompt="count",
                max_tokens=engine.MAX_MODEL_LEN - 64,
                stream=True,
                extra_body={"ignore_eos": True},
                timeout=120,
            )
            for _chunk in stream:
                pass
        except openai.OpenAIError:
            pass

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def running(leader: Rank) -> float:
    text = engine.get(f"{leader.url}/metrics")[1]
    return metric_sums(text, ("vllm:num_requests_running",))["vllm:num_requests_running"]


def test_worker_killed_mid_generation_is_caught_by_the_leaders_liveness(
    group: list[Rank], container: Manifest, tmp_path: Path
) -> None:
    leader, worker = group
    state = tmp_path / "busy.json"
    long_generation(leader)
    deadline = time.monotonic() + 30
    while running(leader) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running(leader) >= 1
    assert engine.run_probe(container, "liveness", leader, state)[0] == 0  # busy and progressing
    worker.kill()
    seconds, why = detection_seconds(container, leader, state)
    record("worker killed mid-generation (leader busy)", seconds, why)
    assert engine.get(f"{leader.url}/health")[0] == 200, "vLLM's own /health still says fine"
    assert "no progress" in why
    assert seconds < DETECTION_GOAL_SECONDS, why


def test_worker_killed_while_idle_is_caught_by_the_leaders_canary(
    container: Manifest, tiny_model: Path, vllm_python: Path, engine_logs: Path, tmp_path: Path
) -> None:
    leader, worker = start_group(container, tiny_model, vllm_python, engine_logs)
    try:
        assert engine.run_probe(container, "liveness", leader, tmp_path / "idle.json")[0] == 0
        worker.kill()
        seconds, why = detection_seconds(container, leader, tmp_path / "idle.json")
        record("worker killed, leader idle", seconds, why)
        assert engine.get(f"{leader.url}/health")[0] == 200, "vLLM's own /health still says fine"
        assert "canary" in why
        assert seconds < DETECTION_GOAL_SECONDS, why
    finally:
        leader.kill()


def test_dead_leader_is_caught_by_the_workers_liveness(
    container: Manifest, tiny_model: Path, vllm_python: Path, engine_logs: Path, tmp_path: Path
) -> None:
    leader, worker = start_group(container, tiny_model, vllm_python, engine_logs)
    try:
        assert engine.run_probe(container, "liveness", worker, tmp_path / "w.json")[0] == 0
        leader.kill()
        seconds, why = detection_seconds(container, worker, tmp_path / "w.json")
        record("leader killed, worker", seconds, why)
        assert worker.alive(), "the worker outlives its leader: only the probe notices"
        assert seconds < DETECTION_GOAL_SECONDS, why
    finally:
        leader.kill()
        worker.kill()
