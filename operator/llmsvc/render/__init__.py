"""PURE rendering: an :class:`~llmsvc.api.LLMService` -> every child manifest, as plain dicts.

No I/O, no clock, no Kubernetes client: the same input always gives the same output, so the
operator (which adds ownerReferences and applies them) and ``llmsvc render`` share one code path.
Modules: ``names`` (names, labels, selectors), ``engine`` (StatefulSets), ``command`` (the rank
script and probes), ``volumes`` (cache and puller), ``services``, ``router``, ``autoscaling``,
``network`` (NetworkPolicies), ``podgroup`` (gang scheduling, given the discovered
:class:`Capabilities`), ``pdb``, ``overrides`` and ``overlay`` (the user's pull secrets,
metadata and pod-template overlays).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmsvc import __version__
from llmsvc.api import LLMService
from llmsvc.render import autoscaling, engine, network, pdb, podgroup, router, services
from llmsvc.render.overrides import customize
from llmsvc.render.podgroup import NONE, Capabilities
from llmsvc.render.volumes import model_path

DEFAULT_IMAGE = f"llmsvc/llmservice-operator:{__version__}"


def sort_key(manifest: dict[str, Any]) -> tuple[str, str, str]:
    """Stable output order: kind, then name (then namespace)."""
    meta = manifest["metadata"]
    return (manifest["kind"], meta["name"], meta.get("namespace", ""))


def render(
    svc: LLMService,
    *,
    image: str = DEFAULT_IMAGE,
    caps: Capabilities = NONE,
    pull_secrets: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Every child of ``svc``, sorted by (kind, name); ``image`` runs the puller and the router,
    ``caps`` is what the cluster serves (PodGroups only where it serves them).

    ``pull_secrets`` are the operator's default imagePullSecrets (when the spec sets none). The
    user's additions (:mod:`llmsvc.render.overrides`) are applied last.

    Raises :class:`~llmsvc.api.InvalidSpecError` for a spec the schema accepts but the weight
    puller cannot use (e.g. a revision with characters not allowed in a cache path).
    """
    path = model_path(svc)
    children = [
        *services.services(svc),
        *(c for g in range(svc.spec.replicas) for c in _group(svc, g, path, image, caps)),
        *router.router(svc, image),
        *autoscaling.autoscaler(svc),
        *network.network_policies(svc),
    ]
    return sorted((customize(svc, child, pull_secrets) for child in children), key=sort_key)


def _group(
    svc: LLMService, g: int, path: str, image: str, caps: Capabilities
) -> list[dict[str, Any]]:
    """Group ``g``: its PodGroup (first: it must exist before its pods), StatefulSet and budget."""
    return [
        *podgroup.podgroup(svc, g, caps),
        engine.statefulset(svc, g, path, image, caps),
        pdb.pdb(svc, g),
    ]


def group(
    svc: LLMService,
    g: int,
    *,
    image: str = DEFAULT_IMAGE,
    caps: Capabilities = NONE,
    pull_secrets: Sequence[str] = (),
) -> dict[str, Any]:
    """The StatefulSet of group ``g`` alone (the operator's surge group is ``g = replicas``)."""
    sts = engine.statefulset(svc, g, model_path(svc), image, caps)
    return customize(svc, sts, pull_secrets)


def surge_extras(svc: LLMService, *, caps: Capabilities = NONE) -> list[dict[str, Any]]:
    """What the surge group needs besides its StatefulSet: its PodGroup, if any."""
    return podgroup.podgroup(svc, svc.spec.replicas, caps)


__all__ = [
    "DEFAULT_IMAGE",
    "NONE",
    "Capabilities",
    "group",
    "render",
    "sort_key",
    "surge_extras",
]
