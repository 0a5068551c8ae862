"""Which passes leave an LLMService quiet (passed over by the resync sweep until an event pokes it).

A pass that wrote no child and left the LLMService settled makes it quiet, even when it wrote the
status (the status it writes is a fixed point of the planner: tests/plan/test_settled.py), so the
LLMServices that became Ready cost the sweep no confirming pass. The status write's reply is the
one place where someone else's change could slip by unseen (its watch event is older than the
reply, so the informer ignores it): the cache pokes for it instead.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from kubernetes_asyncio.client import ApiClient

from llmsvc.controller.cache import Cache
from llmsvc.controller.informer import Informer
from llmsvc.controller.metrics import OperatorMetrics
from llmsvc.controller.reconciler import Settings
from llmsvc.controller.runtime import Runtime
from llmsvc.plan import Plan

Obj = dict[str, Any]
REF = ("ml", "llama")
READY = {"conditions": [{"type": "Ready", "status": "True"}], "groups": [{"phase": "Ready"}]}
STARTING = {"conditions": [{"type": "Ready", "status": "False"}], "groups": [{"phase": "Starting"}]}


def llmservice(version: int, status: Obj, **meta: Any) -> Obj:
    metadata = {"name": "llama", "namespace": "ml", "resourceVersion": str(version),
                "generation": 1, "managedFields": [{"manager": "kubectl"}]} | meta  # fmt: skip
    return {"apiVersion": "llmsvc.io/v1alpha1", "kind": "LLMService", "metadata": metadata,
            "spec": {"replicas": 1}, "status": status}  # fmt: skip


def holding(obj: Obj) -> tuple[Cache, list[tuple[str, str]]]:
    """A cache whose LLMService informer has synced and holds ``obj``; the pokes it makes."""
    pokes: list[tuple[str, str]] = []
    api = cast(ApiClient, None)  # nothing is listed or watched: the store is filled by hand
    cache = Cache(api, lambda ns, name: pokes.append((ns, name)), lambda ns, name, gone: None)
    informer = Informer(api, "/apis/llmsvc.io/v1alpha1/llmservices", "LLMService", "v1alpha1")
    informer.remember(obj)
    informer.synced.set()
    cache.informers[("LLMService", "")] = informer
    return cache, pokes


def test_our_status_write_returned_as_we_wrote_it_pokes_nothing() -> None:
    cache, pokes = holding(llmservice(5, STARTING))
    reply = llmservice(7, READY, managedFields=[{"manager": "llmsvc-operator"}])
    cache.remember(reply)
    assert pokes == []
    assert cache.informers[("LLMService", "")].store[REF] == reply


@pytest.mark.parametrize(
    "change",
    [
        {"spec": {"replicas": 3}},
        {"metadata": {"generation": 2}},
        {"metadata": {"labels": {"team": "a"}}},
        {"metadata": {"annotations": {"llmsvc.io/restart": "now"}}},
        {"metadata": {"deletionTimestamp": "2026-12-02T00:00:00Z"}},
    ],
)
def test_someone_elses_change_in_our_status_writes_reply_pokes_a_pass(change: Obj) -> None:
    cache, pokes = holding(llmservice(5, STARTING))
    reply = llmservice(7, READY)
    reply["metadata"] |= change.get("metadata", {})
    reply["spec"] |= change.get("spec", {})
    cache.remember(reply)
    assert pokes == [REF]


def runtime(stored: Obj) -> Runtime:
    rt = Runtime(Settings(image="img"), OperatorMetrics())
    rt.cache = holding(stored)[0]
    return rt


CHILD = {"kind": "StatefulSet", "metadata": {"name": "llama-0"}}


@pytest.mark.parametrize(
    ("stored", "todo", "quiet"),
    [
        (READY, Plan(), True),  # a pass that found nothing to do
        (READY, Plan(status=READY), True),  # the pass that wrote the Ready status
        (STARTING, Plan(status=STARTING), False),  # not settled: time or pods will change it
        (READY, Plan(apply=[CHILD], status=READY), False),  # a child written: pass again
        (READY, Plan(delete=[CHILD]), False),
        (READY, Plan(evict=[CHILD], restart_groups=[0]), False),
        (READY, Plan(status=READY, recheck=30.0), False),  # an eviction window ends then
        (READY, None, False),  # the LLMService is gone
    ],
)
async def test_a_pass_leaves_an_llmservice_quiet_only_if_it_wrote_no_child_and_is_settled(
    stored: Obj, todo: Plan | None, quiet: bool
) -> None:
    rt = runtime(llmservice(7, stored))
    await rt._remember_quiet(REF, todo)
    assert (REF in rt._quiet) is quiet


async def test_a_pass_poked_meanwhile_is_not_quiet() -> None:
    rt = runtime(llmservice(7, READY))
    rt.poke(*REF, delay=60)  # an event arrived during the pass: another pass is queued
    await rt._remember_quiet(REF, Plan(status=READY))
    assert REF not in rt._quiet
    await rt.close()
    await asyncio.sleep(0)
