"""Cross-field rules, written once and enforced twice.

Each :class:`Rule` carries a CEL expression (emitted into the CRD as ``x-kubernetes-validations``,
so the API server rejects a bad object at admission) and a Python predicate with the same meaning
(run by the pydantic models, so ``llmsvc render`` and the operator reject the same objects with the
same message). The invalid-case table in the tests checks that both agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from llmsvc.puller import layout


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
# Group indices are 0..MAX_GROUPS-1; during a rollout the surge group takes index ``replicas``, so
# spec.replicas and autoscaling.maxReplicas both stop one below.
MAX_GROUPS = 1000
MAX_REPLICAS = MAX_GROUPS - 1
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

# Flags the operator renders itself; users may not pass them in engine.args. vLLM's parser reads
# '_' as '-' in a flag name, takes --flag=value, and argparse accepts unambiguous abbreviations of
# flags and an attached value after a one-letter short flag (-n2), so every such spelling is
# refused too (abbreviations from ABBREV_MIN letters on: shorter ones are ambiguous anyway).
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
ABBREV_MIN = 3
URI_PATTERN = layout.URI_PATTERN
# A revision is also a directory name in the cache.
REVISION_PATTERN = r"^[A-Za-z0-9._][A-Za-z0-9._/-]*$"

# Environment the operator renders on every rank (llmsvc.render.engine.rank_env); engine.env may
# not set these (Kubernetes lets the later duplicate win, which would silently rewire the ranks).
RESERVED_ENV = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "NODE_RANK",
    "NNODES",
    "WORLD_SIZE",
    "LWS_LEADER_ADDRESS",
    "LWS_GROUP_SIZE",
    "LWS_WORKER_INDEX",
    "VLLM_ENGINE_READY_TIMEOUT_S",
    "HF_HUB_OFFLINE",
    "VLLM_HOST_IP",
    "LLMSVC_RANK_CHECK",
)
# A C identifier: what /bin/sh (the engine's entry point) and vLLM can read back.
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

# execve limits (Linux): each argv/envp string at most MAX_ARG_STRLEN = 128 KiB, and all strings
# plus one pointer each at most max(RLIMIT_STACK/4, 128 KiB) (capped at 6 MiB). The user's args go
# to the engine as separate argv words (never into the shell script), so the floor of 128 KiB is
# the budget that holds whatever the node's stack limit: args 64 KiB + env 32 KiB (bytes as the
# kernel counts them, with their NUL and '=') leave 32 KiB for the rank script (< 8 KiB, tested),
# the operator's env (< 1 KiB, plus the rank check's source in LLMSVC_RANK_CHECK, ~10 KiB) and
# the image's own environment.
ARGS_BYTES_MAX = 64 * 1024
ENV_BYTES_MAX = 32 * 1024
MAX_ARGS = 64
MAX_ARG_LENGTH = 4096
MAX_ENV = 128
MAX_ENV_VALUE_LENGTH = 16384


# The owned-flag rule, in CEL and Python alike: NAME is the argument up to its first '=', with '_'
# read as '-'. It sets an owned flag when NAME is a prefix of one (an abbreviation) of at least
# ABBREV_MIN letters after '--' (two characters for the short -tp, -pp), or when it starts with a
# one-letter short flag (-n2). Prefix tests instead of one big regular expression: the API server
# budgets a regex by its length times the argument's, and that does not fit.
_PREFIX_FLAGS = tuple(f for f in OWNED_FLAGS if len(f) > 2)
_LETTER_FLAGS = tuple(f for f in OWNED_FLAGS if len(f) == 2)
_LONG_MIN = 2 + ABBREV_MIN


def flag_name(arg: str) -> str:
    """What argparse looks up for ``arg`` in vLLM: the part before '=', '_' read as '-'."""
    return arg.split("=", 1)[0].replace("_", "-")


def owned_flag(arg: str) -> str | None:
    """The operator-owned flag that ``arg`` sets, if any (``--port=1``, ``--tensor_parallel``)."""
    n = flag_name(arg)
    least = _LONG_MIN if n.startswith("--") else 2
    found = [f for f in _PREFIX_FLAGS if f.startswith(n) and len(n) >= least]
    found += [f for f in _LETTER_FLAGS if n.startswith(f)]
    return found[0] if found else None


def _cel_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(f"'{i}'" for i in items) + "]"


OWNED_FLAGS_CEL = (
    "!has(self.args) || self.args.map(a, a.split('=')[0].replace('_', '-')).all(n, !("
    f"{_cel_list(_PREFIX_FLAGS)}.exists(f, f.startsWith(n) && "
    f"size(n) >= (n.startsWith('--') ? {_LONG_MIN} : 2))"
    f" || {_cel_list(_LETTER_FLAGS)}.exists(f, n.startsWith(f))))"
)


def args_bytes(args: Iterable[str]) -> int:
    """Bytes ``args`` take in execve's argument area (UTF-8 plus the NUL of each)."""
    return sum(len(a.encode()) + 1 for a in args)


