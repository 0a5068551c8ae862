"""Gang scheduling: one PodGroup per group, where the cluster serves the PodGroup API.

Kubernetes 1.36 added ``scheduling.k8s.io/v1alpha2`` PodGroups; 1.37 serves them as ``v1beta1``
(and ``v1alpha3``) when the ``GenericWorkload`` feature gate is on. A PodGroup with a ``gang``
policy and ``minCount`` = nodes per replica makes the scheduler bind all ranks of a group at once
or none of them, so a group that does not fit holds no GPU. Pods join it through
``spec.schedulingGroup.podGroupName``. With ``TopologyAwareWorkloadScheduling`` the PodGroup also
carries ``schedulingConstraints.topology``: the scheduler then places the whole group inside one
domain of ``scheduling.topologyKey``.

What the cluster serves is discovered by the controller and passed in as :class:`Capabilities`;
rendering stays pure. The default (nothing discovered) renders exactly what a cluster without the
API gets: no PodGroup, and topology kept by a required pod affinity (see ``engine._affinity``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from llmsvc.api import LLMService
from llmsvc.render import names

Manifest = dict[str, Any]

GROUP = "scheduling.k8s.io"
# Versions whose PodGroup has the shape rendered here, most preferred first.
VERSIONS = ("v1beta1", "v1alpha3", "v1alpha2")


@dataclass(frozen=True)
class Capabilities:
    """What the cluster offers that rendering depends on (discovered, never assumed)."""

    podgroup_version: str = ""  # e.g. "scheduling.k8s.io/v1beta1"; "" when not served
    podgroup_topology: bool = False  # the API server keeps PodGroup schedulingConstraints

    @property
    def podgroups(self) -> bool:
        """Whether the cluster serves the PodGroup API."""
        return bool(self.podgroup_version)


NONE = Capabilities()


def gang_enabled(svc: LLMService, caps: Capabilities) -> bool:
    """Whether the groups of ``svc`` get PodGroups: the API is served, not opted out, and a
    group has more than one pod (a gang of one binds alone anyway; its PodGroup would only cost
    the API server and the scheduler work per group)."""
    return (
        caps.podgroups and svc.spec.scheduling.gang == "auto" and svc.spec.parallelism.spans_nodes
    )


def native_topology(svc: LLMService, caps: Capabilities) -> bool:
    """Whether the scheduler itself keeps each group in one ``topologyKey`` domain."""
    return (
        bool(svc.spec.scheduling.topology_key)
        and gang_enabled(svc, caps)
        and (caps.podgroup_topology)
    )


def name(svc: LLMService, g: int, caps: Capabilities) -> str:
    """The PodGroup of group ``g``: ``NAME-g``, plus a short hash of the topology key when the
    PodGroup carries one (its constraints are immutable; a new key means a new PodGroup)."""
    base = names.statefulset(svc.name, g)
    if not native_topology(svc, caps):
        return base
    digest = hashlib.sha256(svc.spec.scheduling.topology_key.encode()).hexdigest()[:6]
    return f"{base}-{digest}"


def scheduling_group(svc: LLMService, g: int, caps: Capabilities) -> Manifest:
    """The pod spec fields that put a rank into its group's PodGroup (empty without one)."""
    if not gang_enabled(svc, caps):
        return {}
    return {"schedulingGroup": {"podGroupName": name(svc, g, caps)}}


def podgroup(svc: LLMService, g: int, caps: Capabilities) -> list[Manifest]:
    """The PodGroup of group ``g`` (gang, minCount = nodes per replica), or nothing."""
    if not gang_enabled(svc, caps):
        return []
    spec: Manifest = {"schedulingPolicy": {"gang": {"minCount": svc.spec.parallelism.nodes}}}
    if native_topology(svc, caps):
        key = svc.spec.scheduling.topology_key
        spec["schedulingConstraints"] = {"topology": [{"key": key}]}
    return [
        {
            "apiVersion": caps.podgroup_version,
            "kind": "PodGroup",
            "metadata": {
                "name": name(svc, g, caps),
                "namespace": svc.namespace,
                "labels": names.common_labels(svc.name, names.ENGINE) | {names.LABEL_GROUP: str(g)},
            },
            "spec": spec,
        }
    ]
