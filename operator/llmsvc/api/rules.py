"""Cross-field rules, written once and enforced twice.

Each :class:`Rule` carries a CEL expression (emitted into the CRD as ``x-kubernetes-validations``,
so the API server rejects a bad object at admission) and a Python predicate with the same meaning
(run by the pydantic models, so ``llmsvc render`` and the operator reject the same objects with the
same message). The invalid-case table in the tests checks that both agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """One validation rule: CEL for the API server, a predicate for Python, one message for both."""

    cel: str
    message: str
    check: Callable[[Any], bool]

    def as_crd(self) -> dict[str, str]:
        """The ``x-kubernetes-validations`` entry for this rule."""
        return {"rule": self.cel, "message": self.message}


# The longest LLMService name: its StatefulSets are NAME-<group> (group < 1000), and a StatefulSet
# name must leave room for the 11-character controller-revision-hash suffix inside a 63-char label.
MAX_NAME_LENGTH = 42
MAX_REPLICAS = 1000
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

# Flags the operator renders itself; users may not pass them in engine.args.
OWNED_FLAGS = (
    "--tensor-parallel-size",
    "-tp",
    "--pipeline-parallel-size",
    "-pp",
    "--max-model-len",
    "--served-model-name",
    "--port",
    "--host",
    "--model",
    "--nnodes",
    "-n",
    "--node-rank",
    "-r",
    "--master-addr",
    "--master-port",
    "--headless",
    "--distributed-executor-backend",
    "--gpu-memory-utilization",
)
URI_SCHEMES = ("hf", "s3", "gs", "https", "http", "pvc")
# The same shapes the weight puller accepts (llmsvc.puller.layout): Hugging Face ORG/NAME segments,
# S3/GCS bucket names, an HTTP host with a path, a claim name.
_HF_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_BUCKET = r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]"
URI_PATTERN = (
    rf"^(hf://{_HF_SEGMENT}/{_HF_SEGMENT}|s3://{_BUCKET}(/\S*)?|gs://{_BUCKET}(/\S*)?"
    r"|https?://[^/\s]+/\S+|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/\S*)?)$"
)
# A revision is also a directory name in the cache.
REVISION_PATTERN = r"^[A-Za-z0-9._][A-Za-z0-9._/-]*$"
_OWNED_FLAG_RE = "(?s)^(" + "|".join(OWNED_FLAGS) + ")(=.*)?$"


def owned_flag(arg: str) -> str | None:
    """The operator-owned flag that ``arg`` sets, if any (``--port=1`` -> ``--port``)."""
    name = arg.split("=", 1)[0]
    return name if name in OWNED_FLAGS else None


MODEL_RULES = (
    Rule(
        cel="self.uri.matches('" + URI_PATTERN.replace("\\", "\\\\") + "')",
        message="model.uri has an unknown form: use hf://ORG/NAME, s3://BUCKET/PREFIX, "
        "gs://BUCKET/PREFIX, https://HOST/PATH or pvc://CLAIM/PATH",
        check=lambda m: re.fullmatch(URI_PATTERN, m.uri) is not None,
    ),
)

# The only layout rule is the one vLLM itself enforces: every pod gets the same number of GPUs.
# Tensor parallelism may span nodes (TP=8 over two 4-GPU nodes is the normal layout inside a
# multi-node NVLink domain such as GB200 NVL72); docs/parallelism.md says what it costs elsewhere.
PARALLELISM_RULES = (
    Rule(
        cel="(self.tensor * self.pipeline) % self.gpusPerNode == 0"
        " && self.tensor * self.pipeline >= self.gpusPerNode",
        message="tensor*pipeline must be a multiple of gpusPerNode (and at least gpusPerNode): "
        "set gpusPerNode to the GPUs each pod gets, usually equal to tensor",
        check=lambda p: (
            (p.tensor * p.pipeline) % p.gpus_per_node == 0
            and p.tensor * p.pipeline >= p.gpus_per_node
        ),
    ),
)

AUTOSCALING_RULES = (
    Rule(
        cel="self.minReplicas <= self.maxReplicas",
        message="minReplicas must not exceed maxReplicas: lower minReplicas or raise maxReplicas",
        check=lambda a: a.min_replicas <= a.max_replicas,
    ),
)

CACHE_RULES = (
    Rule(
        cel="!(has(self.existingClaim) && has(self.storageClassName))",
        message="set either existingClaim (one shared claim) or storageClassName (a claim per "
        "pod), not both",
        check=lambda c: not (c.existing_claim and c.storage_class_name),
    ),
    Rule(
        cel="!has(self.storageClassName) || has(self.size)",
        message="storageClassName needs size: set cache.size (e.g. 200Gi) for the per-pod claims",
        check=lambda c: not c.storage_class_name or c.size is not None,
    ),
)

ENGINE_RULES = (
    Rule(
        cel=f"!has(self.args) || self.args.all(a, !a.matches('{_OWNED_FLAG_RE}'))",
        message="engine.args sets a flag the operator owns (parallelism, --max-model-len, "
        "--served-model-name, --port, multi-node flags): use the matching spec field instead",
        check=lambda e: not any(owned_flag(a) for a in e.args),
    ),
)

# Rules on the whole object: CEL at the schema root may read metadata.name.
ROOT_RULES = (
    Rule(
        cel=f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
        message=f"metadata.name must be at most {MAX_NAME_LENGTH} characters, so that every "
        "child name (NAME-<group>, NAME-headless, ...) is a valid DNS label: choose a shorter name",
        check=lambda name: len(name) <= MAX_NAME_LENGTH,
    ),
    Rule(
        cel=f"self.metadata.name.matches('{NAME_PATTERN}')",
        message="metadata.name must start with a letter and hold only lowercase letters, digits "
        "and '-', because it names Services: choose a name like 'llama-70b'",
        check=lambda name: re.fullmatch(NAME_PATTERN, name) is not None,
    ),
)
