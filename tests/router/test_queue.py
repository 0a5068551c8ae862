"""The admission queue over HTTP: requests wait in the router, not on the engines; 429 when full."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.router.conftest import RouterFactory
from tests.router.test_proxy import scrape, until
from tests.sim.conftest import SimFactory
from tests.sim.test_app import CHAT, post


async def test_requests_queue_in_the_router_beyond_the_limit(
    sim_factory: SimFactory, router_factory: RouterFactory
) -> None:
    sim = await sim_factory(itl_base_ms=10)
    router = await router_factory([sim.url], max_concurrency=2, queue_size=10)
    request = {**CHAT, "max_tokens": 15}
    tasks = [
        asyncio.create_task(post(f"{router.url}/v1/chat/completions", request)) for _ in range(6)
    ]
    await until(lambda: sim.engine.stats.running == 2)
    assert "llmsvc_router_queue_length 4.0" in await scrape(router.url)
    peak = 0
    while not all(t.done() for t in tasks):
        peak = max(peak, sim.engine.stats.running + sim.engine.stats.waiting)
        await asyncio.sleep(0.002)
    assert [status for status, _ in await asyncio.gather(*tasks)] == [200] * 6
    assert peak == 2  # the engine never saw more than the limit
    assert "llmsvc_router_queue_length 0.0" in await scrape(router.url)


async def test_a_full_queue_answers_429_with_retry_after(
    sim_factory: SimFactory, router_factory: RouterFactory
) -> None:
    sim = await sim_factory(itl_base_ms=20)
    router = await router_factory([sim.url], max_concurrency=1, queue_size=1)
    request = {**CHAT, "max_tokens": 10}
    busy = [
        asyncio.create_task(post(f"{router.url}/v1/chat/completions", request)) for _ in range(2)
    ]
    await until(lambda: sim.engine.stats.running == 1)
    await asyncio.sleep(0.02)
    url = f"{router.url}/v1/chat/completions"
    async with aiohttp.ClientSession() as session, session.post(url, json=request) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "1"
        assert "queue is full" in (await response.json())["error"]["message"]
    assert [s for s, _ in await asyncio.gather(*busy)] == [200, 200]


async def test_queue_timeout_answers_503(
    sim_factory: SimFactory, router_factory: RouterFactory
) -> None:
    sim = await sim_factory(itl_base_ms=30)
    router = await router_factory([sim.url], max_concurrency=1, queue_timeout=0.05)
    busy = asyncio.create_task(post(f"{router.url}/v1/completions", {"prompt": "x"}))
    await until(lambda: sim.engine.stats.running == 1)
    status, raw = await post(f"{router.url}/v1/completions", {"prompt": "y"})
    assert status == 503
    assert "timed out" in json.loads(raw)["error"]["message"]
    assert (await busy)[0] == 200


async def test_a_malformed_priority_header_is_400(
    sim_factory: SimFactory, router_factory: RouterFactory
) -> None:
    sim = await sim_factory()
    router = await router_factory([sim.url])
    status, raw = await post(f"{router.url}/v1/chat/completions", CHAT, **{"x-priority": "high"})
    assert status == 400
    assert "priority" in json.loads(raw)["error"]["message"]


async def test_router_metrics_count_requests_and_latency(
    sim_factory: SimFactory, router_factory: RouterFactory
) -> None:
    sim = await sim_factory()
    router = await router_factory([sim.url])
    await post(f"{router.url}/v1/chat/completions", CHAT)
    await post(f"{router.url}/v1/chat/completions", b"nope")
    text = await scrape(router.url)
    assert 'llmsvc_router_requests_total{code="200"} 1.0' in text
    assert 'llmsvc_router_requests_total{code="400"} 1.0' in text
    assert "llmsvc_router_time_to_first_byte_seconds_count 1.0" in text
    assert "llmsvc_router_request_duration_seconds_count 2.0" in text
    assert f'llmsvc_router_backend_healthy{{backend="{sim.url}"}} 1.0' in text
    assert "vllm:" not in text


async def test_probes_and_scrapes_are_not_requests_and_process_metrics_are_served(
    sim_factory: SimFactory, router_factory: RouterFactory
) -> None:
    sim = await sim_factory()
    router = await router_factory([sim.url])
    async with aiohttp.ClientSession() as session:
        for path in ("/health", "/ready", "/metrics", "/health"):
            async with session.get(f"{router.url}{path}") as response:
                await response.read()
    text = await scrape(router.url)
    assert "llmsvc_router_requests_total{" not in text
    assert "llmsvc_router_request_duration_seconds_count 0.0" in text
    assert "process_resident_memory_bytes" in text
    assert "process_cpu_seconds_total" in text
