"""ONE table of invalid LLMService manifests, shared by the unit tests and the API-server tests.

Each :class:`Case` is a valid base manifest plus one mutation, and a ``message`` fragment that
appears (case-sensitively) both in :func:`llmsvc.api.parse`'s problems and in the real
kube-apiserver's rejection: CEL rule messages are the same text by construction, and for plain
schema errors the fragment is one both wordings share (``parse`` words missing fields and enums as
the API server does). ``path`` is the field path the problem is reported at (unit tests only: the
API server reports root CEL rules without one).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmsvc.api.rules import ARGS_BYTES_MAX, ENV_BYTES_MAX, MAX_ARG_LENGTH, MAX_NAME_LENGTH

Manifest = dict[str, Any]

BASE: Manifest = {
    "apiVersion": "llmsvc.io/v1alpha1",
    "kind": "LLMService",
    "metadata": {"name": "invalid-case"},
    "spec": {
        "model": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct", "servedName": "qwen"},
        "engine": {"maxModelLen": 4096},
        "parallelism": {"tensor": 1, "pipeline": 1, "gpusPerNode": 1},
    },
}


def base_manifest() -> Manifest:
    """A deep copy of the valid base manifest."""
    return copy.deepcopy(BASE)


@dataclass(frozen=True)
class Case:
    """One invalid manifest: the base with ``mutate`` applied, rejected with ``message``."""

    id: str
    mutate: Callable[[Manifest], None]
    message: str
    path: str = "spec"

    def manifest(self) -> Manifest:
        """The base manifest with this case's mutation applied (a fresh copy every call)."""
        obj = base_manifest()
        self.mutate(obj)
        return obj


def setter(path: str, value: Any) -> Callable[[Manifest], None]:
    """A mutation that sets the dotted ``path`` (creating maps on the way) to ``value``."""
    *parents, leaf = path.split(".")

    def mutate(obj: Manifest) -> None:
        for key in parents:
            obj = obj.setdefault(key, {})
        obj[leaf] = copy.deepcopy(value)

    return mutate


def deleter(path: str) -> Callable[[Manifest], None]:
    """A mutation that removes the dotted ``path``."""
    *parents, leaf = path.split(".")

    def mutate(obj: Manifest) -> None:
        for key in parents:
            obj = obj[key]
        del obj[leaf]

    return mutate


def merge(path: str, values: Manifest) -> Callable[[Manifest], None]:
    """A mutation that sets several keys of the map at ``path``."""

    def mutate(obj: Manifest) -> None:
        for key, value in values.items():
            setter(f"{path}.{key}", value)(obj)

    return mutate


GPU_MULTIPLE = "tensor*pipeline must be a multiple of gpusPerNode"
URI_FORM = "model.uri has an unknown form"
OWNED = "engine.args sets a flag the operator owns"
NAME_CHARS = "metadata.name must start with a letter"
RESERVED_ENV = "engine.env sets a variable the operator sets on every rank"
ENV_NAME = "engine.env name must be a C identifier"
ARGS_BUDGET = f"engine.args take more than {ARGS_BYTES_MAX} bytes in total"
ENV_BUDGET = f"engine.env takes more than {ENV_BYTES_MAX} bytes in total"
ENV0 = "spec.engine.env[0]"


def env(name: str, value: str = "x") -> Callable[[Manifest], None]:
    """A mutation that sets engine.env to one variable."""
    return setter("spec.engine.env", [{"name": name, "value": value}])


# The smallest number of maximal arguments (all ASCII) that exceeds the byte budget.
_OVER_BUDGET_ARGS = ARGS_BYTES_MAX // (MAX_ARG_LENGTH + 1) + 1

