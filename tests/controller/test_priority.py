"""Event-driven reconciles go before the resync sweep: the sweep may use only ``sweepers`` of the
``workers`` slots, and an event for an object the sweep still queues makes it event-driven. The
sweep skips only LLMServices that time alone cannot change (:func:`settled`).

The reconcile itself is replaced by a slow stand-in: what is tested is the runtime's scheduling,
which decides when a reconcile starts, not what a reconcile does."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from llmsvc.controller.metrics import OperatorMetrics
from llmsvc.controller.reconciler import Settings
from llmsvc.controller.runtime import Runtime, settled
from llmsvc.plan import Plan

SWEPT = 40
SLOW = 0.2  # seconds per reconcile: the sweep's backlog is SWEPT * SLOW / sweepers = 8 s


class Slow(Runtime):
    """A runtime whose reconciles take SLOW seconds and record when they started."""

    started: dict[tuple[str, str], float]

    async def reconcile(self, namespace: str, name: str) -> Plan | None:
        self.started[(namespace, name)] = time.monotonic()
        await asyncio.sleep(SLOW)
        return None


def runtime() -> Slow:
    slow = Slow(Settings(image="img"), OperatorMetrics(), workers=2, sweepers=1, debounce=0)
    slow.started = {}
    slow._slots, slow._sweep = asyncio.Semaphore(2), asyncio.Semaphore(1)
    return slow


async def test_an_event_starts_at_once_while_the_sweep_has_a_backlog() -> None:
    slow = runtime()
    for i in range(SWEPT):
        slow.poke("ml", f"s{i}", delay=0, sweep=True)
    await asyncio.sleep(0.1)
    poked = time.monotonic()
    slow.poke("ml", "failed-pod-owner")
    await asyncio.sleep(SLOW)
    assert slow.started[("ml", "failed-pod-owner")] - poked < SLOW
    assert len(slow.started) < SWEPT  # the sweep was still busy
    await slow.close()


async def test_an_event_for_an_object_queued_by_the_sweep_jumps_the_queue() -> None:
    slow = runtime()
    for i in range(SWEPT):
        slow.poke("ml", f"s{i}", delay=0, sweep=True)
    await asyncio.sleep(0.1)
    poked = time.monotonic()
    slow.poke("ml", f"s{SWEPT - 1}")  # the last in the sweep's queue
    await asyncio.sleep(SLOW)
    assert slow.started[("ml", f"s{SWEPT - 1}")] - poked < SLOW
    await slow.close()


def status(*groups: dict[str, object], ready: str = "True") -> dict[str, object]:
    return {"status": {"conditions": [{"type": "Ready", "status": ready}], "groups": list(groups)}}


def test_only_a_ready_service_without_open_restart_windows_is_settled() -> None:
    assert settled(status({"index": 0, "phase": "Ready"}))
    assert not settled(status({"index": 0, "phase": "Ready"}, ready="False"))
    assert not settled(status({"index": 0, "phase": "Starting"}))
    # A restart's backoff window closes with time alone: the sweep must keep passing it.
    restarted = {"index": 0, "phase": "Ready", "lastRestartTime": "2026-11-30T00:00:00Z"}
    assert not settled(status(restarted))
    assert not settled(None)
    moving = {"index": 0, "phase": "Ready", "movingSince": "2026-11-30T00:00:00Z"}
    assert not settled(status(moving))


async def test_the_sweep_passes_over_quiet_services_until_an_event_pokes_them() -> None:
    slow = runtime()
    slow.resync = 0.3
    slow.known = {("ml", "quiet"), ("ml", "busy")}
    slow._quiet[("ml", "quiet")] = None  # its last pass wrote nothing and it is settled
    loop = asyncio.create_task(slow._resync_loop())
    await asyncio.sleep(0.7)  # two sweeps
    assert ("ml", "busy") in slow.started
    assert ("ml", "quiet") not in slow.started
    assert slow.metrics.reconciles.labels(result="unchanged")._value.get() >= 2
    slow.poke("ml", "quiet")  # a watch event: one of its inputs changed
    assert ("ml", "quiet") not in slow._quiet
    await asyncio.sleep(SLOW + 0.1)
    assert ("ml", "quiet") in slow.started
    loop.cancel()
    await slow.close()


class Creating(Slow):
    """LLMServices named ``new-*`` have no children yet: their passes create them."""

    running: set[tuple[str, str]]
    most: int

    def _new(self, ref: tuple[str, str]) -> bool:
        return ref[1].startswith("new-")

    async def reconcile(self, namespace: str, name: str) -> Plan | None:
        self.running.add((namespace, name))
        self.most = max(self.most, sum(1 for _, n in self.running if n.startswith("new-")))
        try:
            return await super().reconcile(namespace, name)
        finally:
            self.running.discard((namespace, name))


async def test_new_services_are_created_one_at_a_time_and_repairs_do_not_wait() -> None:
    slow = Creating(Settings(image="img"), OperatorMetrics(), workers=4, debounce=0)
    slow.started, slow.running, slow.most = {}, set(), 0
    slow._slots, slow._sweep, slow._create = (asyncio.Semaphore(n) for n in (4, 2, 1))
    for i in range(5):
        slow.poke("ml", f"new-{i}")
    await asyncio.sleep(0.05)
    poked = time.monotonic()
    slow.poke("ml", "existing")  # e.g. a pod of a Ready LLMService failed
    await asyncio.sleep(SLOW / 2)
    assert slow.started[("ml", "existing")] - poked < SLOW / 2
    await asyncio.sleep(5 * SLOW)
    assert slow.most == 1
    assert {n for _, n in slow.started} == {"existing", *(f"new-{i}" for i in range(5))}
    await slow.close()


def arriving(quiet: float, hold: float = 30.0) -> Creating:
    """A runtime that holds first passes until arrivals pause for ``quiet`` seconds."""
    slow = Creating(
        Settings(image="img"), OperatorMetrics(), workers=4, debounce=0,
        arrival_quiet=quiet, arrival_hold=hold,
    )  # fmt: skip
    slow.started, slow.running, slow.most = {}, set(), 0
    slow._slots, slow._sweep, slow._create = (asyncio.Semaphore(n) for n in (4, 2, 1))
    return slow


def held_now(slow: Runtime) -> float | None:
    """``llmsvc_operator_creations_held`` now."""
    return slow.metrics.registry.get_sample_value("llmsvc_operator_creations_held")


def arrive(slow: Runtime, name: str) -> None:
    """What the LLMService watch does with an ADDED event."""
    slow.seen("ml", name, deleted=False)
    slow.poke("ml", name)


async def test_a_batch_being_applied_goes_first_and_repairs_do_not_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="llmsvc.operator")
    slow = arriving(quiet=0.3)
    slow.seen("ml", "existing", deleted=False)
    await asyncio.sleep(0.35)
    last = 0.0
    for i in range(5):
        last = time.monotonic()  # at most the arrival's own time, which the hold counts from
        arrive(slow, f"new-{i}")
        if i == 2:
            slow.poke("ml", "existing")  # a repair while the batch arrives
        await asyncio.sleep(0.1)
    assert set(slow.started) == {("ml", "existing")}  # no first pass during the batch
    assert held_now(slow) == 5
    await asyncio.sleep(0.3 + 5 * SLOW)
    assert held_now(slow) == 0
    first = min(t for (_, n), t in slow.started.items() if n.startswith("new-"))
    assert 0.3 <= first - last < 0.3 + SLOW
    assert {n for _, n in slow.started} == {"existing", *(f"new-{i}" for i in range(5))}
    assert slow.most == 1
    held = [r for r in caplog.records if "keep arriving" in r.getMessage()]
    assert len(held) == 1, "one line per batch says why its children wait"
    await slow.close()


async def test_a_single_new_service_waits_no_longer_than_the_debounce() -> None:
    slow = arriving(quiet=0.3)
    slow.debounce = 0.3
    arrived = time.monotonic()
    arrive(slow, "new-0")
    await asyncio.sleep(0.3 + SLOW / 2)
    assert slow.started[("ml", "new-0")] - arrived < 0.3 + SLOW / 4
    assert not slow._told, "a single new LLMService is not held, nor logged as held"
    await slow.close()


async def test_a_stream_that_never_pauses_is_held_once_for_arrival_hold() -> None:
    slow = arriving(quiet=0.3, hold=0.6)
    slow._slots, slow._create = asyncio.Semaphore(20), asyncio.Semaphore(20)  # no pacing here
    arrived: dict[str, float] = {}
    for i in range(13):  # a new LLMService every 0.1 s for 1.2 s
        arrived[f"new-{i}"] = time.monotonic()
        arrive(slow, f"new-{i}")
        await asyncio.sleep(0.1)
    started = {n: t - arrived[n] for (_, n), t in slow.started.items()}
    assert 0.6 <= started["new-0"] < 0.6 + 0.1  # held until the batch's hold ran out
    assert started["new-10"] < 0.1  # arrived after that: not held again
    await slow.close()


async def test_close_cancels_running_reconciles_instead_of_failing_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reconcile running when the operator stops must not go on with the closed API client
    (each such pass logged "Session is closed" with a traceback and queued a retry)."""
    finished: list[str] = []
    cancelled: list[str] = []

    class Stuck(Slow):
        async def reconcile(self, namespace: str, name: str) -> Plan | None:
            self.started[(namespace, name)] = time.monotonic()
            try:
                await asyncio.sleep(60)  # an API call that has not answered yet
            except asyncio.CancelledError:
                cancelled.append(name)
                raise
            finished.append(name)
            return None

    stuck = Stuck(Settings(image="img"), OperatorMetrics(), workers=2, debounce=0)
    stuck.started = {}
    stuck._slots = asyncio.Semaphore(2)
    stuck.poke("ml", "busy")
    await asyncio.sleep(0.05)
    assert ("ml", "busy") in stuck.started
    started = time.monotonic()
    await stuck.close()
    assert time.monotonic() - started < 1
    assert cancelled == ["busy"]
    assert not finished
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