def env_bytes(env: Iterable[Any]) -> int:
    """Bytes ``NAME=value`` strings of ``env`` take in execve's environment area."""
    return sum(len(e.name.encode()) + len((e.value or "").encode()) + 2 for e in env)


def _cel(pattern: str) -> str:
    """``pattern`` inside a single-quoted CEL string literal."""
    return pattern.replace("\\", "\\\\")


MODEL_RULES = (
    Rule(
        cel=f"self.uri.matches('{_cel(URI_PATTERN)}')",
        message=f"model.uri has an unknown form: use {layout.URI_FORMS_TEXT} (for Google Cloud "
        "Storage s3:// with AWS_ENDPOINT_URL=https://storage.googleapis.com)",
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

SPEC_RULES = (
    Rule(
        cel="self.autoscaling.minReplicas > 0 || self.router.enabled",
        message="autoscaling.minReplicas 0 needs the router (it holds requests while no replica "
        "runs and wakes the service): enable the router or set minReplicas to 1",
        check=lambda s: s.autoscaling.min_replicas > 0 or s.router.enabled,
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
        cel=OWNED_FLAGS_CEL,
        message="engine.args sets a flag the operator owns (parallelism, --max-model-len, "
        "--served-model-name, --port, multi-node flags; in any spelling: '_' for '-', "
        "--flag=value, abbreviated): use the matching spec field instead",
        check=lambda e: not any(owned_flag(a) for a in e.args),
    ),
    Rule(
        cel=f"!has(self.args) || self.args.map(a, size(bytes(a)) + 1).sum() <= {ARGS_BYTES_MAX}",
        message=f"engine.args take more than {ARGS_BYTES_MAX} bytes in total (UTF-8, one more "
        "per argument), more than the engine's command line can safely hold: shorten them",
        check=lambda e: args_bytes(e.args) <= ARGS_BYTES_MAX,
    ),
    Rule(
        cel="!has(self.env) || self.env.map(e, size(bytes(e.name)) + "
        f"(has(e.value) ? size(bytes(e.value)) : 0) + 2).sum() <= {ENV_BYTES_MAX}",
        message=f"engine.env takes more than {ENV_BYTES_MAX} bytes in total (NAME=value, UTF-8), "
        "more than the engine's environment can safely hold: move large values into files",
        check=lambda e: env_bytes(e.env) <= ENV_BYTES_MAX,
    ),
    Rule(
        cel="!has(self.args) || self.args.all(a, !a.contains('\\u0000'))",
        message="engine.args must not contain NUL characters (a command line cannot hold them): "
        "remove them",
        check=lambda e: not any("\0" in a for a in e.args),
    ),
)

ENV_RULES = (
    Rule(
        cel=f"self.name.matches('{_cel(ENV_NAME_PATTERN)}')",
        message="engine.env name must be a C identifier (letters, digits and '_', not starting "
        "with a digit), e.g. MY_SETTING: rename the variable",
        check=lambda v: re.fullmatch(ENV_NAME_PATTERN, v.name) is not None,
    ),
    Rule(
        cel="!(self.name in [" + ", ".join(f"'{n}'" for n in RESERVED_ENV) + "])",
        message="engine.env sets a variable the operator sets on every rank ("
        + ", ".join(RESERVED_ENV)
        + "): remove it and use the matching spec field",
        check=lambda v: v.name not in RESERVED_ENV,
    ),
    Rule(
        cel="!has(self.value) || !self.value.contains('\\u0000')",
        message="engine.env value must not contain NUL characters (an environment cannot hold "
        "them): remove them",
        check=lambda v: "\0" not in (v.value or ""),
    ),
)

# Label keys that select or identify the operator's children; users may not set them.
OWNED_LABEL_PREFIXES = ("llmsvc.io/", "app.kubernetes.io/")
OWNED_LABELS = (
    "apps.kubernetes.io/pod-index",
    "statefulset.kubernetes.io/pod-name",
    "controller-revision-hash",
    "pod-template-hash",
)


def owned_label(key: str) -> bool:
    """True for a label key the operator sets itself (selectors, recommended labels)."""
    return key.startswith(OWNED_LABEL_PREFIXES) or key in OWNED_LABELS


_OWNED_CEL = " || ".join(
    [f"k.startsWith('{p}')" for p in OWNED_LABEL_PREFIXES] + [f"k == '{k}'" for k in OWNED_LABELS]
)

METADATA_RULES = (
    Rule(
        cel=f"!has(self.labels) || self.labels.all(k, !({_OWNED_CEL}))",
        message="labels may not use keys the operator owns (llmsvc.io/*, app.kubernetes.io/*, "
        "pod-index and hash labels): choose another key, e.g. example.com/team",
        check=lambda m: not any(owned_label(key) for key in m.labels),
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
