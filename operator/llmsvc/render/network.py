"""Ingress NetworkPolicies: who may reach the ranks and the router (on unless networkPolicy off).

=======================  ============================  ========================================
policy                   selects                       admits
=======================  ============================  ========================================
``NAME-<g>``             the ranks of group ``g``      every port from the ranks of group ``g``
                         (groups of several pods)      (rendezvous, NCCL/Gloo, Ray); the HTTP
                                                       port from the router pods and the operator
``NAME-router``          the router pods               the HTTP port from ``clientsFrom`` and
                                                       the operator
``NAME-leaders``         rank 0 of every group: only   the HTTP port from the router (without
                         without a router; or, when    one: from ``clientsFrom``, as the client
                         each group is one pod, every  Service points at them) and the operator
                         rank
=======================  ============================  ========================================

``clientsFrom`` empty means every pod of every namespace (``namespaceSelector: {}``): anywhere in
the cluster, nothing outside it. The operator (any namespace, by its pod labels) scrapes
``/metrics`` for the autoscaling queue metric. Egress is not restricted (the puller downloads
weights). NetworkPolicies add up, so more sources (e.g. Prometheus scraping the ranks'
``/metrics``) are granted by a policy of one's own next to these.

One policy per group of several pods, because a rule cannot say "the same group as the receiving
pod". Those policies exist for the groups ``0..replicas``: group ``replicas`` is the surge group a
rollout may create, which must not start without its policy (while it does not exist the policy
selects nothing). Where each group is one pod, no rank talks to another and every rank is its
group's leader: ``NAME-leaders`` alone covers every group, the surge group included, whatever the
replica count. A ``clientsFrom`` peer the API server would refuse makes the LLMService Invalid
(:mod:`llmsvc.render.peers`) instead of a rejected policy that leaves the pods open.
"""

from __future__ import annotations

import copy
from typing import Any

from llmsvc.api import InvalidSpecError, LLMService
from llmsvc.render import names
from llmsvc.render.peers import peer_problems

Manifest = dict[str, Any]

API_VERSION = "networking.k8s.io/v1"
ANYWHERE_IN_CLUSTER: list[Manifest] = [{"namespaceSelector": {}}]
CLIENTS_FIELD = "spec.networkPolicy.clientsFrom"
# The operator's pods (labels the Helm chart sets whatever the release name): the operator scrapes
# the leaders' and routers' /metrics on the HTTP port for the queue-length autoscaling metric.
OPERATOR_POD_LABELS = {
    "app.kubernetes.io/part-of": "llmservice-operator",
    "app.kubernetes.io/component": "operator",
}
OPERATOR: Manifest = {"namespaceSelector": {}, "podSelector": {"matchLabels": OPERATOR_POD_LABELS}}


def _http_port() -> list[Manifest]:
    return [{"protocol": "TCP", "port": names.HTTP_PORT}]


def _policy(
    svc: LLMService, name: str, selector: dict[str, str], rules: list[Manifest]
) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": svc.namespace,
            "labels": names.common_labels(svc.name, names.SERVICE),
        },
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": rules,
        },
    }


def clients(svc: LLMService) -> list[Manifest]:
    """The peers allowed to reach the OpenAI port: ``clientsFrom``, else the whole cluster.

    Raises :class:`~llmsvc.api.InvalidSpecError` for a peer the API server would refuse."""
    peers = svc.spec.network_policy.clients_from
    if problems := peer_problems(peers, CLIENTS_FIELD):
        raise InvalidSpecError(problems)
    return copy.deepcopy(peers or ANYWHERE_IN_CLUSTER)


def group_policy(svc: LLMService, g: int) -> Manifest:
    """``NAME-g``: the ranks of group ``g`` talk to each other; the router and the operator
    (metrics) reach their HTTP port."""
    own_group = {"podSelector": {"matchLabels": names.group_selector(svc.name, g)}}
    http_from = [copy.deepcopy(OPERATOR)]
    if svc.spec.router.enabled:
        http_from.insert(0, {"podSelector": {"matchLabels": names.router_selector(svc.name)}})
    rules: list[Manifest] = [{"from": [own_group]}, {"from": http_from, "ports": _http_port()}]
    return _policy(svc, names.statefulset(svc.name, g), names.group_selector(svc.name, g), rules)


def router_policy(svc: LLMService) -> Manifest:
    """``NAME-router``: clients reach the router's HTTP port."""
    rules = [{"from": [*clients(svc), copy.deepcopy(OPERATOR)], "ports": _http_port()}]
    return _policy(svc, names.router(svc.name), names.router_selector(svc.name), rules)


def leaders_policy(svc: LLMService) -> Manifest:
    """``NAME-leaders``: the router, or without one the clients, reach the leaders' HTTP port.

    Where each group is one pod it selects every rank by the operator's own labels: so also the
    ranks that a group of several pods leaves behind while it shrinks to one."""
    if svc.spec.router.enabled:
        sources = [{"podSelector": {"matchLabels": names.router_selector(svc.name)}}]
    else:
        sources = clients(svc)
    rules = [{"from": [*sources, copy.deepcopy(OPERATOR)], "ports": _http_port()}]
    single = not svc.spec.parallelism.spans_nodes
    selector = names.engine_selector if single else names.leader_selector
    return _policy(svc, names.leaders(svc.name), selector(svc.name), rules)


def network_policies(svc: LLMService) -> list[Manifest]:
    """Every NetworkPolicy of ``svc``, or none when ``networkPolicy.enabled`` is false."""
    if not svc.spec.network_policy.enabled:
        return []
    router = svc.spec.router.enabled
    front = [router_policy(svc)] if router else []
    if not svc.spec.parallelism.spans_nodes:  # one pod per group: every rank is a leader
        return [*front, leaders_policy(svc)]
    groups = [group_policy(svc, g) for g in range(svc.spec.replicas + 1)]
    return [*groups, *front] if router else [*groups, leaders_policy(svc)]
