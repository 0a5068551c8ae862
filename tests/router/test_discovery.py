"""Discovery: EndpointSlice bookkeeping (pure) and a router following a changing backend set."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from llmsvc.router.config import RouterConfig
from llmsvc.router.discovery import QueueDiscovery, SliceSet, StaticDiscovery, ready_urls
from llmsvc.router.kube import EndpointSliceDiscovery, leaders_service
from llmsvc.router.pool import Pool
from tests.router.conftest import RouterFactory
from tests.router.test_proxy import until
from tests.sim.conftest import SimFactory
from tests.sim.test_app import post


def endpoint_slice(name: str, *endpoints: tuple[str, Any, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": ready, "terminating": terminating}}
            for ip, ready, terminating in endpoints
        ],
    }


def test_only_ready_non_terminating_endpoints_count() -> None:
    s = endpoint_slice(
        "x",
        ("10.0.0.1", True, False),
        ("10.0.0.2", False, False),
        ("10.0.0.3", None, None),
        ("10.0.0.4", True, True),
        ("fd00::5", True, None),
    )
    assert ready_urls(s, 8000) == {
        "http://10.0.0.1:8000",
        "http://10.0.0.3:8000",
        "http://[fd00::5]:8000",
    }
    assert ready_urls({"metadata": {"name": "empty"}, "endpoints": None}, 8000) == set()


def test_slice_set_follows_watch_events() -> None:
    slices = SliceSet(8000)
    assert slices.reset([endpoint_slice("a", ("10.0.0.1", True, False))]) == {
        "http://10.0.0.1:8000"
    }
    assert slices.apply("ADDED", endpoint_slice("b", ("10.0.0.2", True, False))) == {
        "http://10.0.0.1:8000",
        "http://10.0.0.2:8000",
    }
    assert slices.apply("MODIFIED", endpoint_slice("a", ("10.0.0.1", False, False))) == {
        "http://10.0.0.2:8000"
    }
    assert slices.apply("DELETED", endpoint_slice("b")) == set()
    assert slices.apply("BOOKMARK", endpoint_slice("c", ("10.0.0.9", True, False))) == set()


def test_kubernetes_discovery_watches_the_leaders_service() -> None:
    discovery = EndpointSliceDiscovery("llama", "prod")
    assert leaders_service("llama") == "llama-leaders"
    assert discovery.selector == "kubernetes.io/service-name=llama-leaders"


async def test_static_discovery_strips_trailing_slashes() -> None:
    seen: list[frozenset[str]] = []
    await StaticDiscovery(["http://a:1/", "http://b:2"]).run(seen.append)
    assert seen == [frozenset({"http://a:1", "http://b:2"})]


async def test_router_follows_backend_changes(
    sim_factory: SimFactory, router_factory: RouterFactory
) -> None:
    first, second = await sim_factory(), await sim_factory()
    discovery = QueueDiscovery()
    router = await router_factory(discovery=discovery)
    discovery.updates.put_nowait(frozenset())
    await until(discovery.updates.empty)
    await asyncio.sleep(0)
    status, _ = await post(f"{router.url}/v1/completions", {"prompt": "x"})
    assert status == 503  # discovery found no backend: said at once
    discovery.updates.put_nowait(frozenset({first.url}))
    await until(discovery.updates.empty)
    await asyncio.sleep(0)
    assert (await post(f"{router.url}/v1/completions", {"prompt": "x"}))[0] == 200
    discovery.updates.put_nowait(frozenset({second.url}))
    await until(discovery.updates.empty)
    await asyncio.sleep(0)
    for _ in range(3):
        assert (await post(f"{router.url}/v1/completions", {"prompt": "y"}))[0] == 200
    assert (first.engine.stats.finished, second.engine.stats.finished) == (1, 3)


@pytest.mark.parametrize(("found", "status"), [(True, 200), (False, 503)])
async def test_requests_before_the_first_discovery_wait_for_it(
    found: bool, status: int, sim_factory: SimFactory, router_factory: RouterFactory
) -> None:
    """A router pod that has just started does not yet know its backends: it must not answer
    "no healthy backend" before its EndpointSlice list came back (a rollout would lose
    requests); it holds them, then serves them or fails them at once."""
    sim = await sim_factory()
    discovery = QueueDiscovery()
    router = await router_factory(discovery=discovery, queue_timeout=20)
    url = f"{router.url}/v1/completions"
    early = [asyncio.create_task(post(url, {"prompt": "x"})) for _ in range(3)]
    await asyncio.sleep(0.3)
    assert not any(task.done() for task in early)
    started = time.monotonic()
    discovery.updates.put_nowait(frozenset({sim.url} if found else set()))
    answers = await asyncio.gather(*early)
    assert [s for s, _ in answers] == [status] * 3
    assert time.monotonic() - started < 5  # not the 20 s queue timeout
    if not found:
        assert all(b"no healthy backend" in body for _, body in answers)


def test_every_change_of_the_backend_set_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A "no healthy backend" answer must be explainable from the router's log alone."""
    caplog.set_level(logging.INFO, logger="llmsvc.router.pool")
    pool = Pool(RouterConfig())
    pool.set_urls(["http://a:1", "http://b:1"])
    pool.set_urls(["http://b:1", "http://a:1"])  # same set: nothing to say
    pool.set_urls(["http://b:1"])
    pool.set_urls([])
    assert caplog.messages == [
        "backends: 2 (added: http://a:1, http://b:1; removed: none)",
        "backends: 1 (added: none; removed: http://a:1)",
        "backends: 0 (added: none; removed: http://b:1)",
    ]
