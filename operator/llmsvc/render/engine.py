"""The ranks: one StatefulSet per model replica (group), with the pod template every rank shares.

Group ``g`` is StatefulSet ``NAME-g`` with ``nodes`` pods; pod ordinal = node rank. The pod
template wires the ranks together (env, command), pre-pulls the weights in an init container,
and probes only rank 0 over HTTP.

Security: the puller and router run fully restricted (non-root, read-only root filesystem). The
engine container drops all capabilities and privilege escalation and uses the RuntimeDefault
seccomp profile, but runs as non-root only with ``engine.runAsUser``, because the upstream vLLM
images run as root (docs/security.md).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from llmsvc import probe
from llmsvc.api import LLMService
from llmsvc.render import names, podgroup
from llmsvc.render.command import RANK_CHECK_ENV, engine_command, rank_check_command
from llmsvc.render.podgroup import NONE, Capabilities
from llmsvc.render.volumes import (
    MODEL_CACHE,
    MOUNT_PATH,
    cache_volumes,
    init_container,
    pod_volumes,
)

Manifest = dict[str, Any]

GPU = "nvidia.com/gpu"
TERMINATION_GRACE_SECONDS = 60
STARTUP_PERIOD_SECONDS = 10
# Requests of a rank when spec.engine.resources sets none: the API server, tokenizer and scheduler
# of vLLM need a few cores and the weights pass through host memory. No default memory limit.
DEFAULT_REQUESTS = {"cpu": "2", "memory": "8Gi"}
# Liveness: a broken world is caught within about PERIOD x FAILURES + the check's own wait
# (a stalled busy engine: STALL; an idle one: the CANARY request's timeout). Measured with real
# vLLM in tests/vllm/test_rank_death.py; see docs/benchmarks.md.
LIVENESS_PERIOD_SECONDS = 5
LIVENESS_FAILURES = 2
LIVENESS_STALL_SECONDS = 15
LIVENESS_CANARY_SECONDS = 8
# Paths inside the container (not temp files on this machine).
SHM_PATH = "/dev/shm"  # noqa: S108
RANK_FIELD = f"metadata.labels['{names.POD_INDEX}']"

ENGINE_SECURITY: Manifest = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _field_env(name: str, path: str) -> Manifest:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _value_env(name: str, value: object) -> Manifest:
    return {"name": name, "value": str(value)}


def rank_env(svc: LLMService, g: int) -> list[Manifest]:
    """Env on every rank: rendezvous, LWS-compatible names, vLLM settings, then the user's env."""
    par = svc.spec.parallelism
    master = names.master_address(svc.name, svc.namespace, g)
    env = [
        _value_env("MASTER_ADDR", master),
        _value_env("MASTER_PORT", names.RENDEZVOUS_PORT),
        _field_env("NODE_RANK", RANK_FIELD),
        _value_env("NNODES", par.nodes),
        _value_env("WORLD_SIZE", par.tensor * par.pipeline),
        _value_env("LWS_LEADER_ADDRESS", master),
        _value_env("LWS_GROUP_SIZE", par.nodes),
        _field_env("LWS_WORKER_INDEX", RANK_FIELD),
        _value_env("VLLM_ENGINE_READY_TIMEOUT_S", svc.spec.startup.timeout_seconds),
        _value_env("HF_HUB_OFFLINE", 1),
        _field_env("VLLM_HOST_IP", "status.podIP"),
        _value_env(RANK_CHECK_ENV, probe.source()),
    ]
    return env + [var.wire() for var in svc.spec.engine.env]


def _exec_probe(command: list[str], period: int, failures: int, timeout: int = 5) -> Manifest:
    return {
        "exec": {"command": command},
        "timeoutSeconds": timeout,
        "periodSeconds": period,
        "failureThreshold": failures,
    }


def probes(svc: LLMService) -> Manifest:
    """startup/readiness/liveness, all run by the rank check (:mod:`llmsvc.probe.rank_check`).

    Leader: startup and readiness on ``/health``; liveness adds engine progress (or an idle
    canary). Workers: startup once joined to the leader's rendezvous, always ready, live while
    still joined. The startup window (failureThreshold x periodSeconds) covers
    startup.timeoutSeconds.
    """
    startup_failures = math.ceil(svc.spec.startup.timeout_seconds / STARTUP_PERIOD_SECONDS)
    live = rank_check_command(
        "live", stall_seconds=LIVENESS_STALL_SECONDS, canary_seconds=LIVENESS_CANARY_SECONDS
    )
    return {
        "startupProbe": _exec_probe(
            rank_check_command("startup"), STARTUP_PERIOD_SECONDS, startup_failures
        ),
        "readinessProbe": _exec_probe(rank_check_command("ready"), 5, 3),
        "livenessProbe": _exec_probe(
            live, LIVENESS_PERIOD_SECONDS, LIVENESS_FAILURES, LIVENESS_CANARY_SECONDS + 10
        ),
    }


