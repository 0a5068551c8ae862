"""Real ``llmsvc sim`` processes behind the router, one killed with SIGKILL mid-test."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from llmsvc.router.server import free_port, wait_ready
from tests.router.conftest import RouterFactory
from tests.sim.test_app import CHAT, events, post


@pytest.fixture
async def sim_processes() -> AsyncIterator[list[tuple[subprocess.Popen[bytes], str]]]:
    """Two ``llmsvc sim`` subprocesses on 127.0.0.1."""
    procs = []
    for seed in (0, 1):
        port = free_port()
        argv = [sys.executable, "-m", "llmsvc.cli", "sim", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--seed", str(seed), "--itl-base-ms", "20"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
        procs.append((proc, f"http://127.0.0.1:{port}"))
    for _, url in procs:
        await wait_ready(url)
    yield procs
    for proc, _ in procs:
        proc.kill()
        proc.wait(timeout=10)


async def test_sigkill_mid_test(
    sim_processes: list[tuple[subprocess.Popen[bytes], str]], router_factory: RouterFactory
) -> None:
    """Streams cut mid-answer end with an error event; requests not yet streaming all succeed."""
    (victim, victim_url), (_, _) = sim_processes
    router = await router_factory([url for _, url in sim_processes], policy="round-robin")
    request = {**CHAT, "stream": True, "max_tokens": 100}
    url = f"{router.url}/v1/chat/completions"
    async with aiohttp.ClientSession() as session:
        streams = [await session.post(url, json=request) for _ in range(4)]
        for stream in streams:
            await stream.content.readuntil(b"\n\n")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        bodies = [await stream.read() for stream in streams]
    cut = [b for b in bodies if events(b)[-1] != "[DONE]"]
    assert len(cut) == 2  # round robin put two streams on the victim
    assert all("backend failed while streaming" in json.dumps(events(b)[-1]) for b in cut)
    after = await asyncio.gather(*(post(url, {**CHAT, "max_tokens": 3}) for _ in range(10)))
    assert [status for status, _ in after] == [200] * 10
    async with aiohttp.ClientSession() as session, session.get(f"{router.url}/metrics") as r:
        assert f'llmsvc_router_backend_healthy{{backend="{victim_url}"}} 0.0' in await r.text()
