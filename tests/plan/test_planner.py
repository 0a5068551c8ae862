"""The whole plan: the first pass creates, steady state writes nothing, changes write little."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from llmsvc.api import LLMService
from llmsvc.plan import Plan, RestartPolicy, key, plan
from llmsvc.plan.planner import owner_reference
from llmsvc.plan.pods import pod_facts
from llmsvc.render import group, render
from tests.plan.fixtures import OWNERS, T0, UID, healthy_group, pod, service, with_status

POLICY = RestartPolicy()
Live = dict[tuple[str, str], dict[str, Any]]


def as_live(objs: list[dict[str, Any]]) -> Live:
    """What the server would hold after applying ``objs`` (with uids and ready status)."""
    live: Live = {}
    for obj in copy.deepcopy(objs):
        obj["metadata"]["uid"] = f"uid-{obj['metadata']['name']}"
        if obj["kind"] == "StatefulSet":
            obj["status"] = {"updateRevision": "rev1", "readyReplicas": obj["spec"]["replicas"]}
        if obj["kind"] == "Deployment":
            obj["status"] = {"availableReplicas": obj["spec"]["replicas"]}
        live[key(obj)] = obj
    return live


def run(svc: LLMService, live: Live, pods: list[dict[str, Any]], at: float = 0) -> Plan:
    return plan(
        svc,
        render(svc),
        live=live,
        pods=pods,
        now=T0 + timedelta(seconds=at),
        policy=POLICY,
        surge_group=group(svc, svc.spec.replicas),
    )


def converge(svc: LLMService, pods: list[dict[str, Any]]) -> tuple[LLMService, Live]:
    """Apply the first plan and write its status back, as the controller would."""
    first = run(svc, {}, [])
    live = as_live(first.apply)
    settled = run(svc, live, pods)
    assert settled.status is not None
    return with_status(svc, settled.status), live


def test_first_reconcile_creates_every_child_with_owner() -> None:
    svc = service()
    p = run(svc, {}, [])
    kinds = sorted(key(o) for o in p.apply)
    assert ("StatefulSet", "llama-0") in kinds
    assert ("StatefulSet", "llama-1") in kinds
    assert ("Deployment", "llama-router") in kinds
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == UID for o in p.apply)
    assert {e.reason for e in p.events} == {"Created"}
    assert p.delete == []
    assert p.restart_groups == []


def test_steady_state_makes_no_writes() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    again = run(svc, live, healthy_group(0) + healthy_group(1), at=300)
    assert again.writes == 0
    assert again.events == []


def test_ready_status_when_all_groups_and_router_are_ready() -> None:
    svc, _ = converge(service(), healthy_group(0) + healthy_group(1))
    status = svc.status
    assert (status.replicas, status.ready_replicas, status.updated_replicas) == (2, 2, 2)
    assert status.nodes_per_replica == 2
    assert status.endpoint == "http://llama.ml.svc.cluster.local:8000"
    assert "apps.kubernetes.io/pod-index=0" in (status.selector or "")
    ready = {c.type: c for c in status.conditions}["Ready"]
    assert (ready.status, ready.reason) == ("True", "Ready")


def test_scaled_to_zero_by_the_autoscaler_is_ready_not_broken() -> None:
    auto = {"enabled": True, "minReplicas": 0}
    svc, _ = converge(service(replicas=0, autoscaling=auto), [])
    ready = {c.type: c for c in svc.status.conditions}["Ready"]
    assert (ready.status, ready.reason) == ("True", "ScaledToZero")
    assert "router holds new requests" in ready.message
    assert svc.status.replicas == 0


def test_transition_time_moves_only_on_change() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    before = {c.type: c.last_transition_time for c in svc.status.conditions}
    broken = [*healthy_group(0), pod(1, 0, ready=False), pod(1, 1)]
    p = run(svc, live, broken, at=60)
    assert p.status is not None
    after = {c["type"]: c["lastTransitionTime"] for c in p.status["conditions"]}
    assert after["Ready"] != before["Ready"]
    assert after["Degraded"] == before["Degraded"]


def test_drifted_replicas_are_reapplied() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    live[("StatefulSet", "llama-1")]["spec"]["replicas"] = 7
    p = run(svc, live, healthy_group(0) + healthy_group(1))
    assert [key(o) for o in p.apply] == [("StatefulSet", "llama-1")]


def test_deleted_child_is_recreated() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    del live[("Service", "llama-headless")]
    assert [key(o) for o in run(svc, live, []).apply] == [("Service", "llama-headless")]


def test_scale_down_deletes_highest_groups_first() -> None:
    svc, live = converge(service(replicas=4), [])
    smaller = with_status(service(replicas=1), svc.status.wire())
    deleted = [key(o) for o in run(smaller, live, []).delete]
    assert deleted[:3] == [
        ("StatefulSet", "llama-3"),
        ("StatefulSet", "llama-2"),
        ("StatefulSet", "llama-1"),
    ]
    # then the other per-group children of the groups gone: the NetworkPolicies (llama-1 stays:
    # the surge group's slot) and each group's budget, after the groups
    assert set(deleted[3:]) == {("NetworkPolicy", f"llama-{g}") for g in (2, 3, 4)} | {
        ("PodDisruptionBudget", f"llama-{g}") for g in (1, 2, 3)
    }


def test_router_disabled_prunes_router_objects_and_autoscaling_off_prunes_hpa() -> None:
    svc, live = converge(service(autoscaling={"enabled": True}), [])
    plain = with_status(service(router={"enabled": False}), svc.status.wire())
    deleted = {key(o) for o in run(plain, live, []).delete}
    assert deleted == {
        ("Deployment", "llama-router"),
        ("ServiceAccount", "llama-router"),
        ("Role", "llama-router"),
        ("RoleBinding", "llama-router"),
        ("NetworkPolicy", "llama-router"),
        ("Service", "llama-leaders"),  # the router's discovery source; the client Service
        ("HorizontalPodAutoscaler", "llama"),  # selects the leaders now
    }


def test_objects_not_owned_are_neither_changed_nor_deleted() -> None:
    svc, live = converge(service(), [])
    stranger = live[("Service", "llama")]
    stranger["metadata"]["ownerReferences"] = [{"uid": "someone-else"}]
    stranger["spec"]["ports"] = []
    live[("ConfigMap", "extra")] = {"kind": "ConfigMap", "metadata": {"name": "extra"}}
    p = run(svc, live, [])
    assert ("Service", "llama") not in {key(o) for o in p.apply}
    assert p.delete == []
    assert p.status is not None
    degraded = {c["type"]: c for c in p.status["conditions"]}["Degraded"]
    assert degraded["reason"] == "NameConflict"
    assert "Service/llama" in degraded["message"]


def test_broken_group_is_restarted_alone_and_counted() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    pods = [*healthy_group(0), pod(1, 0), pod(1, 1, uid="new", created=timedelta(seconds=90))]
    p = run(svc, live, pods, at=120)
    assert p.restart_groups == [1]
    assert sorted(v["metadata"]["uid"] for v in p.evict) == ["new", "pod-1-0"]
    assert [e.reason for e in p.events] == ["GroupRestarted"]
    assert p.status is not None
    assert p.status["groups"][1]["restarts"] == 1
    assert p.status["groups"][0]["restarts"] == 0


def test_exhausted_group_is_scaled_to_zero_and_degraded() -> None:
    svc = service(restart={"maxGroupRestarts": 0})
    svc, live = converge(svc, healthy_group(0) + healthy_group(1))
    pods = [*healthy_group(0), pod(1, 0, restarts=2), pod(1, 1)]
    p = run(svc, live, pods, at=30)
    sts = {key(o): o for o in p.apply}[("StatefulSet", "llama-1")]
    assert sts["spec"]["replicas"] == 0
    assert p.status is not None
    degraded = {c["type"]: c for c in p.status["conditions"]}["Degraded"]
    assert degraded["reason"] == "GroupRestartLimitExceeded"
    assert "GroupRestartLimitExceeded" in [e.reason for e in p.events]


def test_unschedulable_group_is_degraded_only_after_the_grace_period() -> None:
    svc, live = converge(service(), [])
    pods = [
        pod(0, 0, unschedulable="0/5 nodes are available: 5 Insufficient nvidia.com/gpu."),
        pod(0, 1, unschedulable="0/5 nodes are available: 5 Insufficient nvidia.com/gpu."),
    ]
    # A node autoscaler may still be adding GPU nodes: progressing, not degraded.
    early = run(svc, live, pods, at=9 * 60)
    assert early.status is not None
    conditions = {c["type"]: c for c in early.status["conditions"]}
    assert conditions["Degraded"]["status"] == "False"
    assert conditions["Progressing"]["reason"] == "WaitingForNodes"
    assert "Insufficient nvidia.com/gpu" in conditions["Progressing"]["message"]
    assert conditions["Reconciling"]["status"] == "True"
    late = run(svc, live, pods, at=10 * 60)
    assert late.status is not None
    conditions = {c["type"]: c for c in late.status["conditions"]}
    assert conditions["Degraded"]["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in conditions["Degraded"]["message"]
    assert conditions["Stalled"]["status"] == "False"  # still InProgress for kstatus
    assert conditions["Reconciling"]["status"] == "True"
    assert late.restart_groups == []


PULL_LOG = (
    "2026-11-30 01:00:00,000 llmsvc-pull INFO pulling http://10.244.0.1:8080/m into /models/x\n"
    "2026-11-30 01:00:01,000 llmsvc-pull ERROR http://10.244.0.1:8080/m: 404 Not Found (exit 4)\n"
)


def test_failed_puller_reports_its_error_and_restarts_nothing() -> None:
    svc, live = converge(service(), [])
    pods = [pod(0, 0, ready=False, pull_log=PULL_LOG), pod(0, 1, ready=False)]
    p = run(svc, live, pods)
    assert p.status is not None
    degraded = {c["type"]: c for c in p.status["conditions"]}["Degraded"]
    assert degraded["reason"] == "PullFailed"
    assert degraded["message"] == (
        "group 0: the weights puller failed: http://10.244.0.1:8080/m: 404 Not Found (exit 4)"
    )
    assert p.restart_groups == []


def test_puller_that_succeeded_on_retry_is_not_reported() -> None:
    raw = pod(0, 0, pull_log=PULL_LOG)
    raw["status"]["initContainerStatuses"][0]["state"] = {"terminated": {"exitCode": 0}}
    facts = pod_facts(raw, OWNERS)
    assert facts is not None
    assert facts.pull_error == ""


def surge_sts(svc: LLMService) -> dict[str, Any]:
    """Group 2's StatefulSet as the operator would have created it."""
    sts = group(svc, 2)
    sts["metadata"]["ownerReferences"] = [owner_reference(svc)]
    return sts


