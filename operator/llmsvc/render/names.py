"""Names, labels and selectors of every child object: the one place both render and controller use.

Names are deterministic functions of the LLMService name (and group index), so a reconcile that
runs twice, or again after a crash, addresses the same objects. With ``metadata.name`` at most
:data:`llmsvc.api.rules.MAX_NAME_LENGTH` characters every name here is a valid DNS label.

Components (``app.kubernetes.io/component``): ``engine`` for the ranks (StatefulSets and their
pods), ``router`` for the router Deployment, its pods and its RBAC, ``service`` for the Services
and the HorizontalPodAutoscaler.
"""

from __future__ import annotations

from collections.abc import Mapping

LABEL_NAME = "llmsvc.io/name"
LABEL_GROUP = "llmsvc.io/group"
LABEL_COMPONENT = "app.kubernetes.io/component"
POD_INDEX = "apps.kubernetes.io/pod-index"

ENGINE = "engine"
ROUTER = "router"
SERVICE = "service"

HTTP_PORT = 8000
RENDEZVOUS_PORT = 29501
RAY_PORT = 6379
PULL_METRICS_PORT = 8001  # the puller's progress gauges, while the init container runs


def statefulset(name: str, g: int) -> str:
    """StatefulSet of group ``g`` (its pods are NAME-g-0 ... NAME-g-<nodes-1>)."""
    return f"{name}-{g}"


def headless(name: str) -> str:
    """Headless Service giving every rank a stable DNS name."""
    return f"{name}-headless"


def leaders(name: str) -> str:
    """Headless Service selecting rank 0 of every group (the router discovers backends here)."""
    return f"{name}-leaders"


def router(name: str) -> str:
    """Router Deployment, and its ServiceAccount, Role and RoleBinding."""
    return f"{name}-router"


def client_service(name: str) -> str:
    """The client-facing Service: the LLMService's own name."""
    return name


def hpa(name: str) -> str:
    """The HorizontalPodAutoscaler: the LLMService's own name."""
    return name


def common_labels(name: str, component: str) -> dict[str, str]:
    """Labels every child (and every pod) of LLMService ``name`` carries."""
    return {
        "app.kubernetes.io/name": "llmservice",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "llmservice-operator",
        LABEL_COMPONENT: component,
        LABEL_NAME: name,
    }


def engine_selector(name: str) -> dict[str, str]:
    """Every rank of every group of ``name``."""
    return {LABEL_NAME: name, LABEL_COMPONENT: ENGINE}


def group_selector(name: str, g: int) -> dict[str, str]:
    """The pods of group ``g``: the StatefulSet's (immutable) selector."""
    return {LABEL_NAME: name, LABEL_GROUP: str(g)}


def leader_selector(name: str) -> dict[str, str]:
    """Rank 0 of every group: the scale subresource's selector and the leaders Service's."""
    return {LABEL_NAME: name, LABEL_COMPONENT: ENGINE, POD_INDEX: "0"}


def router_selector(name: str) -> dict[str, str]:
    """The router's pods."""
    return {LABEL_NAME: name, LABEL_COMPONENT: ROUTER}


def selector_string(labels: Mapping[str, str]) -> str:
    """``k=v,k=v`` (sorted by key) as in ``status.selector``."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def rank_address(name: str, namespace: str, g: int, rank: int) -> str:
    """Fully qualified DNS name of rank ``rank`` of group ``g``."""
    pod = f"{statefulset(name, g)}-{rank}"
    return f"{pod}.{headless(name)}.{namespace}.svc.cluster.local"


def master_address(name: str, namespace: str, g: int) -> str:
    """DNS name of the leader (rank 0) of group ``g``: MASTER_ADDR and LWS_LEADER_ADDRESS."""
    return rank_address(name, namespace, g, 0)


def endpoint(name: str, namespace: str) -> str:
    """In-cluster OpenAI base URL (``status.endpoint``)."""
    return f"http://{client_service(name)}.{namespace}.svc.cluster.local:{HTTP_PORT}"
