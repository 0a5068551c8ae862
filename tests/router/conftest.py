"""Fixtures for router tests: real simulators and routers on 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from llmsvc.router.app import create_app
from llmsvc.router.config import RouterConfig
from llmsvc.router.discovery import Discovery, StaticDiscovery
from llmsvc.router.server import Running, start
from tests.sim.conftest import Sim, SimFactory, sim_factory

__all__ = ["sim_factory"]

FAST_ROUTER = RouterConfig(health_interval=0.2, health_timeout=1.0, connect_timeout=1.0)


RouterFactory = Callable[..., Awaitable[Running]]


@pytest.fixture
async def router_factory() -> AsyncIterator[RouterFactory]:
    """Start routers over given backend URLs (or a discovery source) with config overrides."""
    started: list[Running] = []

    async def make(
        backends: list[str] | None = None, discovery: Discovery | None = None, **overrides: Any
    ) -> Running:
        source = discovery if discovery is not None else StaticDiscovery(backends or [])
        running = await start(create_app(dataclasses.replace(FAST_ROUTER, **overrides), source))
        started.append(running)
        return running

    yield make
    for running in started:
        await running.stop()


@pytest.fixture
async def two_sims(sim_factory: SimFactory) -> list[Sim]:
    """Two fast simulators."""
    return [await sim_factory(seed=0), await sim_factory(seed=1)]
