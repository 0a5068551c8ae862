"""Builders of live-looking Pods, StatefulSets and LLMServices for the planner's table tests."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from llmsvc.api import LLMService, parse
from llmsvc.plan.pods import PodFacts, format_time, pod_facts

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
UID = "uid-llama"
# The UID of group g's StatefulSet, as tests/plan/test_planner.py's as_live() assigns it.
OWNERS = {f"uid-llama-{g}": g for g in range(8)}

BASE: dict[str, Any] = {
    "apiVersion": "llmsvc.io/v1alpha1",
    "kind": "LLMService",
    "metadata": {"name": "llama", "namespace": "ml", "uid": UID, "generation": 1},
    "spec": {
        "replicas": 2,
        "model": {"uri": "hf://org/llama", "servedName": "llama"},
        "engine": {"maxModelLen": 8192},
        "parallelism": {"tensor": 8, "pipeline": 2, "gpusPerNode": 8},
    },
}


def service(**spec: Any) -> LLMService:
    """The base two-node, two-replica LLMService with ``spec`` fields overridden."""
    manifest = copy.deepcopy(BASE)
    manifest["spec"].update(spec)
    return parse(manifest)


def with_status(svc: LLMService, status: dict[str, Any], generation: int = 1) -> LLMService:
    """``svc`` as read back from the server with a status and a generation."""
    raw = svc.model_dump(by_alias=True, exclude_none=True, mode="json")
    raw["status"] = status
    raw["metadata"]["generation"] = generation
    return parse(raw)


def pod(
    group: int,
    rank: int,
    *,
    created: timedelta = timedelta(0),
    ready: bool = True,
    phase: str = "Running",
    restarts: int = 0,
    revision: str = "rev1",
    terminating: bool = False,
    unschedulable: str = "",
    uid: str = "",
    pull_log: str = "",
) -> dict[str, Any]:
    """A pod of group ``group``, rank ``rank``, as the API server returns it (owned by the
    group's StatefulSet; ``uid`` tells a replacement from the original ``pod-<group>-<rank>``)."""
    meta: dict[str, Any] = {
        "name": f"llama-{group}-{rank}",
        "namespace": "ml",
        "uid": uid or f"pod-{group}-{rank}",
        "creationTimestamp": format_time(T0 + created),
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": f"llama-{group}",
                "uid": f"uid-llama-{group}",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
        "labels": {
            "llmsvc.io/name": "llama",
            "llmsvc.io/group": str(group),
            "apps.kubernetes.io/pod-index": str(rank),
            "controller-revision-hash": revision,
        },
    }
    if terminating:
        meta["deletionTimestamp"] = format_time(T0 + timedelta(minutes=5))
    scheduled = {"type": "PodScheduled", "status": "True"}
    if unschedulable:
        scheduled = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": unschedulable,
        }
        phase = "Pending"
    status = {
        "phase": phase,
        "conditions": [scheduled, {"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"name": "engine", "restartCount": restarts}],
    }
    if pull_log:  # the puller failed with this log (FallbackToLogsOnError) and waits to retry
        failed = {"exitCode": 4, "reason": "Error", "message": pull_log}
        status["initContainerStatuses"] = [
            {"name": "pull", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": failed}, "restartCount": 2}
        ]  # fmt: skip
        status |= {"phase": "Pending", "containerStatuses": []}
    return {"kind": "Pod", "metadata": meta, "status": status}


def healthy_group(group: int, ranks: int = 2, **kwargs: Any) -> list[dict[str, Any]]:
    """Every rank of a group, Ready and started together."""
    return [pod(group, r, **kwargs) for r in range(ranks)]


def facts(pods: list[dict[str, Any]]) -> list[PodFacts]:
    """The facts of the pods that are ranks of llama's groups."""
    return [f for f in (pod_facts(p, OWNERS) for p in pods) if f is not None]
