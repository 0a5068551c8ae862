"""Scrape the routers' and leaders' ``/metrics`` at a short interval and keep the latest samples.

Targets are found from the API server on every round: the ready router pods and ready leader
pods (pod index 0) of every LLMService in the namespaces the operator knows. A pod that is not
Ready has no queue of its own (it takes no requests); a Ready pod that cannot be scraped makes
its service's reading missing (see :mod:`llmsvc.metricsapi.queue`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import aiohttp

from llmsvc.metricsapi.queue import Reading, Sample, Target, parse_sample, service_queue
from llmsvc.render import names

Obj = dict[str, Any]
Ref = tuple[str, str]  # (namespace, name)
log = logging.getLogger("llmsvc.metricsapi")


class Lister(Protocol):
    """The one API call the scraper needs (the controller's ``Kube.list`` is one)."""

    async def list(self, kind: str, namespace: str, selector: str) -> list[Obj]:
        """Objects of ``kind`` in ``namespace`` matching the label ``selector``."""
        ...


def _ready(pod: Obj) -> bool:
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ready and bool(status.get("podIP")) and not pod["metadata"].get("deletionTimestamp")


def pod_target(pod: Obj) -> Target | None:
    """The scrape target of a ready router or leader pod; None for any other pod."""
    labels = pod["metadata"].get("labels") or {}
    component = labels.get(names.LABEL_COMPONENT)
    leader = component == names.ENGINE and labels.get(names.POD_INDEX) == "0"
    if not _ready(pod) or not (leader or component == names.ROUTER):
        return None
    url = f"http://{pod['status']['podIP']}:{names.HTTP_PORT}/metrics"
    return Target("router" if component == names.ROUTER else "engine", pod["metadata"]["name"], url)


def group_targets(services: list[Obj], pods: list[Obj]) -> dict[str, list[Target]]:
    """Targets of every service of one namespace, by service name."""
    result: dict[str, list[Target]] = {s["metadata"]["name"]: [] for s in services}
    for pod in pods:
        owner = (pod["metadata"].get("labels") or {}).get(names.LABEL_NAME, "")
        target = pod_target(pod)
        if target is not None and owner in result:
            result[owner].append(target)
    return result


def _router_enabled(service: Obj) -> bool:
    return bool(((service.get("spec") or {}).get("router") or {}).get("enabled", True))


class Scraper:
    """The latest sample of every target, refreshed every ``interval`` seconds."""

    def __init__(
        self,
        kube: Lister,
        namespaces: Callable[[], Iterable[str]],
        interval: float = 1.0,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.namespaces = namespaces
        self.interval = interval
        self.timeout = timeout
        self.max_age = 3 * interval + timeout
        self.clock = clock
        self.targets: dict[Ref, list[Target]] = {}
        self.router_expected: dict[Ref, bool] = {}
        self.samples: dict[str, Sample] = {}
        self.objects: dict[Ref, Obj] = {}

    def reading(self, namespace: str, name: str) -> Reading | None:
        """The queue of ``namespace/name``; None when the service is unknown."""
        ref = (namespace, name)
        if ref not in self.targets:
            return None
        expected = self.router_expected.get(ref, True)
        return service_queue(self.targets[ref], self.samples, self.clock(), self.max_age, expected)

    def services(self, namespace: str) -> list[str]:
        """Names of the known services of ``namespace``."""
        return sorted(name for ns, name in self.targets if ns == namespace)

    async def run(self) -> None:
        """Refresh forever (cancel to stop); one failed round is logged, not fatal."""
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    await self.refresh(session)
                except Exception:  # the API server may be briefly unreachable
                    log.exception("metrics scrape round failed")
                await asyncio.sleep(self.interval)

    async def refresh(self, session: aiohttp.ClientSession) -> None:
        """Find the targets, then scrape all of them at once."""
        targets: dict[Ref, list[Target]] = {}
        expected: dict[Ref, bool] = {}
        objects: dict[Ref, Obj] = {}
        for namespace in sorted(set(self.namespaces())):
            services = await self.kube.list("LLMService", namespace, "")
            pods = await self.kube.list("Pod", namespace, names.LABEL_NAME)
            for name, found in group_targets(services, pods).items():
                targets[(namespace, name)] = found
            for service in services:
                ref = (namespace, service["metadata"]["name"])
                expected[ref], objects[ref] = _router_enabled(service), service
        everything = [t for found in targets.values() for t in found]
        results = await asyncio.gather(*(self._scrape(session, t) for t in everything))
        self.samples = {t.url: s for t, s in zip(everything, results, strict=True)}
        self.targets, self.router_expected, self.objects = targets, expected, objects

    async def _scrape(self, session: aiohttp.ClientSession, target: Target) -> Sample:
        previous = self.samples.get(target.url)
        try:
            async with session.get(target.url) as response:
                if response.status != 200:
                    return self._failed(previous, f"/metrics answered {response.status}")
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as error:
            return self._failed(previous, f"scrape failed ({type(error).__name__})")
        return parse_sample(target, text, self.clock())

    def _failed(self, previous: Sample | None, error: str) -> Sample:
        """A failed scrape: the error is reported at once (a stale value is never reused)."""
        at = previous.at if previous is not None else self.clock()
        return Sample(at, None, 0.0, error)
