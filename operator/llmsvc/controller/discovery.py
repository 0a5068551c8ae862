"""What the cluster serves, discovered and cached: the PodGroup API and its topology support.

Gang scheduling is used only where the API server serves PodGroups (``scheduling.k8s.io``,
Kubernetes 1.36+ with the ``GenericWorkload`` feature gate); it is never assumed. Discovery reads
the API group document, picks the most preferred version with the shape rendering knows, and
asks the server with a dry-run create whether it keeps a PodGroup's topology constraint (the
``TopologyAwareWorkloadScheduling`` gate; without it the server silently drops the field). The
result is cached for ``ttl`` seconds, so feature gates turned on or off are noticed within
minutes without a request per reconcile. A discovery that fails, or a probe the server refuses
(it runs in the namespace of the LLMService being reconciled, which may be being deleted), keeps
the last answer but is asked again after ``retry`` seconds, not ``ttl``, and a refused probe is
asked again at once from any other namespace: an operator whose very first probe landed in a
terminating namespace would otherwise render every group without topology-aware placement for
minutes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from llmsvc.controller.kube import Kube
from llmsvc.render import Capabilities
from llmsvc.render.podgroup import GROUP, NONE, VERSIONS

log = logging.getLogger("llmsvc.operator")
PROBE_KEY = "kubernetes.io/hostname"


def served_version(group_doc: dict[str, Any] | None) -> str:
    """The preferred ``scheduling.k8s.io/<version>`` among :data:`VERSIONS` the group serves."""
    versions = (group_doc or {}).get("versions") or []
    served = {str(v.get("version")) for v in versions if isinstance(v, dict)}
    return next((f"{GROUP}/{v}" for v in VERSIONS if v in served), "")


def probe(api_version: str, namespace: str) -> dict[str, object]:
    """A PodGroup to dry-run create: does the server keep ``schedulingConstraints``?"""
    return {
        "apiVersion": api_version,
        "kind": "PodGroup",
        "metadata": {"generateName": "llmsvc-probe-", "namespace": namespace},
        "spec": {
            "schedulingPolicy": {"gang": {"minCount": 1}},
            "schedulingConstraints": {"topology": [{"key": PROBE_KEY}]},
        },
    }


@dataclass
class Discovery:
    """Cached capabilities of the cluster, refreshed every ``ttl`` seconds."""

    kube: Kube
    ttl: float = 300.0
    retry: float = 5.0  # after a failed discovery or a refused probe
    clock: Callable[[], float] = time.monotonic
    _caps: Capabilities = NONE
    _at: float | None = None
    _refused: str | None = None  # the namespace of the last probe the server refused
    _log: set[Capabilities] = field(default_factory=set)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def capabilities(self, namespace: str) -> Capabilities:
        """The cluster's capabilities; ``namespace`` hosts the dry-run probe. Concurrent
        reconciles share one discovery."""
        async with self._lock:
            stale = self._at is None or self.clock() - self._at >= self.ttl
            if stale or self._refused not in (None, namespace):
                await self._refresh(namespace)
            return self._caps

    def current(self) -> Capabilities:
        """The last discovered capabilities, without refreshing them."""
        return self._caps

    async def _refresh(self, namespace: str) -> None:
        certain, self._refused = False, None
        try:
            self._caps, certain = await self._discover(namespace)
        except ApiException as error:
            log.warning(
                "discovery of the PodGroup API failed (%s); keeping the last answer", error.reason
            )
        self._at = self.clock() - (0.0 if certain else self.ttl - self.retry)
        if self._caps not in self._log:
            self._log.add(self._caps)
            log.info("gang scheduling: %s", describe(self._caps))

    async def _discover(self, namespace: str) -> tuple[Capabilities, bool]:
        """The capabilities, and whether they are certain (the probe was answered)."""
        version = served_version(await self.kube.get_raw(f"/apis/{GROUP}"))
        if not version:
            return NONE, True
        group = await self.kube.get_raw(f"/apis/{version}")
        resources = {str(r.get("name")) for r in (group or {}).get("resources") or []}
        if "podgroups" not in resources:
            return NONE, True
        topology = await self._topology(version, namespace)
        if topology is None:  # refused: keep the last answer for this version
            self._refused = namespace
            known = self._caps.podgroup_version == version and self._caps.podgroup_topology
            return Capabilities(version, known), False
        return Capabilities(version, topology), True

    async def _topology(self, version: str, namespace: str) -> bool | None:
        """Whether the server keeps a PodGroup's topology constraint; None when it refused
        the probe (e.g. its namespace is being deleted)."""
        try:
            stored = await self.kube.dry_run_create(probe(version, namespace))
        except ApiException as error:
            log.info("PodGroup topology probe in %s refused (%s); asking again in %g s",
                     namespace, error.reason, self.retry)  # fmt: skip
            return None
        return bool((stored.get("spec") or {}).get("schedulingConstraints"))


def describe(caps: Capabilities) -> str:
    """One line for logs and status: how groups are gang-scheduled here."""
    if not caps.podgroups:
        return (
            "off: the cluster does not serve the PodGroup API (Kubernetes 1.36+ with the "
            "GenericWorkload feature gate)"
        )
    topology = "with" if caps.podgroup_topology else "without"
    return f"PodGroup {caps.podgroup_version}, {topology} topology-aware placement"


def gang_status(gang: str, caps: Capabilities, nodes: int) -> str:
    """status.gangScheduling of an LLMService whose ``spec.scheduling.gang`` is ``gang`` and
    whose groups have ``nodes`` pods each."""
    if gang == "off":
        return "off: spec.scheduling.gang is off (another gang scheduler places the groups)"
    if nodes == 1 and caps.podgroups:
        return "not needed: each group is one pod (no PodGroup)"
    return describe(caps)
