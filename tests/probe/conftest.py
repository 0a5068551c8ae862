"""Fixtures for the probe tests: real simulators on 127.0.0.1."""

from __future__ import annotations

from tests.sim.conftest import sim_factory

__all__ = ["sim_factory"]
