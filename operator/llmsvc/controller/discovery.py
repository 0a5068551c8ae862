"""What the cluster serves, discovered and cached: the PodGroup API and its topology support.

Gang scheduling is used only where the API server serves PodGroups (``scheduling.k8s.io``,
Kubernetes 1.36+ with the ``GenericWorkload`` feature gate); it is never assumed. Discovery reads
the API group document, picks the most preferred version with the shape rendering knows, and
asks the server with a dry-run create whether it keeps a PodGroup's topology constraint (the
``TopologyAwareWorkloadScheduling`` gate; without it the server silently drops the field). The
result is cached for ``ttl`` seconds, so feature gates turned on or off are noticed within
minutes without a request per reconcile. A discovery that fails keeps the last answer.
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
    clock: Callable[[], float] = time.monotonic
    _caps: Capabilities = NONE
    _at: float | None = None
    _log: set[Capabilities] = field(default_factory=set)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def capabilities(self, namespace: str) -> Capabilities:
        """The cluster's capabilities; ``namespace`` hosts the dry-run probe. Concurrent
        reconciles share one discovery."""
        async with self._lock:
            if self._at is None or self.clock() - self._at >= self.ttl:
                await self._refresh(namespace)
            return self._caps

    def current(self) -> Capabilities:
        """The last discovered capabilities, without refreshing them."""
        return self._caps

    async def _refresh(self, namespace: str) -> None:
        try:
            self._caps = await self._discover(namespace)
        except ApiException as error:
            log.warning(
                "discovery of the PodGroup API failed (%s); keeping the last answer", error.reason
            )
        self._at = self.clock()
        if self._caps not in self._log:
            self._log.add(self._caps)
            log.info("gang scheduling: %s", describe(self._caps))

    async def _discover(self, namespace: str) -> Capabilities:
        version = served_version(await self.kube.get_raw(f"/apis/{GROUP}"))
        if not version:
            return NONE
        group = await self.kube.get_raw(f"/apis/{version}")
        resources = {str(r.get("name")) for r in (group or {}).get("resources") or []}
        if "podgroups" not in resources:
            return NONE
        return Capabilities(version, await self._topology(version, namespace))

    async def _topology(self, version: str, namespace: str) -> bool:
        try:
            stored = await self.kube.dry_run_create(probe(version, namespace))
        except ApiException as error:  # e.g. the namespace is being deleted: keep the last answer
            known = self._caps.podgroup_version == version and self._caps.podgroup_topology
            log.info("PodGroup topology probe refused (%s); topology-aware placement: %s",
                     error.reason, known)  # fmt: skip
            return known
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


def gang_status(gang: str, caps: Capabilities) -> str:
    """status.gangScheduling of an LLMService whose ``spec.scheduling.gang`` is ``gang``."""
    if gang == "off":
        return "off: spec.scheduling.gang is off (another gang scheduler places the groups)"
    return describe(caps)
