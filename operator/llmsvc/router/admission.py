"""The admission queue: hold requests while every backend is at its concurrency limit.

A request is admitted at once when a backend has room and nobody is waiting. Otherwise it
waits in a bounded priority queue (higher priority first, then arrival order) until a slot
frees, its timeout passes, or its client goes away. A freed slot is handed to the head
waiter directly, so a newcomer cannot overtake the queue.

With ``hold_when_empty`` (a service that scales to zero) a request that finds no backend at all
waits in the same bounded queue instead of failing: the queue is what wakes the service, and
the first backend that appears takes the waiters. Backends that exist but are all unhealthy
still fail fast: that is a broken service, not a sleeping one. Every request that arrives
before discovery has published its first backend set (a router pod just started, its
EndpointSlice list still in flight) waits the same way: the router does not yet know whether it
has backends, so it does not answer that it has none.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

from llmsvc.router.errors import RequestError
from llmsvc.router.policies import Endpoint, Policy, RequestInfo
from llmsvc.router.pool import Pool


@dataclass(order=True)
class _Waiter:
    key: tuple[int, int]
    info: RequestInfo = field(compare=False)
    exclude: frozenset[str] = field(compare=False)
    future: asyncio.Future[Endpoint] = field(compare=False)


class Admission:
    """Admits requests to backends through ``policy``, queueing when all are full."""

    def __init__(self, pool: Pool, policy: Policy) -> None:
        self.pool = pool
        self.policy = policy
        self._heap: list[_Waiter] = []
        self._order = itertools.count()
        pool.listeners.append(self.drain)
        pool.set_listeners.append(self._fail_stranded)

    @property
    def waiting(self) -> int:
        """Requests in the queue now (the metric the HPA scales on)."""
        return len(self._heap)

    def _try(self, info: RequestInfo, exclude: frozenset[str]) -> Endpoint | None:
        endpoint = self.policy.pick(self.pool.snapshot(exclude), info)
        if endpoint is not None:
            self.pool.begin(endpoint.url)
        return endpoint

    async def admit(
        self,
        info: RequestInfo,
        exclude: frozenset[str] = frozenset(),
        priority: int = 0,
        wait_s: float = 30.0,
    ) -> Endpoint:
        """A backend with a slot reserved for this request; raises ``RequestError`` 429/503."""
        if not self.pool.any_usable(exclude) and not self._holding():
            raise self._unavailable("no healthy backend is available")
        if not self._heap:
            endpoint = self._try(info, exclude)
            if endpoint is not None:
                return endpoint
        if len(self._heap) >= self.pool.config.queue_size:
            raise self._unavailable("the router's queue is full; retry later", status=429)
        future = asyncio.get_running_loop().create_future()
        waiter = _Waiter((-priority, next(self._order)), info, exclude, future)
        heapq.heappush(self._heap, waiter)
        try:
            return await asyncio.wait_for(asyncio.shield(future), wait_s)
        except TimeoutError:
            self._abandon(waiter)
            raise self._unavailable("timed out waiting for a free backend") from None
        except BaseException:
            self._abandon(waiter)
            raise

    def _holding(self) -> bool:
        """Hold requests while no backend exists (scaled to zero, waking up), and until
        discovery has published its first backend set."""
        empty = self.pool.config.hold_when_empty and not self.pool.backends
        return empty or not self.pool.synced

    def _abandon(self, waiter: _Waiter) -> None:
        """The waiter gave up: leave the queue, or give back a slot handed over meanwhile."""
        if waiter in self._heap:
            self._heap.remove(waiter)
            heapq.heapify(self._heap)
        elif _granted(waiter.future):
            self.release(waiter.future.result())
        waiter.future.cancel()

    def release(self, endpoint: Endpoint) -> None:
        """The request on ``endpoint`` is over: free its slot (and admit waiters)."""
        self.pool.end(endpoint.url)

    def drain(self) -> None:
        """Hand free slots to waiters, highest priority first."""
        while self._heap:
            head = self._heap[0]
            endpoint = self._try(head.info, head.exclude)
            if endpoint is None:
                return
            heapq.heappop(self._heap)
            head.future.set_result(endpoint)

    def _fail_stranded(self) -> None:
        """After a discovery update: fail the waiters for which no backend exists any more
        (the first backend set was empty, or every backend they may use left it), as a new
        arrival would be failed; only discovery can strand a waiter. Backends that are
        unhealthy or ejected still exist; their waiters wait for them, within the timeout."""
        if self._holding():
            return
        present = self.pool.backends.keys()
        stranded: list[_Waiter] = []
        kept: list[_Waiter] = []
        for waiter in self._heap:
            (stranded if present <= waiter.exclude else kept).append(waiter)
        if not stranded:
            return
        self._heap = kept
        heapq.heapify(self._heap)
        for waiter in stranded:
            waiter.future.set_exception(self._unavailable("no healthy backend is available"))

    def _unavailable(self, message: str, status: int = 503) -> RequestError:
        retry_after = str(self.pool.config.retry_after_seconds)
        return RequestError(status, message, headers={"Retry-After": retry_after})


def _granted(future: asyncio.Future[Endpoint]) -> bool:
    """Whether a slot was handed to the waiter of ``future`` (it must give it back)."""
    return future.done() and not future.cancelled() and future.exception() is None
