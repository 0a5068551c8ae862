"""The Services of an LLMService: per-rank DNS, leader discovery, and the client endpoint.

The leaders' Service exists for the router, its only reader (it discovers its backends from that
Service's EndpointSlices). Without a router the client Service selects the leaders itself, so a
third Service would only cost the API server one more object and EndpointSlice per LLMService.
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
    """The ranks' headless Service and the client Service; the leaders' one with the router."""
    if svc.spec.router.enabled:
        return [headless(svc), leaders(svc), client(svc)]
    return [headless(svc), client(svc)]
