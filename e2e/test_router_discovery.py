"""The router discovers backends from the EndpointSlices of ``NAME-leaders`` (real API server)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from e2e.helpers import apply, kubectl
from llmsvc.router.app import create_app
from llmsvc.router.config import RouterConfig
from llmsvc.router.kube import EndpointSliceDiscovery
from llmsvc.router.server import start


def leaders_slice(name: str, endpoints: list[tuple[str, bool]]) -> dict[str, Any]:
    """An EndpointSlice of Service ``demo-leaders`` (managed by this test, not the controller)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/service-name": "demo-leaders",
                "endpointslice.kubernetes.io/managed-by": "llmsvc-e2e",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": ready}} for ip, ready in endpoints
        ],
    }


async def router_backends(url: str) -> set[str]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    prefix = 'llmsvc_router_backend_in_flight{backend="'
    return {
        line[len(prefix) :].split('"')[0] for line in text.splitlines() if line.startswith(prefix)
    }


async def wait_backends(url: str, expected: set[str]) -> None:
    seen: set[str] = set()
    for _ in range(120):
        seen = await router_backends(url)
        if seen == expected:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"router backends {seen}, expected {expected}")


async def test_router_follows_leader_endpointslices(namespace: str) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "demo-leaders"},
        "spec": {"ports": [{"name": "http", "port": 8000}]},
    }
    apply([service, leaders_slice("demo-a", [("10.9.0.1", True), ("10.9.0.2", False)])], namespace)
    discovery = EndpointSliceDiscovery("demo", namespace)
    router = await start(create_app(RouterConfig(health_interval=60), discovery))
    try:
        await wait_backends(router.url, {"http://10.9.0.1:8000"})
        apply(leaders_slice("demo-a", [("10.9.0.1", True), ("10.9.0.2", True)]), namespace)
        apply(leaders_slice("demo-b", [("10.9.0.3", True)]), namespace)
        await wait_backends(
            router.url, {"http://10.9.0.1:8000", "http://10.9.0.2:8000", "http://10.9.0.3:8000"}
        )
        kubectl("delete", "endpointslice", "demo-a", "-n", namespace)
        await wait_backends(router.url, {"http://10.9.0.3:8000"})
    finally:
        await router.stop()
