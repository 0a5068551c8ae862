"""The desired state of an LLMService (``spec``): the single source of the CRD's spec schema.

Every field has a description (``kubectl explain`` shows it) and, when optional, a default that
is written into the CRD so the API server fills it in.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from llmsvc.api.base import QUANTITY_PATTERN, KubeObject, Model, Quantity
from llmsvc.api.overrides import K8S_NAME, ExtraMetadata, PullSecretName
from llmsvc.api.rules import (
    CACHE_RULES,
    ENGINE_RULES,
    ENV_RULES,
    MAX_ARG_LENGTH,
    MAX_ARGS,
    MAX_ENV,
    MAX_ENV_VALUE_LENGTH,
    MAX_REPLICAS,
    MODEL_RULES,
    PARALLELISM_RULES,
    REVISION_PATTERN,
    SPEC_RULES,
    Rule,
)
from llmsvc.api.serving import AutoscalingSpec, RouterSpec

# The vLLM release whose CPU build tests/vllm runs (scripts/vllm-env.sh pins the same version).
DEFAULT_ENGINE_IMAGE = "vllm/vllm-openai:v0.32.0"


class ModelSource(Model):
    """Which model to serve and where its weights come from."""

    cel_rules: ClassVar[tuple[Rule, ...]] = MODEL_RULES

    uri: str = Field(
        min_length=1,
        max_length=1024,
        description="Where the weights are: hf://ORG/NAME (Hugging Face), s3://BUCKET/PREFIX "
        "(also S3-compatible stores such as GCS), https://HOST/PATH (or http://), or "
        "pvc://CLAIM/PATH (already on a volume). The weight puller accepts exactly these forms.",
    )
    revision: str | None = Field(
        default=None,
        max_length=256,
        pattern=REVISION_PATTERN,
        description="Commit, tag or branch to pin (hf://), or a cache key to force a fresh copy "
        "(s3://, gs://, https://); unset means the default branch (hf) or 'latest'.",
    )
    served_name: str | None = Field(
        default=None,
        max_length=256,
        description="Model name clients send in OpenAI requests; defaults to metadata.name.",
    )
    credentials_secret: str | None = Field(
        default=None,
        pattern=K8S_NAME,
        max_length=253,
        description="Secret whose keys (e.g. HF_TOKEN, AWS_ACCESS_KEY_ID) are passed as "
        "environment variables to the weight puller and the engine.",
    )


class CacheSpec(Model):
    """Where weights land before the engine loads them."""

    cel_rules: ClassVar[tuple[Rule, ...]] = CACHE_RULES

    size: Quantity | None = Field(
        default=None,
        description="Capacity for the weights, e.g. 200Gi: the size of each per-pod claim with "
        "storageClassName, else the sizeLimit of the emptyDir.",
        json_schema_extra={"pattern": QUANTITY_PATTERN},
    )

    @field_validator("size")
    @classmethod
    def _quantity(cls, size: int | str | None) -> int | str | None:
        # The CRD enforces the pattern on strings; pydantic only sees it in json_schema_extra.
        if isinstance(size, str) and not re.fullmatch(QUANTITY_PATTERN, size):
            raise ValueError(f"should match '{QUANTITY_PATTERN}': use a quantity like 200Gi")
        return size

    storage_class_name: str | None = Field(
        default=None,
        max_length=253,
        description="StorageClass for one PersistentVolumeClaim per pod (volumeClaimTemplates), "
        "so weights survive pod restarts. Needs size.",
    )
    existing_claim: str | None = Field(
        default=None,
        pattern=K8S_NAME,
        max_length=253,
        description="An existing (ReadWriteMany) claim shared by every pod; the first rank to "
        "pull downloads, the others reuse it.",
    )


class EnvVar(Model):
    """An environment variable, as in a Pod's container spec."""

    cel_rules: ClassVar[tuple[Rule, ...]] = ENV_RULES

    name: str = Field(
        min_length=1,
        max_length=256,
        description="Variable name: a C identifier, not one the operator sets (MASTER_ADDR, "
        "NODE_RANK, HF_HUB_OFFLINE, ...).",
    )
    value: str | None = Field(
        default=None, max_length=MAX_ENV_VALUE_LENGTH, description="Literal value."
    )
    value_from: KubeObject | None = Field(
        default=None, description="Source for the value (secretKeyRef, configMapKeyRef, ...)."
    )


