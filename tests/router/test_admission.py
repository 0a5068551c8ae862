"""The admission queue and the pool's circuit breaker, driven directly (no HTTP)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from llmsvc.router.admission import Admission
from llmsvc.router.config import RouterConfig
from llmsvc.router.errors import RequestError
from llmsvc.router.policies import RequestInfo, make_policy
from llmsvc.router.pool import Pool

A, B = "http://a:1", "http://b:1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(limit: int = 1, queue: int = 10, urls: tuple[str, ...] = (A, B)) -> Admission:
    pool = Pool(RouterConfig(max_concurrency=limit, queue_size=queue))
    pool.set_urls(urls)
    return Admission(pool, make_policy("least-request"))


async def test_admits_at_once_while_there_is_room() -> None:
    admission = make()
    first = await admission.admit(RequestInfo())
    second = await admission.admit(RequestInfo())
    assert {first.url, second.url} == {A, B}
    assert admission.waiting == 0


async def test_waits_for_a_free_slot_then_gets_it() -> None:
    admission = make()
    held = [await admission.admit(RequestInfo()) for _ in range(2)]
    waiter = asyncio.create_task(admission.admit(RequestInfo()))
    await asyncio.sleep(0)
    assert admission.waiting == 1
    assert not waiter.done()
    admission.release(held[0])
    assert (await waiter).url == held[0].url
    assert admission.waiting == 0


async def test_higher_priority_is_served_first() -> None:
    admission = make(urls=(A,))
    held = await admission.admit(RequestInfo())
    low = asyncio.create_task(admission.admit(RequestInfo(), priority=0))
    high = asyncio.create_task(admission.admit(RequestInfo(), priority=5))
    await asyncio.sleep(0)
    admission.release(held)
    served = await asyncio.wait_for(high, 1)
    assert not low.done()
    admission.release(served)
    assert (await low).url == A


async def test_full_queue_is_429_with_retry_after() -> None:
    admission = make(urls=(A,), queue=1)
    await admission.admit(RequestInfo())
    queued = asyncio.create_task(admission.admit(RequestInfo()))
    await asyncio.sleep(0)
    with pytest.raises(RequestError) as info:
        await admission.admit(RequestInfo())
    assert info.value.status == 429
    assert info.value.headers["Retry-After"] == "1"
    queued.cancel()


async def test_queue_timeout_is_503() -> None:
    admission = make(urls=(A,))
    await admission.admit(RequestInfo())
    with pytest.raises(RequestError) as info:
        await admission.admit(RequestInfo(), wait_s=0.05)
    assert info.value.status == 503
    assert "timed out" in info.value.message
    assert admission.waiting == 0


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    admission = make(urls=(A,))
    held = await admission.admit(RequestInfo())
    waiter = asyncio.create_task(admission.admit(RequestInfo()))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert admission.waiting == 0
    admission.release(held)
    assert admission.pool.backends[A].in_flight == 0


async def test_a_waiter_cancelled_during_handover_loses_no_slot() -> None:
    admission = make(urls=(A,))
    held = await admission.admit(RequestInfo())
    waiter = asyncio.create_task(admission.admit(RequestInfo()))
    await asyncio.sleep(0)
    admission.release(held)  # the slot is handed to the waiter ...
    waiter.cancel()  # ... which is cancelled before it runs
    # either the hand-over won (the caller owns the slot) or the cancellation (the slot went back)
    with contextlib.suppress(asyncio.CancelledError):
        admission.release(await waiter)
    assert admission.pool.backends[A].in_flight == 0
    assert (await admission.admit(RequestInfo())).url == A


async def test_no_usable_backend_fails_fast() -> None:
    admission = make(urls=())
    with pytest.raises(RequestError) as info:
        await admission.admit(RequestInfo())
    assert info.value.status == 503
    assert "no healthy backend" in info.value.message


async def test_waiters_fail_at_once_when_no_backend_is_left_for_them() -> None:
    """Queued behind busy backends, then B leaves discovery: a waiter that already tried A (a
    retry) has no backend left and gets the 503 a new arrival gets, not the queue timeout; a
    fresh waiter keeps waiting for A, and so do waiters of an unhealthy backend (it may
    recover)."""
    admission = make(urls=(A, B))
    held = [await admission.admit(RequestInfo()) for _ in range(2)]
    fresh = asyncio.create_task(admission.admit(RequestInfo()))
    retry = asyncio.create_task(admission.admit(RequestInfo(), exclude=frozenset({A})))
    await asyncio.sleep(0)
    admission.pool.set_health(B, healthy=False)
    admission.pool.tick()
    assert admission.waiting == 2
    admission.pool.set_urls([A])
    with pytest.raises(RequestError) as info:
        await asyncio.wait_for(retry, 1)
    assert (info.value.status, info.value.message) == (503, "no healthy backend is available")
    assert "Retry-After" in info.value.headers
    assert admission.waiting == 1
    admission.release(next(e for e in held if e.url == A))
    assert (await asyncio.wait_for(fresh, 1)).url == A


async def test_a_new_backend_drains_the_queue() -> None:
    admission = make(urls=(A,))
    await admission.admit(RequestInfo())
    waiter = asyncio.create_task(admission.admit(RequestInfo()))
    await asyncio.sleep(0)
    admission.pool.set_urls([A, B])
    assert (await waiter).url == B


def test_circuit_breaker_ejects_with_backoff_and_recovers() -> None:
    clock = Clock()
    pool = Pool(RouterConfig(failure_threshold=2, eject_base_seconds=1, eject_max_seconds=3), clock)
    pool.set_urls([A])
    pool.failed(A)
    assert pool.snapshot_usable(A)
    pool.failed(A)
    assert not pool.snapshot_usable(A)
    clock.now += 1.01
    assert pool.snapshot_usable(A)
    pool.failed(A, hard=True)  # half-open probe failed: twice as long
    clock.now += 1.5
    assert not pool.snapshot_usable(A)
    clock.now += 0.6
    pool.succeeded(A)
    pool.failed(A)
    assert pool.snapshot_usable(A)  # success reset the count


def test_ejection_time_is_capped() -> None:
    clock = Clock()
    pool = Pool(RouterConfig(eject_base_seconds=1, eject_max_seconds=3), clock)
    pool.set_urls([A])
    for _ in range(10):
        pool.failed(A, hard=True)
    clock.now += 3.01
    assert pool.snapshot_usable(A)


def test_unhealthy_backends_are_not_eligible_and_models_are_merged() -> None:
    pool = Pool(RouterConfig())
    pool.set_urls([A, B])
    pool.set_health(A, False)
    pool.set_health(B, True, frozenset({"m"}))
    assert [e.url for e in pool.snapshot().eligible()] == [B]
    assert pool.models() == {"m"}
    assert [e.url for e in pool.snapshot(exclude=frozenset({B})).eligible()] == []


def test_one_incident_ejects_once() -> None:
    """Six requests in flight when a backend dies: one ejection of the base time, not 2^5 s."""
    clock = Clock()
    pool = Pool(RouterConfig(eject_base_seconds=1, eject_max_seconds=30), clock)
    pool.set_urls([A])
    sent = clock.now
    clock.now += 5
    for _ in range(6):
        pool.failed(A, hard=True, sent_at=sent)
    clock.now += 1.01
    assert pool.snapshot_usable(A)


def test_a_flapping_backend_waits_out_its_ejection() -> None:
    clock = Clock()
    pool = Pool(RouterConfig(eject_base_seconds=1, eject_max_seconds=30), clock)
    pool.set_urls([A])
    for _ in range(3):  # three separate incidents: 1 + 2 + 4 s of ejection ahead
        pool.failed(A, hard=True, sent_at=clock.now)
    pool.set_health(A, False, checked_at=clock.now)
    clock.now += 0.5
    pool.set_health(A, True, checked_at=clock.now - 0.1)  # too soon after the ejection
    assert not pool.snapshot_usable(A)
    clock.now += 1.0
    pool.set_health(A, True, checked_at=clock.now - 0.1)
    assert not pool.snapshot_usable(A)  # three ejections without a quiet period: flapping


def test_health_lifts_the_ejection_of_a_backend_that_is_not_flapping() -> None:
    clock = Clock()
    pool = Pool(RouterConfig(eject_base_seconds=1, eject_max_seconds=30), clock)
    pool.set_urls([A])
    pool.failed(A, hard=True, sent_at=clock.now)
    clock.now += 1.01
    pool.failed(A, hard=True, sent_at=clock.now)  # the half-open probe failed: 2 s more
    clock.now += 1.2
    assert not pool.snapshot_usable(A)
    pool.set_health(A, True, checked_at=clock.now - 0.1)
    assert pool.snapshot_usable(A)
    clock.now += 31
    pool.succeeded(A)  # quiet for eject_max_seconds: the backoff starts over
    assert pool.backends[A].ejections == 0


def holding(queue: int = 2) -> Admission:
    pool = Pool(RouterConfig(queue_size=queue, hold_when_empty=True))
    return Admission(pool, make_policy("least-request"))


async def test_scaled_to_zero_holds_requests_until_a_backend_appears() -> None:
    admission = holding()
    waiters = [asyncio.create_task(admission.admit(RequestInfo())) for _ in range(2)]
    await asyncio.sleep(0)
    assert admission.waiting == 2  # counted in llmsvc_router_queue_length: it wakes the service
    admission.pool.set_urls([A])
    assert [(await w).url for w in waiters] == [A, A]


async def test_scaled_to_zero_hold_is_bounded_and_times_out_with_retry_after() -> None:
    admission = holding(queue=1)
    waiter = asyncio.create_task(admission.admit(RequestInfo(), wait_s=0.05))
    await asyncio.sleep(0)
    with pytest.raises(RequestError) as full:
        await admission.admit(RequestInfo())
    assert (full.value.status, full.value.headers["Retry-After"]) == (429, "1")
    with pytest.raises(RequestError) as late:
        await waiter
    assert late.value.status == 503
    assert "Retry-After" in late.value.headers
    assert admission.waiting == 0


async def test_holding_does_not_hide_backends_that_are_all_unhealthy() -> None:
    admission = holding()
    admission.pool.set_urls([A])
    admission.pool.set_health(A, healthy=False)
    with pytest.raises(RequestError) as info:
        await admission.admit(RequestInfo())
    assert info.value.status == 503
