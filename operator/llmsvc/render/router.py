"""The router Deployment and its least-privilege RBAC (read endpointslices in its namespace)."""

from __future__ import annotations

import copy
from typing import Any

from llmsvc.api import LLMService
from llmsvc.render import names
from llmsvc.render.volumes import RESTRICTED_SECURITY

Manifest = dict[str, Any]

RBAC_API = "rbac.authorization.k8s.io/v1"
API_KEYS_DIR = "/etc/llmsvc/api-keys"
ROUTER_QUEUE_TIMEOUT = 30  # the router's own --queue-timeout default (a test ties them)
WAKE_QUEUE_TIMEOUT = 600  # scaled to zero: long enough for a model to load


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


def _api_keys_volume(svc: LLMService) -> list[Manifest]:
    """The API key Secret as a volume: a whole-directory mount (never ``subPath``), so the
    kubelet's updates reach the router, which re-reads the file (rotation without restart)."""
    ref = svc.spec.router.api_key_secret
    if ref is None:
        return []
    items = [{"key": ref.key, "path": "keys"}]
    return [{"name": "api-keys", "secret": {"secretName": ref.name, "items": items}}]


def scales_to_zero(svc: LLMService) -> bool:
    """Whether the autoscaler may take the service to zero groups (the router then holds)."""
    auto = svc.spec.autoscaling
    return auto.enabled and auto.min_replicas == 0


def queue_timeout(svc: LLMService) -> int:
    """Seconds a request may wait in the router's queue (``spec.router.queueTimeoutSeconds``)."""
    explicit = svc.spec.router.queue_timeout_seconds
    if explicit is not None:
        return explicit
    return WAKE_QUEUE_TIMEOUT if scales_to_zero(svc) else ROUTER_QUEUE_TIMEOUT


def router_container(svc: LLMService, image: str) -> Manifest:
    """``llmsvc router`` for this LLMService's leaders, with the chosen policy."""
    args = ["router", "--service", svc.name, "--namespace", svc.namespace]
    args += ["--policy", svc.spec.router.policy, "--port", str(names.HTTP_PORT)]
    mounts = [
        {"name": v["name"], "mountPath": API_KEYS_DIR, "readOnly": True}
        for v in _api_keys_volume(svc)
    ]
    if mounts:
        args += ["--api-key-file", f"{API_KEYS_DIR}/keys"]
    if scales_to_zero(svc):
        args.append("--hold-when-empty")  # the held requests wake the service
    if (timeout := queue_timeout(svc)) != ROUTER_QUEUE_TIMEOUT:
        args += ["--queue-timeout", str(timeout)]
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
        **({"volumeMounts": mounts} if mounts else {}),
    }


def deployment(svc: LLMService, image: str) -> Manifest:
    """Deployment ``NAME-router``."""
    labels = names.common_labels(svc.name, names.ROUTER)
    volumes = _api_keys_volume(svc)
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
                    **({"volumes": volumes} if volumes else {}),
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
