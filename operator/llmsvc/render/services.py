"""The Services of an LLMService: per-rank DNS, leader discovery, and the client endpoint.

Each Service exists only where something reads it: every Service with a selector costs the API
server an object, an Endpoints and an EndpointSlice kept up to date on every pod change, and the
controller-manager a pass over all Services of the namespace on each pod event.

- The headless Service gives each rank a DNS name for the rendezvous (``MASTER_ADDR``), so it
  exists only where a group spans more than one pod; a group of one pod has no rank to reach.
- The leaders' Service exists for the router, its only reader (it discovers its backends from
  that Service's EndpointSlices). Without a router the client Service selects the leaders itself.
"""

from __future__ import annotations

from typing import Any

from llmsvc.api import LLMService
from llmsvc.render import names

Manifest = dict[str, Any]


def _port(name: str, port: int) -> Manifest:
    return {"name": name, "port": port, "targetPort": port, "protocol": "TCP"}


def _service(svc: LLMService, name: str, spec: Manifest) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": svc.namespace,
            "labels": names.common_labels(svc.name, names.SERVICE),
        },
        "spec": spec,
    }


def headless(svc: LLMService) -> Manifest:
    """``NAME-headless``: every rank resolvable, even while loading (publishNotReadyAddresses)."""
    return _service(
        svc,
        names.headless(svc.name),
        {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": names.engine_selector(svc.name),
            "ports": [
                _port("rendezvous", names.RENDEZVOUS_PORT),
                _port("http", names.HTTP_PORT),
            ],
        },
    )


def leaders(svc: LLMService) -> Manifest:
    """``NAME-leaders``: rank 0 of every group; the router discovers backends here."""
    return _service(
        svc,
        names.leaders(svc.name),
        {
            "clusterIP": "None",
            "selector": names.leader_selector(svc.name),
            "ports": [_port("http", names.HTTP_PORT)],
        },
    )


def client(svc: LLMService) -> Manifest:
    """``NAME``: the OpenAI endpoint, to the router, or to the leaders when the router is off."""
    if svc.spec.router.enabled:
        selector = names.router_selector(svc.name)
    else:
        selector = names.leader_selector(svc.name)
    return _service(
        svc,
        names.client_service(svc.name),
        {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [_port("http", names.HTTP_PORT)],
        },
    )


def services(svc: LLMService) -> list[Manifest]:
    """The client Service; the ranks' headless one where a group spans pods; the leaders' one
    with the router."""
    ranks = [headless(svc)] if svc.spec.parallelism.spans_nodes else []
    front = [leaders(svc), client(svc)] if svc.spec.router.enabled else [client(svc)]
    return ranks + front
