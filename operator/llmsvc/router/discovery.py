"""Where backends come from: a static list, or the ready endpoints of EndpointSlices.

A discovery source is anything with ``async run(publish)`` that calls ``publish`` with the
full set of backend URLs whenever it changes. The Kubernetes watch itself lives in
``kube.py``; the pure bookkeeping of slices lives here so tests can feed it directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

Publish = Callable[[frozenset[str]], None]


class Discovery(Protocol):
    """A source of backend URLs."""

    async def run(self, publish: Publish) -> None: ...


class StaticDiscovery:
    """A fixed list of backend URLs (``--backend``)."""

    def __init__(self, urls: Iterable[str]) -> None:
        self.urls = frozenset(u.rstrip("/") for u in urls)

    async def run(self, publish: Publish) -> None:
        """Publish the list once."""
        publish(self.urls)


class QueueDiscovery:
    """Publishes whatever sets are put on its queue: for tests and embedding."""

    def __init__(self) -> None:
        self.updates: asyncio.Queue[frozenset[str]] = asyncio.Queue()

    async def run(self, publish: Publish) -> None:
        """Publish each queued set, forever."""
        while True:
            publish(await self.updates.get())


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def ready_urls(endpoint_slice: Mapping[str, Any], port: int) -> frozenset[str]:
    """``http://IP:port`` for every ready, non-terminating endpoint of a slice (API JSON form)."""
    urls: set[str] = set()
    for endpoint in endpoint_slice.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        urls.update(f"http://{_host(a)}:{port}" for a in endpoint.get("addresses") or [])
    return frozenset(urls)


class SliceSet:
    """The ready URLs of a Service's EndpointSlices, kept up to date from watch events."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._by_slice: dict[str, frozenset[str]] = {}

    def reset(self, slices: Iterable[Mapping[str, Any]]) -> frozenset[str]:
        """Replace everything with a fresh listing."""
        self._by_slice = {_name(s): ready_urls(s, self.port) for s in slices}
        return self.urls()

    def apply(self, event_type: str, endpoint_slice: Mapping[str, Any]) -> frozenset[str]:
        """Apply one watch event (ADDED, MODIFIED, DELETED); returns the new URL set."""
        if event_type == "DELETED":
            self._by_slice.pop(_name(endpoint_slice), None)
        elif event_type in ("ADDED", "MODIFIED"):
            self._by_slice[_name(endpoint_slice)] = ready_urls(endpoint_slice, self.port)
        return self.urls()

    def urls(self) -> frozenset[str]:
        """Union of the ready URLs of all slices."""
        return frozenset().union(*self._by_slice.values())


def _name(endpoint_slice: Mapping[str, Any]) -> str:
    return str((endpoint_slice.get("metadata") or {}).get("name", ""))
