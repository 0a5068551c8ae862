"""A router-wide budget for request bodies held in memory.

A request keeps its body until its answer is over (it may be retried on another backend), so
N concurrent 16 MiB bodies cost N x 16 MiB. Each request reserves its size before its body is
read (its Content-Length, or ``--max-body-bytes`` when the length is unknown or the body is
compressed) and gives it back when it is answered. When the budget is spent, a new request
with a body gets a 503 with ``Retry-After`` instead of growing the router out of its memory
limit; a request with no body never waits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge

from llmsvc.router.errors import RequestError


class BodyBudget:
    """At most ``limit`` bytes of request bodies reserved at once."""

    def __init__(self, limit: int, registry: CollectorRegistry) -> None:
        self.limit = limit
        self.used = 0
        Gauge(
            "llmsvc_router_buffered_body_bytes",
            "Bytes reserved for request bodies held in memory (--max-buffered-bytes).",
            registry=registry,
        ).set_function(lambda: self.used)

    @contextlib.contextmanager
    def hold(self, size: int) -> Iterator[None]:
        """Reserve ``size`` bytes for the duration of the block; 503 when they are not free."""
        if size and self.used and self.used + size > self.limit:
            raise RequestError(
                503,
                "the router holds too many large request bodies; retry later "
                "(flag --max-buffered-bytes)",
                headers={"Retry-After": "1"},
            )
        self.used += size
        try:
            yield
        finally:
            self.used -= size
