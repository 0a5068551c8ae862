"""The observed state of an LLMService (``status``), written only by the operator.

Conditions follow the ``metav1.Condition`` shape so that ``kubectl wait --for=condition=Ready``
and GitOps health checks understand them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from llmsvc.api.base import Model

ConditionType = Literal["Ready", "Progressing", "Degraded", "Reconciling", "Stalled"]
GroupPhase = Literal["Pending", "Starting", "Ready", "Restarting", "Failed"]


class StatusModel(Model):
    """Status is read back from the server: tolerate fields a newer operator may have written."""

    model_config = ConfigDict(extra="ignore")


class Condition(StatusModel):
    """One aspect of the LLMService's state, as in metav1.Condition."""

    type: str = Field(
        max_length=316, description="Ready, Progressing, Degraded, Reconciling or Stalled."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        max_length=1024, description="CamelCase reason, e.g. GroupsStarting or Unschedulable."
    )
    message: str = Field(default="", max_length=32768, description="Human-readable detail.")
    last_transition_time: str = Field(
        description="When status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this condition was computed for."
    )


class GroupStatus(StatusModel):
    """The state of one model replica (one StatefulSet of ranks)."""

    index: int = Field(ge=0, description="Group number g (StatefulSet NAME-g).")
    ready_pods: int = Field(default=0, ge=0, description="Ranks that are Ready.")
    restarts: int = Field(default=0, ge=0, description="Whole-group restarts so far.")
    phase: GroupPhase = Field(
        default="Pending", description="Pending, Starting, Ready, Restarting or Failed."
    )
    last_restart_time: str | None = Field(
        default=None,
        description="When the operator last restarted the whole group (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    pod_uids: list[str] = Field(
        default_factory=list,
        alias="podUIDs",
        max_length=4096,
        description="UIDs of the rank pods of the group's current start, remembered by the "
        "operator: when one of them is replaced while another still runs, the whole group is "
        "restarted.",
    )
    moving_since: str | None = Field(
        default=None,
        description="When the operator relaxed this group's PodDisruptionBudget to move it off a "
        "cordoned node (its replacement is Ready, or there is no room for one while the other "
        "groups serve), so that a kubectl drain may evict its ranks (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )


class LLMServiceStatus(StatusModel):
    """Observed state of an LLMService."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the status reflects."
    )
    replicas: int | None = Field(default=None, ge=0, description="Groups that exist.")
    ready_replicas: int | None = Field(
        default=None,
        ge=0,
        description="Groups fully Ready; a Ready surge group counts in place of the group it "
        "replaces during a rollout or a move off a cordoned node (at most spec.replicas).",
    )
    updated_replicas: int | None = Field(
        default=None, ge=0, description="Groups running the current pod template."
    )
    nodes_per_replica: int | None = Field(default=None, ge=1, description="Pods per group.")
    selector: str | None = Field(
        default=None, description="Label selector of the leader pods (scale subresource, HPA)."
    )
    endpoint: str | None = Field(default=None, description="In-cluster OpenAI base URL.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing and Degraded, with kstatus' Reconciling and Stalled.",
        # One condition per type: server-side apply merges them by type, as metav1.Condition.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    groups: list[GroupStatus] = Field(default_factory=list, description="Per-group state.")
    surge_blocked: bool | None = Field(
        default=None,
        description="True while a rollout (or a move off a cordoned node) replaces groups one "
        "at a time because the extra (surge) group could not be scheduled.",
    )
    gang_scheduling: str | None = Field(
        default=None,
        max_length=1024,
        description="How groups are gang-scheduled: the PodGroup API version in use, or why "
        "gang scheduling is off (API not served, or spec.scheduling.gang: off) or not needed "
        "(each group is one pod).",
    )