class Resources(Model):
    """CPU and memory for each engine container; GPUs come from parallelism.gpusPerNode."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Minimum resources, e.g. {cpu: 16, memory: 256Gi}."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Maximum resources, e.g. {memory: 512Gi}."
    )


class EngineSpec(Model):
    """The vLLM engine each rank runs."""

    cel_rules: ClassVar[tuple[Rule, ...]] = ENGINE_RULES

    image: str = Field(
        default=DEFAULT_ENGINE_IMAGE,
        min_length=1,
        max_length=512,
        description="vLLM image: v0.12.0 or later (native multi-node); older than the default, "
        "startup.timeoutSeconds may not reach vLLM (docs/engine-versions.md).",
    )
    max_model_len: int = Field(
        ge=16,
        le=10_000_000,
        description="Longest context (prompt + output tokens); required, because without it the "
        "KV cache is sized for the model's maximum and may not fit.",
    )
    gpu_memory_utilization: float = Field(
        default=0.9, gt=0, le=1, description="Fraction of each GPU's memory vLLM may use."
    )
    args: list[Annotated[str, Field(max_length=MAX_ARG_LENGTH)]] = Field(
        default_factory=list,
        max_length=MAX_ARGS,
        description="Extra `vllm serve` flags, e.g. [--kv-cache-dtype, fp8], passed as "
        "separate words (no shell); at most 64 KiB in total. Flags the operator sets "
        "(parallelism, --max-model-len, --served-model-name, --port, multi-node) are rejected "
        "in any spelling.",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=MAX_ENV,
        description="Extra environment for every rank; at most 32 KiB in total.",
    )
    resources: Resources = Field(
        default_factory=Resources,
        description="CPU and memory requests and limits per rank; requests default to "
        "{cpu: 2, memory: 8Gi} (no memory limit: a model load can briefly need much more).",
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=K8S_NAME,
        description="ServiceAccount of the rank pods (e.g. for workload identity to a bucket); "
        "unset means the namespace's default account.",
    )
    pod_template: KubeObject = Field(
        default_factory=dict,
        description="Strategic overlay on the rank pod template ({metadata: {labels, "
        "annotations}, spec: {...}}), applied last: maps merge, lists of containers, volumes, "
        "env, ports and volumeMounts merge by key (name, containerPort, mountPath), other lists "
        "replace, null deletes a field. Rejected: changes to the engine and pull containers' "
        "image, command, args and ports, the operator's env variables and volumes, GPU "
        "resources, serviceAccountName, imagePullSecrets, enableServiceLinks and owned labels "
        "(use the matching spec field).",
    )
    run_as_user: int | None = Field(
        default=None,
        ge=1,
        le=2_147_483_647,
        description="Run the engine as this non-root UID (and GID), with runAsNonRoot. Unset: the "
        "image's user, root for the upstream vLLM images; set it only with an image whose "
        "caches and HOME are writable by that user.",
    )


class ParallelismSpec(Model):
    """How one model replica is split over GPUs and nodes."""

    cel_rules: ClassVar[tuple[Rule, ...]] = PARALLELISM_RULES

    tensor: int = Field(default=1, ge=1, le=256, description="Tensor-parallel size (TP).")
    pipeline: int = Field(default=1, ge=1, le=64, description="Pipeline-parallel size (PP).")
    gpus_per_node: int = Field(
        default=1,
        ge=1,
        le=64,
        description="GPUs per pod (nvidia.com/gpu); nodes per replica = "
        "tensor*pipeline/gpusPerNode. Usually equal to tensor, with pipeline = nodes.",
    )
    backend: Literal["native", "ray"] = Field(
        default="native",
        description="native: vLLM's own multi-node launch (--nnodes/--node-rank/--master-addr); "
        "ray: a Ray cluster per replica (the image must contain Ray).",
    )
    tensor_across_nodes: bool = Field(
        default=False,
        description="Deprecated and ignored: tensor parallelism may span nodes without it "
        "(see docs/parallelism.md for what that costs).",
    )

    @property
    def nodes(self) -> int:
        """Pods (nodes) per model replica."""
        return self.tensor * self.pipeline // self.gpus_per_node

    @property
    def spans_nodes(self) -> bool:
        """Whether a replica has more than one pod: only then do its ranks rendezvous over the
        network, and only then can they be scheduled apart (gangs, topology domains)."""
        return self.nodes > 1


class StartupSpec(Model):
    """How long a model may take to load."""

    timeout_seconds: int = Field(
        default=1800,
        ge=60,
        le=86_400,
        description="Longest allowed model load (download excluded); sizes the startupProbe and "
        "VLLM_ENGINE_READY_TIMEOUT_S.",
    )


class RestartSpec(Model):
    """How failed groups are restarted."""

    max_group_restarts: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="Whole-group restarts allowed within an hour before the group is left down "
        "and the LLMService reports Degraded=GroupRestartLimitExceeded.",
    )


class SchedulingSpec(Model):
    """Where the ranks may run."""

    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels every rank requires."
    )
    tolerations: list[KubeObject] = Field(
        default_factory=list, description="Tolerations for every rank (e.g. GPU taints)."
    )
    affinity: KubeObject = Field(default_factory=dict, description="Affinity for every rank.")
    priority_class_name: str = Field(
        default="", max_length=253, description="PriorityClass of the ranks."
    )
    topology_key: str = Field(
        default="",
        max_length=316,
        description="Keep all ranks of a group in one topology domain with this node label "
        "(e.g. a rack or NVLink domain label): the PodGroup's topology constraint where the "
        "scheduler offers it, plus a required pod affinity to the own group.",
    )
    gang: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: where the cluster serves the PodGroup API (scheduling.k8s.io, "
        "Kubernetes 1.36+), each group of more than one pod is one gang-scheduled PodGroup (all "
        "ranks bind or none); "
        "off: no PodGroup, for clusters gang-scheduling with Volcano, KAI or Kueue "
        "(docs/scheduling.md).",
    )


class NetworkPolicySpec(Model):
    """Ingress NetworkPolicies for the engine and router pods."""

    enabled: bool = Field(
        default=True,
        description="Render NetworkPolicies: each group's ranks accept traffic only from their "
        "own group and from the router (HTTP); the router accepts clients from clientsFrom.",
    )
    clients_from: list[KubeObject] = Field(
        default_factory=list,
        max_length=32,
        description="NetworkPolicyPeers (podSelector/namespaceSelector/ipBlock) that may reach "
        "the OpenAI port: the router, or the leaders when the router is off. Empty: every pod "
        "in the cluster.",
    )


class LLMServiceSpec(Model):
    """Desired state of an LLMService."""

    cel_rules: ClassVar[tuple[Rule, ...]] = SPEC_RULES

    replicas: int = Field(
        default=1,
        ge=0,
        le=MAX_REPLICAS,
        description="Model replicas (groups of nodesPerReplica pods), at most 999. Scaled by the "
        "HPA when autoscaling is enabled.",
    )
    model: ModelSource = Field(description="The model and the source of its weights.")
    cache: CacheSpec = Field(default_factory=CacheSpec, description="Where weights land.")
    engine: EngineSpec = Field(description="The vLLM engine.")
    parallelism: ParallelismSpec = Field(
        default_factory=ParallelismSpec, description="Tensor and pipeline parallelism."
    )
    router: RouterSpec = Field(default_factory=RouterSpec, description="The load balancer.")
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec, description="Queue-based autoscaling."
    )
    startup: StartupSpec = Field(default_factory=StartupSpec, description="Model load limits.")
    restart: RestartSpec = Field(default_factory=RestartSpec, description="Group restarts.")
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec, description="Placement of the ranks."
    )
    network_policy: NetworkPolicySpec = Field(
        default_factory=NetworkPolicySpec, description="Who may reach the pods."
    )
    image_pull_secrets: list[PullSecretName] = Field(
        default_factory=list,
        max_length=16,
        description="Secrets (names, in this namespace) to pull images with, on every pod the "
        "operator creates (engine ranks with their pull init container, routers); unset means "
        "the operator's default (the chart's imagePullSecrets).",
    )
    pod_metadata: ExtraMetadata = Field(
        default_factory=ExtraMetadata,
        description="Extra labels and annotations on every pod (ranks and routers).",
    )
    service_metadata: ExtraMetadata = Field(
        default_factory=ExtraMetadata,
        description="Extra labels and annotations on every Service (e.g. for a service mesh).",
    )
