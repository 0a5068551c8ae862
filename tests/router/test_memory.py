"""A real router process under the worst bodies its limits allow: its memory stays bounded."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from tests.router.helpers import spawn

MIB = 1024 * 1024
MAX_VALUES = 262_144  # the router's default --max-json-values


def worst_allowed_body() -> bytes:
    """16 MiB at the limits: the most objects per value, one huge UCS-4 string, deep nesting."""
    nest = b'{"a":' * 60 + b"{}" + b"}" * 60
    items = b",".join([b'{"a":{}}'] * (MAX_VALUES // 4 - 200))
    head = b'{"model":"sim-model","z1":' + nest + b',"z2":[' + items + b'],"messages":['
    head += b'{"role":"user","content":"\xf0\x9f\x98\x80'
    tail = b'"}]}'
    return head + b"y" * (16 * MIB - 1024 - len(head) - len(tail)) + tail


async def test_router_rss_stays_bounded_under_the_worst_bodies(tmp_path: Path) -> None:
    """A real router process (default limits): the issue's body and the worst allowed body,
    one at a time (one parse: ~10 x body size + 270 B per value, about
    180 MiB at the defaults), then 12 at once (bodies held
    beyond --max-buffered-bytes are refused with a 503)."""
    sim = await spawn(tmp_path, "sim", "sim")
    router = await spawn(tmp_path, "router", "router", "--backend", sim.url)
    issue = b'{"messages":[' + b",".join([b"{}"] * (16 * MIB // 3 - 10)) + b"]}"
    worst = worst_allowed_body()
    assert len(worst) <= 16 * MIB
    try:
        url = f"{router.url}/v1/chat/completions"
        async with aiohttp.ClientSession() as session:
            assert (await _post(session, url, b'{"prompt":"x"}'))[0] == 400
            base = router.rss_kib()
            sequential = [await _post(session, url, body) for body in (issue, worst) * 2]
            one = (router.rss_kib("VmHWM") - base) // 1024
            assert one < 250, f"router peak RSS grew {one} MiB for one body"
            assert sequential == [(413, True), (200, True)] * 2
            many = [_post(session, url, body) for body in [worst, *[issue] * 11]]
            statuses = [status for status, _ in await asyncio.gather(*many)]
            peak = (router.rss_kib("VmHWM") - base) // 1024
        assert set(statuses[1:]) <= {413, 503}, statuses  # the worst body's backend may be slow
        assert 503 in statuses, statuses
        assert peak < 400, f"router peak RSS grew {peak} MiB for twelve bodies"
    finally:
        log = router.stop()
        sim.stop()
    assert "Traceback" not in log


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, bool]:
    """(status, whether it took under 10 s)."""
    started = time.monotonic()
    async with session.post(url, data=body) as response:
        await response.read()
        return response.status, time.monotonic() - started < 10


async def test_health_answers_while_a_worst_body_is_parsed(tmp_path: Path) -> None:
    sim = await spawn(tmp_path, "sim", "sim")
    router = await spawn(tmp_path, "router", "router", "--backend", sim.url)
    try:
        async with aiohttp.ClientSession() as session:
            big = session.post(f"{router.url}/v1/chat/completions", data=worst_allowed_body())
            task = asyncio.ensure_future(big)
            started = time.monotonic()
            for _ in range(10):
                async with session.get(f"{router.url}/health") as r:
                    assert r.status == 200
                await asyncio.sleep(0.05)
            assert time.monotonic() - started < 6  # generous: the machine is shared
            (await task).close()
    finally:
        router.stop()
        sim.stop()
