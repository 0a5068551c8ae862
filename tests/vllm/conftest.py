"""Fixtures for the tests marked ``vllm``: the vLLM venv, the tiny model, shared real engines.

Every test in this folder is marked ``vllm`` (``pytest -m 'not vllm'`` skips them; `make unit`
does). Starting an engine costs 70-120 s on two cores, so engines are shared: two single-node
servers per session, one two-node group per module that needs one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmsvc.router.server import free_port
from tests.vllm import engine
from tests.vllm.engine import Rank


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.vllm)


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """The vLLM venv's python (built by scripts/vllm-env.sh when missing)."""
    return engine.vllm_python()


@pytest.fixture(scope="session")
def tiny_model(vllm_python: Path) -> Path:
    """Directory of the tiny random Llama and its tokenizer."""
    return engine.tiny_model(vllm_python)


@pytest.fixture(scope="session")
def engine_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vllm-logs")


@pytest.fixture(scope="session")
def single_servers(vllm_python: Path, tiny_model: Path, engine_logs: Path) -> Iterator[list[Rank]]:
    """Two single-node engines, each run from the rendered rank script + env."""
    container = engine.engine_container(engine.tiny_service("single"))
    ranks = [
        engine.start_rank(container, 0, tiny_model, vllm_python, engine_logs, free_port())
        for _ in range(2)
    ]
    try:
        for rank in ranks:
            engine.wait_healthy(rank, [])
        yield ranks
    finally:
        for rank in ranks:
            rank.kill()
