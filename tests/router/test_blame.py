"""Who is to blame: request-caused 500s, a restarted backend, a hung (SIGSTOPped) backend."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from llmsvc.router.config import RouterConfig
from llmsvc.router.pool import Pool
from llmsvc.router.server import Running, free_port, start
from tests.router.conftest import RouterFactory
from tests.router.helpers import Process, spawn
from tests.router.test_proxy import scrape
from tests.sim.conftest import Sim, SimFactory
from tests.sim.test_app import CHAT, events, post

SURROGATE = b'{"model":"sim-model","messages":[{"role":"user","content":"hi \\ud800"}]}'


def healthy(url: str) -> str:
    return f'llmsvc_router_backend_healthy{{backend="{url}"}} 1.0'


@pytest.mark.parametrize("policy", ["least-request", "prefix-aware"])
async def test_a_request_that_breaks_every_backend_ejects_none(
    sim_factory: SimFactory, router_factory: RouterFactory, policy: str
) -> None:
    sims: list[Sim] = [await sim_factory(seed=i) for i in range(3)]
    router = await router_factory([s.url for s in sims], policy=policy)
    direct = await post(f"{sims[0].url}/v1/chat/completions", SURROGATE)
    for _ in range(8):
        assert await post(f"{router.url}/v1/chat/completions", SURROGATE) == direct  # as is
    assert sum(s.engine.stats.started for s in sims) > 8  # the backends' own errors
    metrics = await scrape(router.url)
    assert all(healthy(s.url) in metrics for s in sims), metrics
    results = await asyncio.gather(
        *(post(f"{router.url}/v1/chat/completions", CHAT) for _ in range(6))
    )
    assert [status for status, _ in results] == [200] * 6


async def _broken_backend() -> Running:
    """Healthy on ``/health`` and ``/v1/models``, 500 on everything else."""

    async def handle(request: web.Request) -> web.Response:
        if request.path in ("/health", "/v1/models"):
            return web.json_response({"data": [{"id": "sim-model"}]})
        return web.json_response({"error": {"message": "broken"}}, status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return await start(app)


async def test_a_500_that_another_backend_does_not_give_is_charged(
    sim_factory: SimFactory, router_factory: RouterFactory
) -> None:
    good, broken = await sim_factory(), await _broken_backend()
    try:
        router = await router_factory(
            [good.url, broken.url], policy="round-robin", failure_threshold=1
        )
        results = [await post(f"{router.url}/v1/chat/completions", CHAT) for _ in range(4)]
        assert [status for status, _ in results] == [200] * 4
        assert healthy(broken.url) not in await scrape(router.url)  # ejected
        assert healthy(good.url) in await scrape(router.url)
    finally:
        await broken.stop()


async def test_a_restarted_backend_is_used_again_within_one_check(
    tmp_path: Path, router_factory: RouterFactory
) -> None:
    port = free_port()
    sim_args = ("sim", "--itl-base-ms", "20")
    victim = await spawn(tmp_path, "sim", *sim_args, port=port)
    router = await router_factory([victim.url], health_interval=0.2, eject_max_seconds=30)
    async with aiohttp.ClientSession() as session:
        request = {**CHAT, "stream": True, "max_tokens": 1000}
        streams = [
            await session.post(f"{router.url}/v1/chat/completions", json=request) for _ in range(6)
        ]
        for stream in streams:
            await stream.content.readuntil(b"\n\n")
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        for stream in streams:  # six in-flight requests fail at once
            assert "backend failed" in json.dumps(events(await stream.read())[-1])
    restarted = await spawn(tmp_path, "sim", *sim_args, port=port)
    green = time.monotonic()
    try:
        for _ in range(150):
            if healthy(restarted.url) in await scrape(router.url):
                break
            await asyncio.sleep(0.02)
        took = time.monotonic() - green
        assert took < 3, f"still ejected {took:.1f} s after /health was green"
        assert (await post(f"{router.url}/v1/chat/completions", CHAT))[0] == 200
    finally:
        restarted.stop()


@pytest.fixture
async def two_sim_processes(tmp_path: Path) -> list[Process]:
    """Two ``llmsvc sim`` processes."""
    return [await spawn(tmp_path, f"sim{i}", "sim", "--itl-base-ms", "20") for i in (0, 1)]


async def test_a_hung_backend_loses_its_waiting_requests_to_a_live_one(
    two_sim_processes: list[Process], router_factory: RouterFactory
) -> None:
    hung, live = two_sim_processes
    try:
        router = await router_factory(
            [hung.url, live.url],
            policy="round-robin",
            health_interval=0.2,
            health_timeout=0.5,
            chunk_timeout=1.0,
        )
        url = f"{router.url}/v1/chat/completions"
        async with aiohttp.ClientSession() as session:
            request = {**CHAT, "stream": True, "max_tokens": 100}
            streams = [await session.post(url, json=request) for _ in range(2)]
            for stream in streams:
                await stream.content.readuntil(b"\n\n")
            hung.proc.send_signal(signal.SIGSTOP)
            started = time.monotonic()
            waiting = [post(url, {**CHAT, "max_tokens": 3}) for _ in range(6)]
            results = await asyncio.wait_for(asyncio.gather(*waiting), 10)
            assert [status for status, _ in results] == [200] * 6
            assert time.monotonic() - started < 8  # the old read timeout was 600 s
            bodies = [await asyncio.wait_for(s.read(), 10) for s in streams]
        cut = [b for b in bodies if events(b)[-1] != "[DONE]"]
        assert len(cut) == 1  # the stream on the hung backend ended after chunk_timeout
        assert "backend failed" in json.dumps(events(cut[0])[-1])
    finally:
        for process in two_sim_processes:
            process.stop()


def test_every_ejection_is_logged_with_its_cause_and_length(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="llmsvc.router.pool")
    pool = Pool(RouterConfig(failure_threshold=2, eject_base_seconds=1.5), clock=lambda: 10.0)
    pool.set_urls(["http://a:1"])
    caplog.clear()
    pool.failed("http://a:1")
    assert caplog.messages == []  # one failure of two: not ejected
    pool.failed("http://a:1")
    pool.failed("http://a:1", hard=True, sent_at=11.0)  # ejected again: the backoff doubles
    assert caplog.messages == [
        "backend http://a:1 ejected for 1.5 s after failed requests",
        "backend http://a:1 ejected for 3 s after a broken connection",
    ]
