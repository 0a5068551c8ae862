"""Active health checks: poll every backend's ``/health`` (and learn its models) on an interval.

A backend turns unhealthy at once when it says so (an answer other than 200, or a refused
connection: nothing listens, the engine exited), and after ``health_failures`` checks in a row
that got no answer in time. One unanswered check proves little: the router itself may have been
stalled (its timer fired late, with the answer already in the socket).
"""

from __future__ import annotations

import asyncio
import enum
import logging

import aiohttp

from llmsvc.router.pool import Pool

log = logging.getLogger("llmsvc.router.health")


class Outcome(enum.Enum):
    """What one ``/health`` check found."""

    PASSED = "passed"
    DOWN = "down"  # an answer other than 200, or a refused connection (the process is gone)
    SILENT = "silent"  # no answer in time, or a broken connection: maybe the router's own stall


async def check(session: aiohttp.ClientSession, pool: Pool, url: str, limit_s: float) -> None:
    """One check of ``url``: 200 on ``/health`` passes (models are read once), another answer or
    a refused connection fails it at once, silence counts toward ``health_failures``."""
    limit = aiohttp.ClientTimeout(total=limit_s)
    started = pool.now()
    outcome = await _probe(session, url, limit)
    backend = pool.backends.get(url)
    if backend is None:
        return
    was = backend.healthy
    if outcome is Outcome.PASSED:
        models = None if backend.models else await _models(session, url, limit)
        pool.set_health(url, True, models, checked_at=started)
    else:
        pool.check_failed(url, certain=outcome is Outcome.DOWN)
    if backend.healthy != was:
        log.info("backend %s is now %s", url, "healthy" if backend.healthy else "unhealthy")


async def _probe(session: aiohttp.ClientSession, url: str, limit: aiohttp.ClientTimeout) -> Outcome:
    try:
        async with session.get(f"{url}/health", timeout=limit) as response:
            return Outcome.PASSED if response.status == 200 else Outcome.DOWN
    except aiohttp.ClientConnectorError as error:
        refused = isinstance(error.os_error, ConnectionRefusedError)
        return Outcome.DOWN if refused else Outcome.SILENT
    except (aiohttp.ClientError, TimeoutError):
        return Outcome.SILENT


async def _models(
    session: aiohttp.ClientSession, url: str, limit: aiohttp.ClientTimeout
) -> frozenset[str] | None:
    try:
        async with session.get(f"{url}/v1/models", timeout=limit) as response:
            body = await response.json()
        return frozenset(str(card["id"]) for card in body["data"])
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
        return None


async def check_all(session: aiohttp.ClientSession, pool: Pool) -> None:
    """Check every backend concurrently."""
    timeout = pool.config.health_timeout
    await asyncio.gather(*(check(session, pool, url, timeout) for url in list(pool.backends)))
    pool.tick()


async def run_checks(session: aiohttp.ClientSession, pool: Pool) -> None:
    """Check all backends every ``health_interval`` seconds, forever."""
    while True:
        await check_all(session, pool)
        await asyncio.sleep(pool.config.health_interval)
