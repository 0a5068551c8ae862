"""Fixtures for simulator tests (also imported by the router tests): simulators on 127.0.0.1."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from llmsvc.router.server import Running, start
from llmsvc.sim.app import ENGINE, create_app
from llmsvc.sim.engine import Engine, SimConfig

FAST_SIM = SimConfig(
    max_num_seqs=8, itl_base_ms=2.0, itl_ms_per_seq=0.0, prefill_ms_per_token=0.001
)


@dataclasses.dataclass
class Sim:
    """A running simulator and its engine (to inspect what it saw)."""

    server: Running
    engine: Engine

    @property
    def url(self) -> str:
        """Base URL of the simulator."""
        return self.server.url


SimFactory = Callable[..., Awaitable[Sim]]


@pytest.fixture
async def sim_factory() -> AsyncIterator[SimFactory]:
    """Start simulators with ``SimConfig`` overrides; all are stopped after the test."""
    started: list[Running] = []

    async def make(**overrides: Any) -> Sim:
        app: web.Application = create_app(dataclasses.replace(FAST_SIM, **overrides))
        running = await start(app)
        started.append(running)
        return Sim(running, app[ENGINE])

    yield make
    for running in started:
        await running.stop()
