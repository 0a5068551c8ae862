"""The router in front of real simulators on 127.0.0.1: streaming, failover, disconnects, errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest

from tests.router.conftest import RouterFactory
from tests.sim.conftest import Sim, SimFactory
from tests.sim.test_app import CHAT, events, post


async def test_non_streaming_chat_through_the_router(
    two_sims: list[Sim], router_factory: RouterFactory
) -> None:
    router = await router_factory([s.url for s in two_sims])
    status, raw = await post(f"{router.url}/v1/chat/completions", {**CHAT, "max_tokens": 3})
    assert status == 200
    assert json.loads(raw)["usage"]["completion_tokens"] == 3


async def test_streaming_arrives_chunk_by_chunk(
    sim_factory: SimFactory, router_factory: RouterFactory
) -> None:
    """The first token reaches the client long before the last one is generated."""
    sim = await sim_factory(itl_base_ms=100)
    router = await router_factory([sim.url])
    request = {**CHAT, "stream": True, "max_tokens": 10}
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        start = loop.time()
        async with session.post(f"{router.url}/v1/chat/completions", json=request) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            assert "Content-Encoding" not in response.headers
            first = await response.content.readuntil(b"\n\n")
            first_at = loop.time() - start
            rest = await response.read()
        total = loop.time() - start
    assert json.loads(first.removeprefix(b"data: "))["choices"][0]["delta"]["content"]
    assert total > 0.9  # ten tokens at 100 ms each
    assert first_at < total - 0.6  # the first token was not held back until the end
    assert events(rest)[-1] == "[DONE]"


async def test_openai_client_works_unchanged(
    two_sims: list[Sim], router_factory: RouterFactory
) -> None:
    router = await router_factory([s.url for s in two_sims], api_keys=frozenset({"sk-test"}))
    client = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key="sk-test", max_retries=0)
    try:
        models = await client.models.list()
        assert [m.id for m in models.data] == ["sim-model"]
        reply = await client.chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert reply.usage is not None
        assert reply.usage.completion_tokens == 4
        stream = await client.chat.completions.create(
            model="sim-model",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len(text.split()) == 5
        assert chunks[-1].usage is not None
        completion = await client.completions.create(model="sim-model", prompt="x", max_tokens=2)
        assert len(completion.choices[0].text.split()) == 2
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            await client.chat.completions.create(
                model="nope", messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        await client.close()


async def test_api_key_is_required_when_configured(
    two_sims: list[Sim], router_factory: RouterFactory
) -> None:
    router = await router_factory([two_sims[0].url], api_keys=frozenset({"sk-a"}))
    status, raw = await post(f"{router.url}/v1/chat/completions", CHAT)
    assert status == 401
    assert "API key" in json.loads(raw)["error"]["message"]
    status, _ = await post(f"{router.url}/v1/chat/completions", CHAT, Authorization="Bearer no")
    assert status == 401
    client = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()
    await client.close()
    async with aiohttp.ClientSession() as session, session.get(f"{router.url}/health") as r:
        assert r.status == 200  # probes need no key


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{oops", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"[]", 400, "JSON object"),
        (json.dumps({"model": 3, "messages": CHAT["messages"]}).encode(), 400, "'model'"),
        (json.dumps({"model": "x"}).encode(), 400, "messages"),
        (json.dumps({"model": "unknown", "messages": CHAT["messages"]}).encode(), 404, "served"),
        (b"{" + b'"a":"' + b"x" * 3000 + b'"}', 413, "too large"),
    ],
    ids=["bad-json", "empty", "array", "model-type", "no-messages", "unknown-model", "too-big"],
)
async def test_malformed_requests_get_openai_errors(
    two_sims: list[Sim], router_factory: RouterFactory, body: bytes, status: int, needle: str
) -> None:
    router = await router_factory([s.url for s in two_sims], max_body_bytes=2000)
    await wait_for_models(router.url)
    got, raw = await post(f"{router.url}/v1/chat/completions", body)
    error = json.loads(raw)["error"]
    assert got == status, error
    assert needle in error["message"]
    assert sum(s.engine.stats.started for s in two_sims) == 0


async def test_unknown_path_is_an_openai_404(router_factory: RouterFactory) -> None:
    router = await router_factory(["http://127.0.0.1:9"])
    async with aiohttp.ClientSession() as session, session.get(f"{router.url}/nope") as r:
        assert r.status == 404
        assert "no route" in (await r.json())["error"]["message"]


async def test_no_healthy_backend_is_503(router_factory: RouterFactory) -> None:
    router = await router_factory([])
    status, raw = await post(f"{router.url}/v1/chat/completions", CHAT)
    assert status == 503
    assert "no healthy backend" in json.loads(raw)["error"]["message"]
    async with aiohttp.ClientSession() as session, session.get(f"{router.url}/ready") as r:
        assert r.status == 503


async def test_a_dead_backend_is_retried_and_ejected(
    two_sims: list[Sim], router_factory: RouterFactory
) -> None:
    """A backend killed mid-test: requests not yet streaming all succeed on the other one."""
    router = await router_factory([s.url for s in two_sims], policy="round-robin")
    await asyncio.gather(*(post(f"{router.url}/v1/completions", {"prompt": "a"}) for _ in range(4)))
    await two_sims[0].server.stop()
    results = await asyncio.gather(
        *(post(f"{router.url}/v1/completions", {"prompt": f"b{i}"}) for i in range(20))
    )
    assert [status for status, _ in results] == [200] * 20
    metrics = await scrape(router.url)
    assert f'llmsvc_router_backend_healthy{{backend="{two_sims[0].url}"}} 0.0' in metrics
    retries = float(metrics.split("\nllmsvc_router_retries_total ")[1].split()[0])
    assert 1 <= retries <= 10  # only requests sent before the ejection were retried
    for sim in two_sims:  # every slot was given back exactly once
        assert f'llmsvc_router_backend_in_flight{{backend="{sim.url}"}} 0.0' in metrics


async def test_backend_5xx_is_retried_elsewhere(
    sim_factory: SimFactory, router_factory: RouterFactory
) -> None:
    """A backend still loading answers 503: the request goes to the ready one."""
    loading, ready = await sim_factory(load_seconds=60), await sim_factory()
    router = await router_factory([loading.url, ready.url], policy="round-robin")
    results = await asyncio.gather(
        *(post(f"{router.url}/v1/completions", {"prompt": "x"}) for _ in range(6))
    )
    assert {status for status, _ in results} == {200}
    assert ready.engine.stats.finished == 6


async def test_client_disconnect_reaches_the_backend(
    sim_factory: SimFactory, router_factory: RouterFactory
) -> None:
    sim = await sim_factory(itl_base_ms=20)
    router = await router_factory([sim.url])
    request = {**CHAT, "stream": True, "max_tokens": 1000}
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{router.url}/v1/chat/completions", json=request, headers={"x-request-id": "bye-1"}
        )
        await response.content.readuntil(b"\n\n")
        assert sim.engine.stats.running == 1
        response.close()
    await until(lambda: sim.engine.stats.aborted == 1)
    assert sim.engine.stats.aborted_ids == ["bye-1"]
    assert sim.engine.stats.running == 0
    in_flight = f'llmsvc_router_backend_in_flight{{backend="{sim.url}"}} 0.0'
    assert in_flight in await scrape(router.url)


async def test_client_disconnect_before_the_first_byte_reaches_the_backend(
    sim_factory: SimFactory, router_factory: RouterFactory
) -> None:
    """A non-streaming request abandoned while the engine works is aborted too."""
    sim = await sim_factory(itl_base_ms=20)
    router = await router_factory([sim.url])
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            await session.post(
                f"{router.url}/v1/chat/completions",
                json={**CHAT, "max_tokens": 1000},
                headers={"x-request-id": "impatient"},
                timeout=aiohttp.ClientTimeout(total=0.2),
            )
    await until(lambda: sim.engine.stats.aborted == 1)
    assert sim.engine.stats.aborted_ids == ["impatient"]


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as r:
        return await r.text()


async def until(condition: Any, seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


async def wait_for_models(url: str) -> None:
    for _ in range(100):
        async with aiohttp.ClientSession() as session, session.get(f"{url}/v1/models") as r:
            if r.status == 200 and (await r.json())["data"]:
                return
        await asyncio.sleep(0.02)
    raise AssertionError("router never learned the models")
