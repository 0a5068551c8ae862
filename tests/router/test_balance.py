"""Two router processes sharing two simulator processes stay balanced only by reading /metrics.

Each router alone balances its own requests; together they do not, because neither knows
the other's. Every test runs twice: with scraping (``--load-interval 0.1``) the engines'
running counts stay within the bound, and with scraping off (``--load-interval 0``) the
same traffic breaks the bound, which shows the test measures what scraping adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmsvc.router.promtext import LoadParser
from tests.router.helpers import Process, spawn

SCRAPE = {"on": "0.1", "off": "0"}
SETTLE = 0.7  # seconds without scraping: what a few scrapes at 0.1 s would take


@contextlib.asynccontextmanager
async def fleet(tmp: Path, policy: str, interval: str) -> AsyncIterator[list[Process]]:
    """Two ``llmsvc sim`` and, after them, two ``llmsvc router`` processes over both."""
    started: list[Process] = []
    try:
        for name in ("sim-a", "sim-b"):
            started.append(await spawn(tmp, name, "sim", "--itl-base-ms", "50"))
        backends = [arg for sim in started for arg in ("--backend", sim.url)]
        for name in ("router-a", "router-b"):
            argv = ("router", *backends, "--policy", policy, "--load-interval", interval)
            started.append(await spawn(tmp, name, *argv, "--health-interval", "0.2"))
        yield started
    finally:
        logs = [process.stop() for process in started]
        assert not any("Traceback" in log for log in logs), logs


async def running(session: aiohttp.ClientSession, sims: list[Process]) -> list[int]:
    """Each simulator's ``vllm:num_requests_running``, read as the router reads it."""
    counts = []
    for sim in sims:
        parser = LoadParser()
        async with session.get(f"{sim.url}/metrics") as response:
            parser.feed(await response.read())
        counts.append(parser.result().running)
    return counts


async def router_loads(session: aiohttp.ClientSession, router: Process) -> dict[str, float]:
    """The router's ``llmsvc_router_backend_load`` per backend URL."""
    async with session.get(f"{router.url}/metrics") as response:
        text = await response.text()
    return {
        sample.labels["backend"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "llmsvc_router_backend_load"
        for sample in family.samples
    }


async def settle(session: aiohttp.ClientSession, processes: list[Process], scrape: str) -> None:
    """Without scraping: wait ``SETTLE``. With it: until both routers see every sim's real
    load (a loaded machine may delay a scrape; the test checks balance, not timing)."""
    if scrape == "off":
        await asyncio.sleep(SETTLE)
        return
    sims, routers = processes[:2], processes[2:]
    for _ in range(200):
        truth = dict(zip([sim.url for sim in sims], await running(session, sims), strict=True))
        views = [await router_loads(session, router) for router in routers]
        if all(view == truth for view in views):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the routers never saw the engines' load {truth}: {views}")


async def open_stream(
    session: aiohttp.ClientSession, router: Process, prompt: str, streams: contextlib.AsyncExitStack
) -> None:
    """Start a long streaming completion through ``router``; return once its first chunk came."""
    body = {"model": "sim-model", "prompt": prompt, "max_tokens": 1000, "stream": True}
    response = await streams.enter_async_context(
        session.post(f"{router.url}/v1/completions", data=json.dumps(body))
    )
    assert response.status == 200, await response.text()
    await response.content.readline()


@pytest.mark.parametrize("scrape", ["on", "off"])
async def test_least_request_across_two_routers(tmp_path: Path, scrape: str) -> None:
    """Requests alternate between the routers; after each, the sims' running counts differ
    by at most 1 with scraping. Without it both routers break their ties the same way and
    the spread reaches 2 (one more per router replica)."""
    async with fleet(tmp_path, "least-request", SCRAPE[scrape]) as processes:
        sims, routers = processes[:2], processes[2:]
        spreads = []
        async with aiohttp.ClientSession() as session, contextlib.AsyncExitStack() as streams:
            for turn in range(8):
                await open_stream(session, routers[turn % 2], f"request {turn}", streams)
                await settle(session, processes, scrape)
                counts = await running(session, sims)
                spreads.append(abs(counts[0] - counts[1]))
            assert sum(counts) == 8, counts
    if scrape == "on":
        assert max(spreads) <= 1, spreads
    else:
        assert max(spreads) == 2, spreads


@pytest.mark.parametrize("scrape", ["on", "off"])
async def test_prefix_aware_load_bound_across_two_routers(tmp_path: Path, scrape: str) -> None:
    """Eight requests with one shared prefix through router A, then eight through router B.
    Both routers' affinity points at the same sim; with scraping, B sees that sim at the
    bound (8 = min load + --balance-slack) and fills the other: 8 and 8. Without it B sends
    its eight after A's: 16 and 0."""
    prompt = "You are a helpful assistant. " * 40
    async with fleet(tmp_path, "prefix-aware", SCRAPE[scrape]) as processes:
        sims, routers = processes[:2], processes[2:]
        async with aiohttp.ClientSession() as session, contextlib.AsyncExitStack() as streams:
            for router in routers:
                for _ in range(8):
                    await open_stream(session, router, prompt, streams)
                await settle(session, processes, scrape)
            counts = sorted(await running(session, sims))
    if scrape == "on":
        assert counts == [8, 8], counts
    else:
        assert counts == [0, 16], counts
