"""How many first passes of new LLMServices may run at once: as many as the API server absorbs.

A first pass writes about a dozen objects. When the API server has room, running more of them
at once feeds the pods' pipeline (StatefulSet controller, scheduler, kubelets) sooner; when it is
saturated, more at once only queues the requests of every client, this one's included, so each
pass takes longer and nothing is gained. :class:`Pacer` tells the two apart the way delay-based
congestion control does (TCP Vegas, Netflix's concurrency limits): it keeps ``floor``, the
duration of a pass on an idle server (the fastest recent pass, drifting up slowly so that one
lucky pass does not pin it), and

- a pass no slower than ``tolerance`` times ``floor`` counts as room: after ``limit`` such passes
  in a row the limit grows by one (additive increase, at most ``most``);
- a slower pass, or a failed one, halves the limit (at least 1).

Pure: it is fed durations and answers a number; :class:`Gate` applies that number to waiters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass
class Pacer:
    """The concurrency limit of first passes, from their durations."""

    most: int = 8
    tolerance: float = 2.0  # a pass this many times the floor's duration means queueing
    drift: float = 0.05  # how fast the floor follows slower passes (share of the gap per pass)
    limit: int = 1
    floor: float | None = None
    _room: int = 0  # passes in a row that found room

    def passed(self, seconds: float) -> int:
        """Record a completed pass that took ``seconds``; the new limit."""
        floor = seconds if self.floor is None else self.floor
        self.floor = min(seconds, floor + self.drift * max(0.0, seconds - floor))
        if seconds > self.tolerance * floor:
            return self.congested()
        self._room += 1
        if self._room >= self.limit:
            self._room, self.limit = 0, min(self.most, self.limit + 1)
        return self.limit

    def congested(self) -> int:
        """Record a pass that failed or queued; the new limit."""
        self._room, self.limit = 0, max(1, self.limit // 2)
        return self.limit


class Gate:
    """A semaphore whose size is asked of ``limit`` each time a task wants a slot."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self.limit = limit
        self.running = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot while the block runs."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.running < self.limit())
            self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            await self.changed()

    async def changed(self) -> None:
        """Wake the waiters: the limit may have grown."""
        async with self._changed:
            self._changed.notify_all()
