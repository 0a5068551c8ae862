"""LLMService objects with statuses from the real planner, for the GitOps health checks.

``e2e/gitops/testdata/statuses.json`` holds one object per situation a GitOps tool meets, each with
the health Flux (kstatus) and Argo CD must report. The Go tests in ``e2e/gitops`` read it and run
Flux's kstatus library and the Argo CD Lua check (on gopher-lua) against every case. This test
keeps the file in step with the planner: it fails when they drift; ``--update-golden`` rewrites it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmsvc.api import LLMService
from llmsvc.plan.status import UNSCHEDULABLE_GRACE, invalid_status
from tests.plan.fixtures import T0, healthy_group, pod, service
from tests.plan.test_planner import converge, outdated, run

Obj = dict[str, Any]
FIXTURE = Path(__file__).resolve().parents[2] / "e2e" / "gitops" / "testdata" / "statuses.json"
NO_ROOM = "0/5 nodes are available: 5 Insufficient nvidia.com/gpu."


def _object(svc: LLMService, status: Obj | None, generation: int = 1) -> Obj:
    raw = svc.model_dump(by_alias=True, exclude_none=True, mode="json")
    raw["metadata"]["generation"] = generation
    raw.pop("status", None)
    if status is not None:
        raw["status"] = status
    return raw


def _planned(svc: LLMService, live: Any, pods: list[Obj], at: float = 0) -> Obj:
    """The status after this observation (unchanged from ``svc``'s when the plan writes none)."""
    p = run(svc, live, pods, at=at)
    return p.status if p.status is not None else svc.status.wire()


def fresh() -> Obj:
    # What the API server serves before the operator wrote anything: the CRD's status default.
    return _object(service(), {"observedGeneration": 0})


def starting() -> Obj:
    svc, live = converge(service(), [])
    return _object(svc, _planned(svc, live, [pod(0, 0, ready=False), pod(0, 1, ready=False)]))


def ready() -> Obj:
    svc, live = converge(service(), [])
    return _object(svc, _planned(svc, live, healthy_group(0) + healthy_group(1)))


def new_generation() -> Obj:
    status = ready()["status"]
    return _object(service(), status, generation=2)


def rolling_update() -> Obj:
    # The spec changed: a surge group starts on the new template while the old ones serve.
    svc, live = converge(service(), healthy_group(0) + healthy_group(1))
    outdated(live, 0, 1)
    return _object(svc, _planned(svc, live, healthy_group(0) + healthy_group(1)))


def _unschedulable(at: float) -> Obj:
    svc, live = converge(service(), [])
    pods = [pod(0, r, unschedulable=NO_ROOM) for r in range(2)] + healthy_group(1)
    return _object(svc, _planned(svc, live, pods, at=at))


def waiting_for_nodes() -> Obj:
    return _unschedulable(60)


def unschedulable() -> Obj:
    return _unschedulable(UNSCHEDULABLE_GRACE.total_seconds())


def restart_limit() -> Obj:
    svc, live = converge(service(restart={"maxGroupRestarts": 0}), [])
    pods = [*healthy_group(0), pod(1, 0, restarts=2), pod(1, 1)]
    return _object(svc, _planned(svc, live, pods, at=30))


def invalid_spec() -> Obj:
    svc = service()
    problems = ["spec.engine.podTemplate: spec.containers[engine].image is owned by the operator"]
    return _object(svc, invalid_status(svc.status, 1, problems, T0))


def condition_without_reason() -> Obj:
    # Not written by this operator, but by an older one or by hand: the check must not crash.
    obj = starting()
    for condition in obj["status"]["conditions"]:
        condition.pop("reason", None)
        condition.pop("message", None)
    return obj


# name -> (builder, kstatus status, Argo CD health status)
CASES: dict[str, tuple[Callable[[], Obj], str, str]] = {
    "fresh": (fresh, "InProgress", "Progressing"),
    "starting": (starting, "InProgress", "Progressing"),
    "ready": (ready, "Current", "Healthy"),
    "new-generation": (new_generation, "InProgress", "Progressing"),
    "rolling-update": (rolling_update, "InProgress", "Progressing"),
    "waiting-for-nodes": (waiting_for_nodes, "InProgress", "Progressing"),
    "unschedulable": (unschedulable, "InProgress", "Degraded"),
    "restart-limit": (restart_limit, "Failed", "Degraded"),
    "invalid-spec": (invalid_spec, "Failed", "Degraded"),
    "condition-without-reason": (condition_without_reason, "InProgress", "Progressing"),
}


def fixture() -> list[Obj]:
    """Every case as written to statuses.json."""
    return [
        {"name": name, "kstatus": kstatus, "argocd": argo, "object": build()}
        for name, (build, kstatus, argo) in CASES.items()
    ]


def test_fixture_file_matches_the_planner(update_golden: bool) -> None:
    text = json.dumps(fixture(), indent=2, sort_keys=True) + "\n"
    if update_golden:
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(text)
    assert FIXTURE.read_text() == text, "statuses drifted from the planner: --update-golden"


def test_cases_show_what_they_are_named_for() -> None:
    def conditions(name: str) -> dict[str, Obj]:
        status = CASES[name][0]()["status"]
        return {c["type"]: c for c in status["conditions"]}

    assert conditions("ready")["Reconciling"]["status"] == "False"
    assert conditions("rolling-update")["Ready"]["status"] == "True"
    assert conditions("rolling-update")["Reconciling"]["reason"] == "RollingUpdate"
    assert conditions("waiting-for-nodes")["Degraded"]["status"] == "False"
    assert conditions("unschedulable")["Degraded"]["reason"] == "Unschedulable"
    assert conditions("restart-limit")["Stalled"]["reason"] == "GroupRestartLimitExceeded"
    assert conditions("invalid-spec")["Stalled"]["status"] == "True"
