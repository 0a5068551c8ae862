"""The router Deployment and its least-privilege RBAC (read endpointslices in its namespace)."""

from __future__ import annotations

import copy
from typing import Any

from llmsvc.api import LLMService
from llmsvc.render import names
from llmsvc.render.volumes import RESTRICTED_SECURITY

Manifest = dict[str, Any]

RBAC_API = "rbac.authorization.k8s.io/v1"


def _meta(svc: LLMService) -> Manifest:
    return {
        "name": names.router(svc.name),
        "namespace": svc.namespace,
        "labels": names.common_labels(svc.name, names.ROUTER),
    }


def _http_probe(period: int) -> Manifest:
    return {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def router_container(svc: LLMService, image: str) -> Manifest:
    """``llmsvc router`` for this LLMService's leaders, with the chosen policy."""
    args = ["router", "--service", svc.name, "--namespace", svc.namespace]
    args += ["--policy", svc.spec.router.policy, "--port", str(names.HTTP_PORT)]
    return {
        "name": "router",
        "image": svc.spec.router.image or image,
        "args": args,
        "ports": [{"name": "http", "containerPort": names.HTTP_PORT, "protocol": "TCP"}],
        "readinessProbe": _http_probe(5),
        "livenessProbe": _http_probe(10),
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": copy.deepcopy(RESTRICTED_SECURITY),
    }


def deployment(svc: LLMService, image: str) -> Manifest:
    """Deployment ``NAME-router``."""
    labels = names.common_labels(svc.name, names.ROUTER)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(svc),
        "spec": {
            "replicas": svc.spec.router.replicas,
            "selector": {"matchLabels": names.router_selector(svc.name)},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": names.router(svc.name),
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [router_container(svc, image)],
                },
            },
        },
    }


def rbac(svc: LLMService) -> list[Manifest]:
    """ServiceAccount, Role (endpointslices get/list/watch only) and RoleBinding ``NAME-router``."""
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(svc)}
    role = {
        "apiVersion": RBAC_API,
        "kind": "Role",
        "metadata": _meta(svc),
        "rules": [
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["get", "list", "watch"],
            }
        ],
    }
    binding = {
        "apiVersion": RBAC_API,
        "kind": "RoleBinding",
        "metadata": _meta(svc),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": names.router(svc.name),
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": names.router(svc.name), "namespace": svc.namespace}
        ],
    }
    return [account, role, binding]


def router(svc: LLMService, image: str) -> list[Manifest]:
    """Every router object, or none when the router is disabled."""
    if not svc.spec.router.enabled:
        return []
    return [deployment(svc, image), *rbac(svc)]
