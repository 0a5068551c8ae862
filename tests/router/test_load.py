"""Engine load in the snapshot and the policies, and scraping hostile /metrics over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from llmsvc.router.config import RouterConfig
from llmsvc.router.policies import Endpoint, RequestInfo, Snapshot, make_policy
from llmsvc.router.pool import Pool
from llmsvc.router.promtext import EngineLoad
from llmsvc.router.server import start
from tests.router.conftest import RouterFactory
from tests.sim.conftest import SimFactory

GOOD = b"vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n"


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_snapshot_adds_other_routers_share_to_own_count() -> None:
    clock = Clock()
    pool = Pool(RouterConfig(load_interval=1.0, load_timeout=1.0), clock)
    pool.set_urls(["http://a", "http://b"])
    pool.begin("http://a")
    pool.set_load("http://a", EngineLoad(running=4, waiting=2, kv_usage=0.3))  # 1 of 6 is ours
    pool.begin("http://a")
    a, b = pool.snapshot().endpoints
    assert (a.in_flight, a.engine_load, a.load, a.kv_usage) == (2, 7, 7, 0.3)
    assert (b.engine_load, b.load) == (None, 0)
    clock.now += 3.01  # stale after max(3 x interval, interval + timeout)
    assert pool.snapshot().endpoints[0].load == 2


def test_failed_or_lagging_scrape_never_drops_below_own_count() -> None:
    pool = Pool(RouterConfig(), Clock())
    pool.set_urls(["http://a"])
    for _ in range(3):
        pool.begin("http://a")
    pool.set_load("http://a", None)
    assert pool.snapshot().endpoints[0].load == 3
    pool.set_load("http://a", EngineLoad(0, 0, 0.0))  # the engine has not seen ours yet
    assert pool.snapshot().endpoints[0].load == 3
    pool.end("http://a")
    assert pool.snapshot().endpoints[0].load == 2


def test_least_request_balances_engine_load_then_kv_cache() -> None:
    policy = make_policy("least-request")
    busy = Endpoint("http://a", in_flight=0, engine_load=5)
    idle = Endpoint("http://b", in_flight=1, engine_load=1)
    assert policy.pick(Snapshot.of([busy, idle]), RequestInfo()) == idle
    full = Endpoint("http://a", 0, True, 2, kv_usage=0.9)
    empty = Endpoint("http://b", 0, True, 2, kv_usage=0.1)
    picks = {policy.pick(Snapshot.of([full, empty]), RequestInfo()) for _ in range(4)}
    assert picks == {empty}


def test_prefix_aware_bound_counts_the_engines_load() -> None:
    policy = make_policy("prefix-aware", balance_factor=1.5, balance_slack=8)
    prompt = RequestInfo(prompt="p" * 1024)
    first = policy.pick(Snapshot.of([Endpoint("http://a"), Endpoint("http://b")]), prompt)
    assert first is not None
    other = "http://b" if first.url == "http://a" else "http://a"
    hot = [Endpoint(first.url, 0, True, engine_load=8), Endpoint(other, 0, True, engine_load=0)]
    chosen = policy.pick(Snapshot.of(hot), prompt)
    assert chosen is not None
    assert chosen.url == other  # affinity lost at min load + slack


Mode = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    while True:
        await response.write(b"# padding\n" * 50000)


async def slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(5)
    return web.Response(body=GOOD)


async def gzipped(request: web.Request) -> web.StreamResponse:
    return web.Response(body=gzip.compress(GOOD), headers={"Content-Encoding": "gzip"})


async def huge_line(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b'vllm:num_requests_running{a="' + b"x" * 200_000)


async def garbage(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"vllm:num_requests_running \x00\xff sk-canary\n")


async def error(request: web.Request) -> web.StreamResponse:
    return web.Response(status=500, text="boom")


async def json_body(request: web.Request) -> web.StreamResponse:
    return web.json_response({"object": "list"})


async def reset(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.abort()
    return web.Response()


MODES: dict[str, Mode] = {
    "endless": endless,
    "slow": slow,
    "gzipped": gzipped,
    "huge_line": huge_line,
    "garbage": garbage,
    "error": error,
    "json": json_body,
    "reset": reset,
}
REASONS = {
    "endless": "body is over",
    "slow": "no answer within",
    "gzipped": "compressed",
    "huge_line": "a line is over 65536 bytes",
    "garbage": "not a number",
    "error": "HTTP 500",
    "json": "no vllm:num_requests_running",
    "reset": "the request failed",
}


@contextlib.asynccontextmanager
async def hostile_backend(mode: Mode) -> AsyncIterator[str]:
    """A backend whose /health and completions work and whose /metrics is hostile."""

    async def ok(request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [{"id": "m"}]})

    app = web.Application()
    app.router.add_get("/metrics", mode)
    app.router.add_route("*", "/{tail:.*}", ok)
    running = await start(app)
    try:
        yield running.url
    finally:
        await running.stop()


async def router_metrics(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(f"{url}/metrics") as response:
        return await response.text()


@pytest.mark.parametrize("name", sorted(MODES))
async def test_hostile_metrics_warn_once_and_fall_back(
    name: str, router_factory: RouterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "llmsvc.router.load")
    async with hostile_backend(MODES[name]) as url:
        router = await router_factory(
            [url], load_interval=0.05, load_timeout=0.3, max_metrics_bytes=1024 * 1024
        )
        await asyncio.sleep(1.2)  # several scrape rounds
        async with aiohttp.ClientSession() as session:
            body = {"model": "m", "prompt": "hi"}
            async with session.post(f"{router.url}/v1/completions", json=body) as response:
                assert response.status == 200
            text = await router_metrics(session, router.url)
    assert f'llmsvc_router_backend_load_scraped{{backend="{url}"}} 0.0' in text
    records = [r for r in caplog.records if r.name == "llmsvc.router.load"]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert url in warnings[0], warnings
    assert REASONS[name] in warnings[0], warnings
    assert len(records) >= 2  # later failures were seen, at debug level
    assert "canary" not in caplog.text


async def test_simulator_load_reaches_the_snapshot(
    sim_factory: SimFactory, router_factory: RouterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "llmsvc.router.load")
    sim = await sim_factory(itl_base_ms=50.0)
    router = await router_factory([sim.url], load_interval=0.05)
    body = {"model": "sim-model", "prompt": "x", "max_tokens": 200, "stream": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sim.url}/v1/completions", json=body) as direct:
            await direct.content.readline()  # a request no router knows about
            await asyncio.sleep(0.3)
            text = await router_metrics(session, router.url)
        assert f'llmsvc_router_backend_load{{backend="{sim.url}"}} 1.0' in text
        assert f'llmsvc_router_backend_load_scraped{{backend="{sim.url}"}} 1.0' in text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_backend_that_recovers_is_read_again(
    router_factory: RouterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "llmsvc.router.load")
    broken = True

    async def flaky(request: web.Request) -> web.StreamResponse:
        if broken:
            return web.Response(status=503)
        return web.Response(body=b"vllm:num_requests_running 3\nvllm:num_requests_waiting 1\n")

    async with hostile_backend(flaky) as url:
        router = await router_factory([url], load_interval=0.05)
        async with aiohttp.ClientSession() as session:
            await asyncio.sleep(0.4)
            assert f'load_scraped{{backend="{url}"}} 0.0' in await router_metrics(
                session, router.url
            )
            broken = False
            await asyncio.sleep(0.4)
            text = await router_metrics(session, router.url)
    assert f'llmsvc_router_backend_load{{backend="{url}"}} 4.0' in text
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in messages] == [logging.WARNING, logging.INFO], messages
    assert "again" in messages[1][1]