INVALID_CASES: list[Case] = [
    # --- CEL rules (api/rules.py), one case per rule at least --------------------------------
    Case(
        "tp-not-multiple-of-gpus",
        merge("spec.parallelism", {"tensor": 3, "gpusPerNode": 8}),
        GPU_MULTIPLE,
        "spec.parallelism",
    ),
    Case(
        "fewer-gpus-than-a-node",
        merge("spec.parallelism", {"tensor": 2, "gpusPerNode": 4}),
        GPU_MULTIPLE,
        "spec.parallelism",
    ),
    Case(
        "min-above-max",
        merge("spec.autoscaling", {"enabled": True, "minReplicas": 5, "maxReplicas": 2}),
        "minReplicas must not exceed maxReplicas",
        "spec.autoscaling",
    ),
    Case(
        "min-above-default-max",
        setter("spec.autoscaling.minReplicas", 5),
        "minReplicas must not exceed maxReplicas",
        "spec.autoscaling",
    ),
    Case(
        "scale-to-zero-without-router",
        merge(
            "spec",
            {"autoscaling": {"enabled": True, "minReplicas": 0}, "router": {"enabled": False}},
        ),
        "minReplicas 0 needs the router",
        "spec",
    ),
    Case(
        "claim-and-storage-class",
        merge(
            "spec.cache", {"existingClaim": "models", "storageClassName": "fast", "size": "100Gi"}
        ),
        "set either existingClaim",
        "spec.cache",
    ),
    Case(
        "storage-class-without-size",
        setter("spec.cache.storageClassName", "fast"),
        "storageClassName needs size",
        "spec.cache",
    ),
    Case(
        "uri-unknown-scheme", setter("spec.model.uri", "ftp://models/llama"), URI_FORM, "spec.model"
    ),
    Case(
        "uri-no-scheme", setter("spec.model.uri", "meta-llama/Llama-3.1-8B"), URI_FORM, "spec.model"
    ),
    Case("uri-hf-without-org", setter("spec.model.uri", "hf://gpt2"), URI_FORM, "spec.model"),
    Case(
        "uri-hf-bad-characters", setter("spec.model.uri", "hf://org/na$me"), URI_FORM, "spec.model"
    ),
    Case(
        "uri-https-without-path",
        setter("spec.model.uri", "https://example.com"),
        URI_FORM,
        "spec.model",
    ),
    Case("uri-s3-bad-bucket", setter("spec.model.uri", "s3://B/prefix"), URI_FORM, "spec.model"),
    Case("owned-flag-port", setter("spec.engine.args", ["--port=9000"]), OWNED, "spec.engine"),
    Case(
        "owned-flag-tp-separate",
        setter("spec.engine.args", ["--tensor-parallel-size", "4"]),
        OWNED,
        "spec.engine",
    ),
    Case("owned-flag-short-tp", setter("spec.engine.args", ["-tp", "2"]), OWNED, "spec.engine"),
    Case(
        "owned-flag-max-model-len",
        setter("spec.engine.args", ["--enable-prefix-caching", "--max-model-len=1024"]),
        OWNED,
        "spec.engine",
    ),
    Case("owned-flag-headless", setter("spec.engine.args", ["--headless"]), OWNED, "spec.engine"),
    Case(
        "owned-flag-backend",
        setter("spec.engine.args", ["--distributed-executor-backend=mp"]),
        OWNED,
        "spec.engine",
    ),
    # vLLM reads '_' as '-' in flag names, takes --flag=value, abbreviations and -n2 (issue 13.12)
    Case(
        "owned-flag-underscore-tp",
        setter("spec.engine.args", ["--tensor_parallel_size=8"]),
        OWNED,
        "spec.engine",
    ),
    Case(
        "owned-flag-underscore-served-name",
        setter("spec.engine.args", ["--served_model_name", "other"]),
        OWNED,
        "spec.engine",
    ),
    Case(
        "owned-flag-underscore-max-model-len",
        setter("spec.engine.args", ["--enforce-eager", "--max_model_len=1"]),
        OWNED,
        "spec.engine",
    ),
    Case(
        "owned-flag-abbreviated",
        setter("spec.engine.args", ["--tensor-parallel", "2"]),
        OWNED,
        "spec.engine",
    ),
    Case(
        "owned-flag-mixed-spelling",
        setter("spec.engine.args", ["--gpu_memory-util=0.99"]),
        OWNED,
        "spec.engine",
    ),
    Case("owned-flag-short-attached", setter("spec.engine.args", ["-n2"]), OWNED, "spec.engine"),
    # execve limits (issue 13.14): bytes, not characters, count
    Case(
        "args-over-the-byte-budget",
        setter("spec.engine.args", ["a" * MAX_ARG_LENGTH] * _OVER_BUDGET_ARGS),
        ARGS_BUDGET,
        "spec.engine",
    ),
    Case(
        "args-multibyte-over-the-byte-budget",
        setter("spec.engine.args", ["\u20ac" * MAX_ARG_LENGTH] * 6),  # 3 bytes per character
        ARGS_BUDGET,
        "spec.engine",
    ),
    Case(
        "args-with-nul",
        setter("spec.engine.args", ["--chat-template=a\u0000b"]),
        "engine.args must not contain NUL",
        "spec.engine",
    ),
    Case(
        "env-over-the-byte-budget",
        setter("spec.engine.env", [{"name": f"V{i}", "value": "v" * 12000} for i in range(3)]),
        ENV_BUDGET,
        "spec.engine",
    ),
    # engine.env (issue 13.13)
    Case("env-reserved-master-addr", env("MASTER_ADDR", "evil"), RESERVED_ENV, ENV0),
    Case("env-reserved-node-rank", env("NODE_RANK", "0"), RESERVED_ENV, ENV0),
    Case("env-reserved-hf-offline", env("HF_HUB_OFFLINE", "0"), RESERVED_ENV, ENV0),
    Case("env-name-with-space-and-equals", env("A B=C"), ENV_NAME, ENV0),
    Case("env-name-starts-with-digit", env("1ST"), ENV_NAME, ENV0),
    Case("env-name-with-dash", env("MY-VAR"), ENV_NAME, ENV0),
    Case(
        "env-value-with-nul",
        env("MY_VAR", "a\u0000b"),
        "engine.env value must not contain NUL",
        ENV0,
    ),
    # one table of URIs for admission and the puller (issue 13.16)
    Case("uri-gs", setter("spec.model.uri", "gs://models/llama"), URI_FORM, "spec.model"),
    Case("uri-file", setter("spec.model.uri", "file:///models/llama"), URI_FORM, "spec.model"),
    Case(
        "uri-dot-dot-segment",
        setter("spec.model.uri", "s3://models/llama/../../etc"),
        URI_FORM,
        "spec.model",
    ),
    Case(
        "uri-encoded-dot-dot",
        setter("spec.model.uri", "https://host.example/m/%2e%2e/x"),
        URI_FORM,
        "spec.model",
    ),
    Case(
        "uri-trailing-newline",
        setter("spec.model.uri", "https://host.example/m/x.gguf\n"),
        URI_FORM,
        "spec.model",
    ),
    Case("uri-space", setter("spec.model.uri", "s3://models/my model"), URI_FORM, "spec.model"),
    Case(
        "name-too-long",
        setter("metadata.name", "a" * (MAX_NAME_LENGTH + 1)),
        f"at most {MAX_NAME_LENGTH} characters",
        "metadata.name",
    ),
    Case("name-with-dot", setter("metadata.name", "llama.70b"), NAME_CHARS, "metadata.name"),
    Case(
        "name-starts-with-digit", setter("metadata.name", "70b-llama"), NAME_CHARS, "metadata.name"
    ),
    # --- enums ------------------------------------------------------------------------------
    Case(
        "unknown-backend",
        setter("spec.parallelism.backend", "mpi"),
        'supported values: "native", "ray"',
        "spec.parallelism.backend",
    ),
    Case(
        "unknown-policy",
        setter("spec.router.policy", "random"),
        '"round-robin", "least-request", "prefix-aware", "session"',
        "spec.router.policy",
    ),
    # --- bounds -----------------------------------------------------------------------------
    Case(
        "negative-replicas",
        setter("spec.replicas", -1),
        "greater than or equal to 0",
        "spec.replicas",
    ),
    Case(
        "too-many-replicas",
        setter("spec.replicas", 1000),
        "less than or equal to 999",
        "spec.replicas",
    ),
    Case(
        "too-many-autoscaling-replicas",
        merge("spec.autoscaling", {"enabled": True, "maxReplicas": 1000}),
        "less than or equal to 999",
        "spec.autoscaling.maxReplicas",
    ),
    Case(
        "too-many-autoscaling-min-replicas",
        merge("spec.autoscaling", {"minReplicas": 1000, "maxReplicas": 1000}),
        "less than or equal to 999",
        "spec.autoscaling.minReplicas",
    ),
    Case(
        "engine-run-as-root",
        setter("spec.engine.runAsUser", 0),
        "greater than or equal to 1",
        "spec.engine.runAsUser",
    ),
    Case(
        "zero-tensor",
        setter("spec.parallelism.tensor", 0),
        "greater than or equal to 1",
        "spec.parallelism.tensor",
    ),
    Case(
        "zero-gpus-per-node",
        setter("spec.parallelism.gpusPerNode", 0),
        "greater than or equal to 1",
        "spec.parallelism.gpusPerNode",
    ),
    Case(
        "zero-pipeline",
        setter("spec.parallelism.pipeline", 0),
        "greater than or equal to 1",
        "spec.parallelism.pipeline",
    ),
    Case(
        "tiny-max-model-len",
        setter("spec.engine.maxModelLen", 8),
        "greater than or equal to 16",
        "spec.engine.maxModelLen",
    ),
    Case(
        "gpu-memory-above-one",
        setter("spec.engine.gpuMemoryUtilization", 1.5),
        "less than or equal to 1",
        "spec.engine.gpuMemoryUtilization",
    ),
    Case(
        "gpu-memory-zero",
        setter("spec.engine.gpuMemoryUtilization", 0),
        "greater than 0",
        "spec.engine.gpuMemoryUtilization",
    ),
    Case(
        "zero-router-replicas",
        setter("spec.router.replicas", 0),
        "greater than or equal to 1",
        "spec.router.replicas",
    ),
    Case(
        "zero-queue-timeout",
        setter("spec.router.queueTimeoutSeconds", 0),
        "greater than or equal to 1",
        "spec.router.queueTimeoutSeconds",
    ),
    Case(
        "hour-long-queue-timeout",
        setter("spec.router.queueTimeoutSeconds", 3601),
        "less than or equal to 3600",
        "spec.router.queueTimeoutSeconds",
    ),
    Case(
        "zero-target-queue",
        setter("spec.autoscaling.targetQueueLength", 0),
        "greater than or equal to 1",
        "spec.autoscaling.targetQueueLength",
    ),
    Case(
        "unknown-metrics-source",
        setter("spec.autoscaling.metrics", "datadog"),
        "builtin",
        "spec.autoscaling.metrics",
    ),
    Case(
        "scale-down-window-too-long",
        setter("spec.autoscaling.scaleDownStabilizationSeconds", 7200),
        "less than or equal to 3600",
        "spec.autoscaling.scaleDownStabilizationSeconds",
    ),
    Case(
        "prometheus-address-not-a-url",
        setter("spec.autoscaling.prometheusAddress", "prometheus:9090"),
        "https?",
        "spec.autoscaling.prometheusAddress",
    ),
    Case(
        "startup-too-short",
        setter("spec.startup.timeoutSeconds", 10),
        "greater than or equal to 60",
        "spec.startup.timeoutSeconds",
    ),
    Case(
        "negative-group-restarts",
        setter("spec.restart.maxGroupRestarts", -1),
        "greater than or equal to 0",
        "spec.restart.maxGroupRestarts",
    ),
    # --- patterns and types -----------------------------------------------------------------
    Case(
        "cache-size-not-a-quantity",
        setter("spec.cache.size", "lots"),
        "should match",
        "spec.cache.size",
    ),
    Case(
        "secret-name-uppercase",
        setter("spec.model.credentialsSecret", "HF_Token"),
        "should match",
        "spec.model.credentialsSecret",
    ),
    Case(
        "revision-with-space",
        setter("spec.model.revision", "my branch"),
        "should match",
        "spec.model.revision",
    ),
    Case(
        "tensor-not-an-integer",
        setter("spec.parallelism.tensor", "eight"),
        "integer",
        "spec.parallelism.tensor",
    ),
    # --- required fields --------------------------------------------------------------------
    Case(
        "missing-max-model-len",
        deleter("spec.engine.maxModelLen"),
        "Required value",
        "spec.engine.maxModelLen",
    ),
    Case("missing-uri", deleter("spec.model.uri"), "Required value", "spec.model.uri"),
    Case("missing-model", deleter("spec.model"), "Required value", "spec.model"),
    # --- escape hatch -------------------------------------------------------------------------
    Case(
        "pod-label-owned-key",
        setter("spec.podMetadata.labels", {"llmsvc.io/group": "7"}),
        "labels may not use keys the operator owns",
        "spec.podMetadata",
    ),
    Case(
        "service-label-recommended-key",
        setter("spec.serviceMetadata.labels", {"app.kubernetes.io/name": "x"}),
        "labels may not use keys the operator owns",
        "spec.serviceMetadata",
    ),
    Case(
        "pull-secret-uppercase",
        setter("spec.imagePullSecrets", ["RegCred"]),
        "should match",
        "spec.imagePullSecrets[0]",
    ),
    Case(
        "engine-service-account-uppercase",
        setter("spec.engine.serviceAccountName", "Vllm"),
        "should match",
        "spec.engine.serviceAccountName",
    ),
]
