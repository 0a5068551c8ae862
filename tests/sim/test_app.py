"""The simulator over HTTP: OpenAI shapes, streaming, errors, health while loading, vLLM metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.sim.conftest import SimFactory

CHAT = {"model": "sim-model", "messages": [{"role": "user", "content": "hello there"}]}


async def post(url: str, body: Any, **headers: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with session.post(url, data=data, headers=headers) as response:
            return response.status, await response.read()


def events(raw: bytes) -> list[Any]:
    """Parsed SSE data payloads (``[DONE]`` kept as a string)."""
    out: list[Any] = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: "):
            payload = block.removeprefix("data: ")
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


async def test_chat_completion_has_message_and_usage(sim_factory: SimFactory) -> None:
    sim = await sim_factory()
    status, raw = await post(f"{sim.url}/v1/chat/completions", {**CHAT, "max_tokens": 5})
    body = json.loads(raw)
    assert status == 200
    assert body["object"] == "chat.completion"
    assert len(body["choices"][0]["message"]["content"].split()) == 5
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


async def test_text_completion_is_deterministic(sim_factory: SimFactory) -> None:
    a, b = await sim_factory(seed=3), await sim_factory(seed=3)
    request = {"model": "sim-model", "prompt": "once upon", "max_tokens": 6}
    first = json.loads((await post(f"{a.url}/v1/completions", request))[1])
    second = json.loads((await post(f"{b.url}/v1/completions", request))[1])
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert first["object"] == "text_completion"


async def test_streaming_chat_sends_chunks_usage_and_done(sim_factory: SimFactory) -> None:
    sim = await sim_factory()
    request = {**CHAT, "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}}
    status, raw = await post(f"{sim.url}/v1/chat/completions", request)
    chunks = events(raw)
    assert status == 200
    assert chunks[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-2])
    assert len(text.split()) == 4
    assert chunks[-3]["choices"][0]["finish_reason"] == "length"
    assert chunks[-2]["choices"] == []
    assert chunks[-2]["usage"]["completion_tokens"] == 4


async def test_streaming_without_include_usage_has_no_usage_chunk(sim_factory: SimFactory) -> None:
    sim = await sim_factory()
    _, raw = await post(f"{sim.url}/v1/completions", {"prompt": "x", "stream": True})
    assert all("usage" not in c for c in events(raw)[:-1])


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        ([1, 2], 400, "JSON object"),
        ({"model": "other", "messages": CHAT["messages"]}, 404, "does not exist"),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"content": "x"}]}, 400, "role"),
        ({**CHAT, "max_tokens": 0}, 400, "max_tokens"),
        ({**CHAT, "max_tokens": 100_000}, 400, "maximum context length"),
        ({**CHAT, "n": 2}, 400, "n=1"),
    ],
    ids=["bad-json", "array", "unknown-model", "no-messages", "no-role", "zero", "too-long", "n"],
)
async def test_bad_requests_get_openai_errors(
    sim_factory: SimFactory, body: Any, status: int, needle: str
) -> None:
    sim = await sim_factory()
    got, raw = await post(f"{sim.url}/v1/chat/completions", body)
    error = json.loads(raw)["error"]
    assert got == status
    assert needle in error["message"]
    assert error["code"] == status


async def test_health_is_503_while_loading_then_200(sim_factory: SimFactory) -> None:
    sim = await sim_factory(load_seconds=0.3)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sim.url}/health") as response:
            assert response.status == 503
        status, _ = await post(f"{sim.url}/v1/chat/completions", CHAT)
        assert status == 503
        await asyncio.sleep(0.35)
        async with session.get(f"{sim.url}/health") as response:
            assert response.status == 200


async def test_metrics_use_vllm_names(sim_factory: SimFactory) -> None:
    sim = await sim_factory()
    prompt = " ".join(f"w{i}" for i in range(64))
    for _ in range(2):
        await post(f"{sim.url}/v1/completions", {"prompt": prompt, "max_tokens": 2})
    async with aiohttp.ClientSession() as session, session.get(f"{sim.url}/metrics") as response:
        text = await response.text()
    for name in (
        "vllm:num_requests_running{",
        "vllm:num_requests_waiting{",
        "vllm:kv_cache_usage_perc{",
        "vllm:time_to_first_token_seconds_bucket{",
        "vllm:inter_token_latency_seconds_bucket{",
    ):
        assert name in text
    assert 'vllm:prefix_cache_queries_total{engine="0",model_name="sim-model"} 128.0' in text
    assert 'vllm:prefix_cache_hits_total{engine="0",model_name="sim-model"} 64.0' in text


async def test_client_disconnect_aborts_the_generation(sim_factory: SimFactory) -> None:
    sim = await sim_factory(itl_base_ms=20)
    request = {**CHAT, "stream": True, "max_tokens": 500}
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{sim.url}/v1/chat/completions", json=request, headers={"x-request-id": "gone-1"}
        )
        await response.content.readline()
        response.close()
    for _ in range(100):
        if sim.engine.stats.aborted:
            break
        await asyncio.sleep(0.02)
    assert sim.engine.stats.aborted_ids == ["gone-1"]
    assert sim.engine.stats.running == 0


async def test_models_and_stats(sim_factory: SimFactory) -> None:
    sim = await sim_factory(model="m1")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sim.url}/v1/models") as response:
            assert [m["id"] for m in (await response.json())["data"]] == ["m1"]
        async with session.get(f"{sim.url}/sim/stats") as response:
            assert (await response.json())["finished"] == 0


async def test_reset_prefix_cache_empties_the_cache(sim_factory: SimFactory) -> None:
    sim = await sim_factory()
    await post(f"{sim.url}/v1/completions", {"prompt": " ".join(["w"] * 64), "max_tokens": 1})
    assert len(sim.engine.cache) == 4
    status, _ = await post(f"{sim.url}/reset_prefix_cache", b"")
    assert status == 200
    assert len(sim.engine.cache) == 0