def _resources(svc: LLMService) -> Manifest:
    """The user's requests over the defaults (a scheduler needs some), limits as given, GPUs."""
    res = svc.spec.engine.resources
    gpus = svc.spec.parallelism.gpus_per_node
    given = {key: str(value) for key, value in res.requests.items()}
    requests = DEFAULT_REQUESTS | given | {GPU: gpus}
    limits = {key: str(value) for key, value in res.limits.items()} | {GPU: gpus}
    return {"requests": requests, "limits": limits}


def engine_container(svc: LLMService, g: int, model_path: str) -> Manifest:
    """The vLLM container of every rank of group ``g``."""
    ports = [
        {"name": "http", "containerPort": names.HTTP_PORT, "protocol": "TCP"},
        {"name": "rendezvous", "containerPort": names.RENDEZVOUS_PORT, "protocol": "TCP"},
    ]
    if svc.spec.parallelism.backend == "ray":
        ports.append({"name": "ray", "containerPort": names.RAY_PORT, "protocol": "TCP"})
    container: Manifest = {
        "name": "engine",
        "image": svc.spec.engine.image,
        "command": engine_command(svc, model_path),
    }
    if svc.spec.engine.args:
        container["args"] = list(svc.spec.engine.args)
    container["env"] = rank_env(svc, g)
    secret = svc.spec.model.credentials_secret
    if secret:
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    return container | {
        "ports": ports,
        "resources": _resources(svc),
        **probes(svc),
        "volumeMounts": [
            {"name": "dshm", "mountPath": SHM_PATH},
            {"name": MODEL_CACHE, "mountPath": MOUNT_PATH, "readOnly": True},
        ],
        "securityContext": engine_security(svc),
    }


def engine_security(svc: LLMService) -> Manifest:
    """Restricted apart from the user: root unless engine.runAsUser names a non-root UID."""
    security = copy.deepcopy(ENGINE_SECURITY)
    uid = svc.spec.engine.run_as_user
    if uid is not None:
        security |= {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid}
    return security


def _affinity(svc: LLMService, g: int, caps: Capabilities) -> Manifest:
    """The user's affinity plus, with topologyKey, a required pod affinity to the own group
    (unless the group's PodGroup carries the topology constraint for the scheduler itself, or
    the group is one pod: always in one domain)."""
    sched = svc.spec.scheduling
    affinity = copy.deepcopy(sched.affinity)
    keep = sched.topology_key and svc.spec.parallelism.spans_nodes
    if keep and not podgroup.native_topology(svc, caps):
        pod_affinity = affinity.setdefault("podAffinity", {})
        terms = pod_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", [])
        terms.append(
            {
                "labelSelector": {"matchLabels": names.group_selector(svc.name, g)},
                "topologyKey": sched.topology_key,
            }
        )
    return affinity


def _scheduling(svc: LLMService, g: int, caps: Capabilities) -> Manifest:
    sched = svc.spec.scheduling
    fields: Manifest = {
        "nodeSelector": dict(sched.node_selector),
        "tolerations": copy.deepcopy(sched.tolerations),
        "affinity": _affinity(svc, g, caps),
        "priorityClassName": sched.priority_class_name,
        **podgroup.scheduling_group(svc, g, caps),
    }
    return {key: value for key, value in fields.items() if value}


def pod_labels(svc: LLMService, g: int) -> dict[str, str]:
    """Labels of the ranks of group ``g`` (the StatefulSet adds the pod-index label)."""
    return names.common_labels(svc.name, names.ENGINE) | {names.LABEL_GROUP: str(g)}


def pod_spec(
    svc: LLMService, g: int, model_path: str, image: str, caps: Capabilities = NONE
) -> Manifest:
    """The pod spec shared by every rank of group ``g``."""
    return {
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {"fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        **_scheduling(svc, g, caps),
        "initContainers": [init_container(svc, image)],
        "containers": [engine_container(svc, g, model_path)],
        "volumes": pod_volumes(svc),
    }


def statefulset(
    svc: LLMService, g: int, model_path: str, image: str, caps: Capabilities = NONE
) -> Manifest:
    """StatefulSet ``NAME-g``: the ranks of model replica ``g``."""
    _volumes, claims = cache_volumes(svc)
    spec: Manifest = {
        "replicas": svc.spec.parallelism.nodes,
        "serviceName": names.headless(svc.name),
        "podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "OnDelete"},
        "selector": {"matchLabels": names.group_selector(svc.name, g)},
        "template": {
            "metadata": {"labels": pod_labels(svc, g)},
            "spec": pod_spec(svc, g, model_path, image, caps),
        },
    }
    if claims:
        spec["volumeClaimTemplates"] = claims
        spec["persistentVolumeClaimRetentionPolicy"] = {
            "whenDeleted": "Delete",
            "whenScaled": "Retain",
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": names.statefulset(svc.name, g),
            "namespace": svc.namespace,
            "labels": pod_labels(svc, g),
        },
        "spec": spec,
    }
