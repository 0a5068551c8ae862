"""Discovery: EndpointSlice bookkeeping (pure) and a router following a changing backend set."""

from __future__ import annotations

import asyncio
from typing import Any

from llmsvc.router.discovery import QueueDiscovery, SliceSet, StaticDiscovery, ready_urls
from llmsvc.router.kube import EndpointSliceDiscovery, leaders_service
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
    status, _ = await post(f"{router.url}/v1/completions", {"prompt": "x"})
    assert status == 503
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
