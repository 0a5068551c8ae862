"""The planner reads of its children's status only what the watch caches report a change of.

:data:`llmsvc.controller.cache.STATUS_READ` lets a status-only change of any other field (the
disruption controller rewriting a budget's counts after every pod event) poke no reconcile. That
is only right while the planner truly reads nothing else: these passes hand it children whose
status records every field it touches, through the paths that read status (a steady state, a
rollout, a broken group, a drain, the router coming up)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llmsvc.controller.cache import STATUS_READ
from tests.plan.fixtures import healthy_group, pod, service
from tests.plan.test_planner import Live, converge, run

ALL = "<every field>"


class Recording(dict[str, Any]):
    """A status that remembers which of its fields were read."""

    def __init__(self, status: dict[str, Any], seen: set[str]) -> None:
        super().__init__(status)
        self.seen = seen

    def get(self, name: str, default: Any = None) -> Any:
        self.seen.add(name)
        return super().get(name, default)

    def __getitem__(self, name: str) -> Any:
        self.seen.add(name)
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self.seen.add(str(name))
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self.seen.add(ALL)
        return super().__iter__()

    def items(self) -> Any:
        self.seen.add(ALL)
        return super().items()

    def values(self) -> Any:
        self.seen.add(ALL)
        return super().values()


def recorded(live: Live) -> dict[str, set[str]]:
    """Give every child a recording status (with a field no planner needs); the reads by kind."""
    reads: dict[str, set[str]] = {}
    for obj in live.values():
        status = dict(obj.get("status") or {}) | {"observedGeneration": 1}
        obj["status"] = Recording(status, reads.setdefault(obj["kind"], set()))
    return reads


def rollout(live: Live) -> list[dict[str, Any]]:
    live[("StatefulSet", "llama-0")]["status"]["updateRevision"] = "rev2"
    return healthy_group(0) + healthy_group(1)


def broken(live: Live) -> list[dict[str, Any]]:
    return [*healthy_group(0), pod(1, 0, ready=False, restarts=3), pod(1, 1)]


def router_down(live: Live) -> list[dict[str, Any]]:
    live[("Deployment", "llama-router")]["status"]["availableReplicas"] = 0
    return healthy_group(0) + healthy_group(1)


@pytest.mark.parametrize("change", [None, rollout, broken, router_down])
def test_the_planner_reads_no_child_status_the_caches_ignore(change: Any) -> None:
    svc, live = converge(
        service(autoscaling={"enabled": True}), healthy_group(0) + healthy_group(1)
    )
    pods = change(live) if change else healthy_group(0) + healthy_group(1)
    reads = recorded(live)
    run(svc, live, pods, at=120)
    run(svc, live, pods, at=120 + 3600)  # past every restart backoff and grace period
    for kind, fields in reads.items():
        assert fields <= set(STATUS_READ.get(kind, ())), f"{kind}: the planner read {fields}"
    assert reads["StatefulSet"], "the recording records"
    assert reads["Deployment"], "the recording records"
