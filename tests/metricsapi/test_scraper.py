"""The scraper against real HTTP servers on loopback: targets from pods, dead targets missing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from llmsvc.metricsapi.scraper import Scraper, pod_target

Obj = dict[str, Any]
ROUTER_IP, LEADER_IP, DEAD_IP = "127.87.0.1", "127.87.0.2", "127.87.0.3"


def pod(name: str, ip: str, component: str, index: str = "0", ready: bool = True) -> Obj:
    labels = {"llmsvc.io/name": "demo", "app.kubernetes.io/component": component}
    if component == "engine":
        labels["apps.kubernetes.io/pod-index"] = index
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {"podIP": ip, "conditions": [condition]},
    }


class Cluster:
    """What the API server would list: one LLMService and its pods."""

    def __init__(self, pods: list[Obj]) -> None:
        self.pods = pods

    async def list(self, kind: str, namespace: str, selector: str) -> list[Obj]:
        if kind == "LLMService":
            return [{"metadata": {"name": "demo"}, "spec": {"router": {"enabled": True}}}]
        return self.pods


async def serve(ip: str, text: str) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=text)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, ip, 8000).start()
    return runner


@pytest.fixture
async def servers() -> AsyncIterator[None]:
    router = await serve(ROUTER_IP, "llmsvc_router_queue_length 4\n")
    leader = await serve(LEADER_IP, 'vllm:num_requests_waiting{model_name="m"} 2\n')
    yield
    await router.cleanup()
    await leader.cleanup()


async def test_queue_is_router_plus_ready_leaders_and_a_dead_leader_makes_it_missing(
    servers: None,
) -> None:
    cluster = Cluster(
        [
            pod("demo-router-a", ROUTER_IP, "router"),
            pod("demo-0-0", LEADER_IP, "engine"),
            pod("demo-0-1", "127.87.0.9", "engine", index="1"),  # a worker: no metrics
            pod("demo-1-0", DEAD_IP, "engine", ready=False),  # loading: not a target yet
        ]
    )
    scraper = Scraper(cluster, lambda: ["ns"], interval=0.1, timeout=1.0)
    async with aiohttp.ClientSession() as session:
        await scraper.refresh(session)
        reading = scraper.reading("ns", "demo")
        assert reading is not None
        assert (reading.value, reading.targets) == (6.0, 2)
        cluster.pods[3] = pod("demo-1-0", DEAD_IP, "engine")  # Ready, but nothing answers
        await scraper.refresh(session)
    reading = scraper.reading("ns", "demo")
    assert reading is not None
    assert reading.value is None
    assert any("demo-1-0: scrape failed" in why for why in reading.missing)
    assert scraper.reading("ns", "other") is None
    assert scraper.services("ns") == ["demo"]


def test_only_ready_routers_and_leaders_are_targets() -> None:
    assert pod_target(pod("r", ROUTER_IP, "router")) is not None
    assert pod_target(pod("w", LEADER_IP, "engine", index="1")) is None
    assert pod_target(pod("l", LEADER_IP, "engine", ready=False)) is None
    no_ip = pod("l", "", "engine")
    assert pod_target(no_ip) is None
