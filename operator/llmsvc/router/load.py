"""Engine load scraping: read every backend's ``/metrics`` on an interval into the pool.

With several router replicas each one only counts its own requests; the engines know the
whole load. Every ``load_interval`` seconds each backend's ``/metrics`` is read (at most
``max_metrics_bytes``, within ``load_timeout``, uncompressed) and parsed by ``promtext``. A
failed scrape clears the backend's engine load, so policies fall back to the router's own
counts, never to zero load. The first failure of a backend is a warning (it names the
backend and the reason, never the body); later ones are debug lines, so a broken exporter
cannot flood the log.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from llmsvc.router.config import RouterConfig
from llmsvc.router.pool import Pool
from llmsvc.router.promtext import EngineLoad, LoadParser, MetricsError

log = logging.getLogger("llmsvc.router.load")
HEADERS = {"Accept": "text/plain", "Accept-Encoding": "identity"}


async def fetch(session: aiohttp.ClientSession, url: str, config: RouterConfig) -> EngineLoad:
    """The load ``url``'s engine reports on ``/metrics``; ``MetricsError`` says why not."""
    try:
        async with asyncio.timeout(config.load_timeout):
            async with session.get(f"{url}/metrics", headers=HEADERS) as response:
                _check(response)
                return await _parse(response, config.max_metrics_bytes)
    except TimeoutError:
        raise MetricsError(f"no answer within {config.load_timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise MetricsError(f"the request failed ({type(exc).__name__})") from None


def _check(response: aiohttp.ClientResponse) -> None:
    if response.status != 200:
        raise MetricsError(f"HTTP {response.status}")
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        raise MetricsError("the body is compressed although identity was asked for")


async def _parse(response: aiohttp.ClientResponse, limit: int) -> EngineLoad:
    parser = LoadParser()
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise MetricsError(f"the body is over {limit} bytes")
        parser.feed(chunk)
    return parser.result()


class Scraper:
    """Scrapes all backends of a pool, remembering which ones were already warned about."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._warned: set[str] = set()
        self._failing: set[str] = set()

    async def scrape(self, session: aiohttp.ClientSession, url: str) -> None:
        """One scrape of ``url`` into the pool."""
        try:
            load = await fetch(session, url, self.pool.config)
        except MetricsError as exc:
            self.pool.set_load(url, None)
            self._failed(url, str(exc))
            return
        self.pool.set_load(url, load)
        if url in self._failing:
            self._failing.discard(url)
            log.info("reading the load of %s from /metrics again", url)

    def _failed(self, url: str, reason: str) -> None:
        first = url not in self._warned
        self._warned.add(url)
        self._failing.add(url)
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "cannot read the load of %s from /metrics: %s; using this router's own counts "
            "for it (warned once per backend; --load-interval 0 turns scraping off)",
            url,
            reason,
        )

    async def scrape_all(self, session: aiohttp.ClientSession) -> None:
        """Scrape every backend concurrently; forget backends that left."""
        urls = list(self.pool.backends)
        await asyncio.gather(*(self.scrape(session, url) for url in urls))
        self._warned.intersection_update(self.pool.backends)
        self._failing.intersection_update(self.pool.backends)

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Scrape every ``load_interval`` seconds, forever."""
        while True:
            await self.scrape_all(session)
            await asyncio.sleep(self.pool.config.load_interval)
