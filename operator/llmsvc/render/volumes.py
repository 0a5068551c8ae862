"""Where the weights live: the model-cache volume in each cache mode, and the puller init container.

=====================================  =========================================================
spec                                   volume ``model-cache``
=====================================  =========================================================
model.uri ``pvc://CLAIM/PATH``         the user's claim CLAIM (weights already there, read-only)
cache.existingClaim                    that claim, shared by every pod (ReadWriteMany)
cache.storageClassName (+ size)        volumeClaimTemplates: one ReadWriteOnce claim per pod
otherwise                              emptyDir (sizeLimit = cache.size when set)
=====================================  =========================================================

The init container ``pull`` (the operator image, ``llmsvc pull URI /models``) fills the cache;
the engine mounts it read-only and loads ``/models/<cache_dir(uri, revision)>``.
"""

from __future__ import annotations

import copy
import posixpath
from typing import Any

from llmsvc.api import InvalidSpecError, LLMService
from llmsvc.puller.layout import BadURIError, cache_dir
from llmsvc.render import names

Manifest = dict[str, Any]

MODEL_CACHE = "model-cache"
MOUNT_PATH = "/models"
PULLER_UID = 10001
PULLER_MEMORY_LIMIT = "1Gi"
SCRATCH = "puller-tmp"
SCRATCH_PATH = "/tmp"  # noqa: S108  (inside the container: an emptyDir)

RESTRICTED_SECURITY: Manifest = {
    "runAsNonRoot": True,
    "runAsUser": PULLER_UID,
    "runAsGroup": PULLER_UID,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
    "readOnlyRootFilesystem": True,
}


def model_path(svc: LLMService) -> str:
    """Directory the engine loads; a URI or revision the puller cannot use is an invalid spec."""
    model = svc.spec.model
    try:
        cache_dir(model.uri, None)
    except BadURIError as error:
        raise InvalidSpecError([f"spec.model.uri: {error}"]) from None
    try:
        relative = cache_dir(model.uri, model.revision)
    except BadURIError as error:
        raise InvalidSpecError([f"spec.model.revision: {error}"]) from None
    return posixpath.normpath(posixpath.join(MOUNT_PATH, relative))


def pvc_claim(uri: str) -> str | None:
    """CLAIM of a ``pvc://CLAIM/PATH`` URI, else None."""
    if not uri.startswith("pvc://"):
        return None
    return uri.removeprefix("pvc://").split("/", 1)[0]


def cache_volumes(svc: LLMService) -> tuple[list[Manifest], list[Manifest]]:
    """(pod volumes, StatefulSet volumeClaimTemplates) holding ``model-cache``."""
    cache = svc.spec.cache
    claim = pvc_claim(svc.spec.model.uri) or cache.existing_claim
    if claim:
        return [{"name": MODEL_CACHE, "persistentVolumeClaim": {"claimName": claim}}], []
    if cache.storage_class_name:
        template = {
            "metadata": {
                "name": MODEL_CACHE,
                "labels": names.common_labels(svc.name, names.ENGINE),
            },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": cache.storage_class_name,
                "resources": {"requests": {"storage": str(cache.size)}},
            },
        }
        return [], [template]
    empty: Manifest = {} if cache.size is None else {"sizeLimit": str(cache.size)}
    return [{"name": MODEL_CACHE, "emptyDir": empty}], []


def pod_volumes(svc: LLMService) -> list[Manifest]:
    """Every volume of a rank: shared memory, the puller's scratch space, the model cache."""
    shm = {"name": "dshm", "emptyDir": {"medium": "Memory"}}
    scratch: Manifest = {"name": SCRATCH, "emptyDir": {}}
    return [shm, scratch, *cache_volumes(svc)[0]]


def _cache_is_empty_dir(svc: LLMService) -> bool:
    volumes, _ = cache_volumes(svc)
    return bool(volumes) and "emptyDir" in volumes[0]


def init_container(svc: LLMService, image: str) -> Manifest:
    """``pull``: download the weights into the cache before the engine starts."""
    model = svc.spec.model
    args = ["pull", model.uri, MOUNT_PATH]
    if model.revision:
        args += ["--revision", model.revision]
    read_only = pvc_claim(model.uri) is not None
    env = [
        {"name": "HOME", "value": SCRATCH_PATH},
        {"name": "LLMSVC_PULL_METRICS_PORT", "value": str(names.PULL_METRICS_PORT)},
    ]
    if _cache_is_empty_dir(svc):
        # An emptyDir dies with the pod's node: fsync would only slow the download down.
        env.append({"name": "LLMSVC_PULL_FSYNC", "value": "0"})
    container: Manifest = {"name": "pull", "image": image, "args": args, "env": env}
    # The puller's last log line is its error: it becomes the termination message the operator
    # reports in the Degraded condition.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    if model.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": model.credentials_secret}}]
    return container | {
        # Progress gauges (llmsvc_pull_*) for the chart's pulls PodMonitor while it runs.
        "ports": [
            {"name": "pull-metrics", "containerPort": names.PULL_METRICS_PORT, "protocol": "TCP"}
        ],
        # Checksums are computed while downloading: one core keeps up with a fast link.
        # Memory: 8 parts of 32 MiB in flight plus the interpreter; the page cache is reclaimable.
        "resources": {
            "requests": {"cpu": "1", "memory": "512Mi"},
            "limits": {"memory": PULLER_MEMORY_LIMIT},
        },
        "volumeMounts": [
            {"name": MODEL_CACHE, "mountPath": MOUNT_PATH, "readOnly": read_only},
            {"name": SCRATCH, "mountPath": SCRATCH_PATH},
        ],
        "securityContext": copy.deepcopy(RESTRICTED_SECURITY),
    }