def outdated(live: Live, *groups: int) -> None:
    for g in groups:
        live[("StatefulSet", f"llama-{g}")]["status"]["updateRevision"] = "rev2"


def test_rollout_starts_a_surge_group_before_replacing_any() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    outdated(live, 0, 1)
    p = run(svc, live, healthy_group(0) + healthy_group(1))
    assert p.restart_groups == []
    assert [key(o) for o in p.apply] == [("StatefulSet", "llama-2")]
    assert p.status is not None
    progressing = {c["type"]: c for c in p.status["conditions"]}["Progressing"]
    assert "surge group 2" in progressing["message"]
    ready = {c["type"]: c for c in p.status["conditions"]}["Ready"]
    assert ready["status"] == "True"  # still serving at full size


def test_rollout_with_surge_replaces_one_ready_group_at_a_time_then_drops_it() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    live.update(as_live([surge_sts(svc)]))
    outdated(live, 0, 1, 2)
    surge = healthy_group(2, revision="rev2")
    old = healthy_group(0) + healthy_group(1)
    assert run(svc, live, old + surge).restart_groups == [0]
    midway = [pod(0, 0, revision="rev2", ready=False), pod(0, 1, revision="rev2", ready=False)]
    assert run(svc, live, midway + healthy_group(1) + surge).restart_groups == []
    one_done = healthy_group(0, revision="rev2") + healthy_group(1) + surge
    assert run(svc, live, one_done).restart_groups == [1]
    last = [pod(1, r, revision="rev2", ready=False, uid=f"new-{r}") for r in range(2)]
    recovering = run(svc, live, healthy_group(0, revision="rev2") + last + surge)
    assert recovering.delete == []  # the surge serves until the last replaced group is Ready
    done = healthy_group(0, revision="rev2") + healthy_group(1, revision="rev2") + surge
    finished = run(svc, live, done)
    assert [key(o) for o in finished.delete] == [("StatefulSet", "llama-2")]


