"""Active health checks: poll every backend's ``/health`` (and learn its models) on an interval."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from llmsvc.router.pool import Pool

log = logging.getLogger("llmsvc.router.health")


async def check(session: aiohttp.ClientSession, pool: Pool, url: str, limit_s: float) -> None:
    """One check of ``url``: 200 on ``/health`` is healthy; models are read once."""
    limit = aiohttp.ClientTimeout(total=limit_s)
    started = pool.now()
    try:
        async with session.get(f"{url}/health", timeout=limit) as response:
            healthy = response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        healthy = False
    backend = pool.backends.get(url)
    models = None
    if healthy and backend is not None and not backend.models:
        models = await _models(session, url, limit)
    if backend is not None and backend.healthy != healthy:
        log.info("backend %s is now %s", url, "healthy" if healthy else "unhealthy")
    pool.set_health(url, healthy, models, checked_at=started)


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
