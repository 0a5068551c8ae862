"""The benchmark client: send planned (open loop) or back-to-back (closed loop) streaming chats.

For each request it records the time to the first SSE event (first token), the end-to-end
time, and whether the stream ended with ``[DONE]``. It does not parse JSON, to stay cheap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from workload import Planned, chat_body


@dataclass(frozen=True)
class Result:
    """One finished request."""

    ok: bool
    ttft: float
    e2e: float


async def one(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> Result:
    """Send one streaming chat and time it."""
    start = time.perf_counter()
    ttft = 0.0
    done = False
    try:
        async with session.post(url, json=body, headers=headers) as response:
            if response.status != 200:
                await response.read()
                return Result(False, 0.0, time.perf_counter() - start)
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                if not ttft:
                    ttft = time.perf_counter() - start
                if line.startswith(b"data: [DONE]"):
                    done = True
                elif b'"error"' in line:
                    break
    except (aiohttp.ClientError, TimeoutError):
        return Result(False, 0.0, time.perf_counter() - start)
    return Result(done, ttft, time.perf_counter() - start)


def client_session(limit_s: float = 120.0) -> aiohttp.ClientSession:
    """A client without connection limits."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=limit_s),
    )


async def open_loop(base: str, planned: Sequence[Planned], max_tokens: int) -> list[Result]:
    """Send every planned request at its time, regardless of how earlier ones fare."""
    url = f"{base}/v1/chat/completions"
    async with client_session() as session:
        begin = time.perf_counter()
        tasks = []
        for item in planned:
            delay = item.at - (time.perf_counter() - begin)
            if delay > 0:
                await asyncio.sleep(delay)
            body = chat_body(item.messages, max_tokens)
            headers = {"x-session-id": item.session}
            tasks.append(asyncio.create_task(one(session, url, body, headers)))
        return list(await asyncio.gather(*tasks))


async def closed_loop(
    base: str,
    concurrency: int,
    total: int,
    max_tokens: int,
    *,
    limit_s: float,
    stagger_s: float = 0.0,
) -> list[Result]:
    """``concurrency`` streams back to back until ``total`` requests or ``limit_s`` seconds."""
    url = f"{base}/v1/chat/completions"
    results: list[Result] = []
    deadline = time.perf_counter() + limit_s
    started = 0

    async def worker(n: int, session: aiohttp.ClientSession) -> None:
        nonlocal started
        messages = ({"role": "user", "content": f"worker {n} says hello"},)
        await asyncio.sleep(stagger_s * n / concurrency)  # spread the streams' phases
        while started < total and time.perf_counter() < deadline:
            started += 1
            results.append(await one(session, url, chat_body(messages, max_tokens), {}))

    async with client_session() as session:
        await asyncio.gather(*(worker(n, session) for n in range(concurrency)))
    return results