def test_unschedulable_surge_falls_back_to_one_group_at_a_time() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    live.update(as_live([surge_sts(svc)]))
    outdated(live, 0, 1, 2)
    stuck = [
        pod(2, r, revision="rev2", unschedulable="0/4 nodes: Insufficient nvidia.com/gpu")
        for r in range(2)
    ]
    p = run(svc, live, healthy_group(0) + healthy_group(1) + stuck)
    assert p.restart_groups == [0]
    assert [key(o) for o in p.delete] == [("StatefulSet", "llama-2")]
    assert "SurgeUnschedulable" in [e.reason for e in p.events]
    assert p.status is not None
    assert p.status["surgeBlocked"] is True
    blocked = with_status(svc, p.status)
    again = run(blocked, live, healthy_group(0) + healthy_group(1))
    assert ("StatefulSet", "llama-2") not in [key(o) for o in again.apply]


def test_group_left_at_the_surge_index_by_a_scale_down_is_brought_to_the_new_template() -> None:
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    live.update(as_live([surge_sts(svc)]))
    outdated(live, 0, 1, 2)
    old_surge = healthy_group(2, revision="rev1")
    p = run(svc, live, healthy_group(0) + healthy_group(1) + old_surge)
    assert p.restart_groups == [2]


def test_quantities_stored_in_the_servers_spelling_need_no_apply() -> None:
    resources = {"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"cpu": 2}}
    engine = {"maxModelLen": 8192, "resources": resources}
    svc, live = converge(service(engine=engine), healthy_group(0) + healthy_group(1))
    for g in (0, 1):  # what the API server stores
        spec = live[("StatefulSet", f"llama-{g}")]["spec"]["template"]["spec"]
        engine_container = next(c for c in spec["containers"] if c["name"] == "engine")
        engine_container["resources"]["requests"].update(cpu="500m", memory="1Gi")
        engine_container["resources"]["limits"]["cpu"] = "2"
    again = run(svc, live, healthy_group(0) + healthy_group(1), at=300)
    assert again.apply == []
    assert again.writes == 0
