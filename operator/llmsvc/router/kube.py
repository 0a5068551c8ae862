"""Kubernetes discovery: watch the EndpointSlices of Service ``NAME-leaders`` in a namespace.

Only this module talks to the API server (kubernetes-asyncio; in-cluster config, else
KUBECONFIG). It lists, then watches from the list's resourceVersion, and relists after any
error or expired watch.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from llmsvc.router.discovery import Publish, SliceSet

log = logging.getLogger("llmsvc.router.kube")


def leaders_service(service: str) -> str:
    """The Service whose endpoints are the leader (rank 0) pods of LLMService ``service``."""
    return f"{service}-leaders"


class EndpointSliceDiscovery:
    """Publishes ``http://IP:port`` of ready endpoints of ``<service>-leaders``."""

    def __init__(self, service: str, namespace: str, port: int = 8000) -> None:
        self.namespace = namespace
        self.selector = f"kubernetes.io/service-name={leaders_service(service)}"
        self.slices = SliceSet(port)

    async def run(self, publish: Publish) -> None:
        """List and watch forever, publishing every change."""
        from kubernetes_asyncio import client

        await _load_config()
        async with client.ApiClient() as api:
            discovery_api = client.DiscoveryV1Api(api)
            while True:
                try:
                    await self._list_and_watch(api, discovery_api, publish)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # any API or network error: relist after a pause
                    log.warning("endpointslice watch failed (%s); relisting", exc)
                    await asyncio.sleep(1.0)

    async def _list_and_watch(self, api: Any, discovery_api: Any, publish: Publish) -> None:
        from kubernetes_asyncio import watch

        listing = await discovery_api.list_namespaced_endpoint_slice(
            self.namespace, label_selector=self.selector
        )
        publish(self.slices.reset(api.sanitize_for_serialization(s) for s in listing.items))
        async with watch.Watch() as stream:
            async for event in stream.stream(
                discovery_api.list_namespaced_endpoint_slice,
                self.namespace,
                label_selector=self.selector,
                resource_version=listing.metadata.resource_version,
                timeout_seconds=300,
            ):
                publish(self.slices.apply(event["type"], event["raw_object"]))


async def _load_config() -> None:
    from kubernetes_asyncio import config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    else:
        await config.load_kube_config()
