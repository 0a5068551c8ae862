"""The pacer of first passes (:mod:`llmsvc.controller.pacing`): its limit grows while passes stay
as fast as on an idle API server and halves when they queue; the gate applies the limit."""

from __future__ import annotations

import asyncio

import pytest

from llmsvc.controller.pacing import Gate, Pacer


def limits(pacer: Pacer, durations: list[float]) -> list[int]:
    return [pacer.passed(d) for d in durations]


@pytest.mark.parametrize(
    ("durations", "expected"),
    [
        # every pass as fast as the first: +1 after `limit` passes in a row
        ([0.1] * 10, [2, 2, 3, 3, 3, 4, 4, 4, 4, 4]),
        # a pass twice as slow as the floor is still room; more than twice is queueing
        ([0.1, 0.1, 0.1, 0.2, 0.25], [2, 2, 3, 3, 1]),
        # the floor follows a faster pass at once
        ([0.4, 0.1, 0.3], [2, 2, 1]),
        # and a slower server slowly: 0.5 s passes are queueing first, room once the floor rose
        ([0.1] + [0.5] * 3, [2, 1, 1, 1]),
    ],
)
def test_the_limit_follows_the_passes(durations: list[float], expected: list[int]) -> None:
    assert limits(Pacer(most=4), durations) == expected


def test_the_floor_drifts_up_so_one_lucky_pass_does_not_pin_the_limit_at_one() -> None:
    pacer = Pacer(most=4)
    limits(pacer, [0.05] + [0.5] * 40)  # the server got slower for good
    assert (pacer.floor or 0) > 0.25
    assert limits(pacer, [0.5] * 6)[-1] > 1


def test_a_congested_pass_halves_the_limit_but_never_below_one() -> None:
    pacer = Pacer(most=8, limit=8)
    assert [pacer.congested() for _ in range(5)] == [4, 2, 1, 1, 1]


async def test_the_gate_holds_to_the_limit_it_is_asked_at_each_entry() -> None:
    size = 1
    gate = Gate(lambda: size)
    most = 0

    async def hold() -> None:
        nonlocal most
        async with gate.slot():
            most = max(most, gate.running)
            await asyncio.sleep(0.05)

    await asyncio.gather(*(hold() for _ in range(4)))
    assert (most, gate.running) == (1, 0)
    size, most = 3, 0
    await asyncio.gather(*(hold() for _ in range(6)))
    assert (most, gate.running) == (3, 0)


async def test_a_cancelled_waiter_does_not_take_a_slot() -> None:
    gate = Gate(lambda: 1)
    async with gate.slot():
        waiter = asyncio.create_task(gate.slot().__aenter__())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert gate.running == 0
