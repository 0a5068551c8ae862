"""The informer's store: newer versions win, our own writes count, a 410 relists and reports
what vanished meanwhile. A small aiohttp server plays the API server's list and watch."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio import client

from llmsvc.controller.cache import pod_essentials, reads_of
from llmsvc.controller.informer import Informer, newer, version_of
from llmsvc.plan.pods import pod_facts
from tests.plan.fixtures import OWNERS
from tests.plan.fixtures import pod as pod_fixture

Obj = dict[str, Any]


def pod(name: str, version: int, owner: str = "svc", **meta: Any) -> Obj:
    labels = {"llmsvc.io/name": owner}
    metadata = {"name": name, "namespace": "ml", "resourceVersion": str(version), "labels": labels}
    return {"kind": "Pod", "apiVersion": "v1", "metadata": metadata | meta}


class Server:
    """Lists answer ``lists`` in turn; each watch streams the next batch of ``watches``."""

    def __init__(self, lists: list[Obj], watches: list[list[Obj]]) -> None:
        self.lists, self.watches = lists, watches
        self.requests: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        watch = request.query.get("watch") == "true"
        self.requests.append("WATCH" if watch else "LIST")
        if not watch:
            return web.json_response(self.lists.pop(0))
        response = web.StreamResponse()
        await response.prepare(request)
        for event in self.watches.pop(0) if self.watches else []:
            await response.write(json.dumps(event).encode() + b"\n")
        if not self.watches:
            await asyncio.sleep(3600)  # nothing more happens
        return response


@asynccontextmanager
async def serve(server: Server) -> AsyncIterator[client.ApiClient]:
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    config = client.Configuration(host=f"http://127.0.0.1:{runner.addresses[0][1]}")
    api = client.ApiClient(configuration=config)
    try:
        yield api
    finally:
        await api.close()
        await runner.cleanup()


def listing(version: int, *items: Obj) -> Obj:
    return {"kind": "PodList", "metadata": {"resourceVersion": str(version)}, "items": list(items)}


def test_newer_compares_etcd_revisions_as_numbers() -> None:
    assert newer("10", "9")
    assert not newer("9", "10")
    assert not newer("10", "10")
    assert newer("opaque", "10")


async def run_until(informer: Informer, done: Any) -> None:
    task = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(5):
            while not done():  # noqa: ASYNC110 - what the informer stored
                await asyncio.sleep(0.01)
    finally:
        task.cancel()


async def test_a_410_relists_and_reports_what_vanished() -> None:
    a, b = pod("a", 5), pod("b", 6)
    expired = {"type": "ERROR", "object": {"kind": "Status", "code": 410}}
    server = Server([listing(10, a, b), listing(20, pod("a", 15))], [[expired]])
    events: list[tuple[str, str]] = []
    async with serve(server) as api:
        informer = Informer(api, "/api/v1/pods", "Pod", "v1", on_event=lambda t, o: events.append(
            (t, o["metadata"]["name"])
        ))  # fmt: skip
        await run_until(informer, lambda: len(server.requests) >= 4)
    assert server.requests[:4] == ["LIST", "WATCH", "LIST", "WATCH"]
    assert ("DELETED", "b") in events
    assert set(informer.store) == {("ml", "a")}
    assert [p["metadata"]["name"] for p in informer.owned("ml", "svc")] == ["a"]


async def test_watch_events_older_than_our_own_write_are_ignored() -> None:
    stale = {"type": "MODIFIED", "object": pod("a", 11, uid="old")}
    fresh = {"type": "MODIFIED", "object": pod("a", 13, uid="new")}
    server = Server([listing(10, pod("a", 10))], [[], [stale, fresh]])
    async with serve(server) as api:
        informer = Informer(api, "/api/v1/pods", "Pod", "v1")
        task = asyncio.create_task(informer.run())
        await informer.synced.wait()
        informer.remember(pod("a", 12, uid="ours"))  # our apply's reply
        uid = informer.store[("ml", "a")]["metadata"]["uid"]
        assert uid == "ours"
        async with asyncio.timeout(5):
            while informer.store[("ml", "a")]["metadata"]["uid"] != "new":  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        task.cancel()


async def test_a_deleted_object_stays_gone_unless_it_lingers() -> None:
    server = Server([listing(10, pod("a", 10), pod("b", 10))], [])
    async with serve(server) as api:
        informer = Informer(api, "/api/v1/pods", "Pod", "v1")
        task = asyncio.create_task(informer.run())
        await informer.synced.wait()
        informer.forget(pod("a", 10))  # deleted at once (the server replied Status)
        informer.forget(pod("b", 11, deletionTimestamp="2026-01-01T00:00:00Z"))  # grace period
        informer.remember(pod("a", 10))  # a late event of the version we deleted
        task.cancel()
    assert ("ml", "a") not in informer.store
    assert informer.store[("ml", "b")]["metadata"]["deletionTimestamp"]
    assert informer.owned("ml", "svc") == [informer.store[("ml", "b")]]


async def test_a_relabelled_object_is_reported_to_its_former_owner_too() -> None:
    moved = {"type": "MODIFIED", "object": pod("a", 11, owner="other")}
    server = Server([listing(10, pod("a", 10, owner="svc"))], [[moved]])
    seen: list[tuple[str, str]] = []
    async with serve(server) as api:
        informer = Informer(api, "/api/v1/pods", "Pod", "v1")
        informer.on_event = lambda type_, obj: seen.append(
            (type_, obj["metadata"]["labels"]["llmsvc.io/name"])
        )
        task = asyncio.create_task(informer.run())
        async with asyncio.timeout(5):
            while ("MODIFIED", "other") not in seen:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        task.cancel()
    assert seen == [("ADDED", "svc"), ("MODIFIED", "svc"), ("MODIFIED", "other")]
    assert informer.owned("ml", "svc") == []


def child(kind: str, version: int, status: Obj, **labels: str) -> Obj:
    obj = pod("a", version)
    obj["metadata"]["labels"] |= labels
    return obj | {"kind": kind, "apiVersion": "apps/v1", "status": status}


PDB, STS = "PodDisruptionBudget", "StatefulSet"


@pytest.mark.parametrize(
    ("kind", "changed", "reported"),
    [
        (PDB, child(PDB, 11, {"currentHealthy": 1}), False),
        (PDB, child(PDB, 12, {"currentHealthy": 1}, extra="label"), True),
        (STS, child(STS, 11, {"readyReplicas": 1, "updateRevision": "r1"}), False),
        (STS, child(STS, 12, {"readyReplicas": 1, "updateRevision": "r2"}), True),
    ],
)
async def test_a_change_to_nothing_the_reconcile_reads_is_stored_not_reported(
    kind: str, changed: Obj, reported: bool
) -> None:
    """The disruption controller rewrites a budget's counts after every pod event, the
    StatefulSet controller its replica counts: no reconcile reads them."""
    first = child(kind, 10, {"updateRevision": "r1"} if kind == STS else {})
    server = Server([listing(10, first)], [[{"type": "MODIFIED", "object": changed}]])
    seen: list[str] = []
    async with serve(server) as api:
        informer = Informer(api, "/x", kind, "apps/v1", relevant=reads_of(kind),
                            on_event=lambda type_, obj: seen.append(type_))  # fmt: skip
        await run_until(
            informer, lambda: version_of(informer.store.get(("ml", "a"), first)) != "10"
        )
    assert informer.store[("ml", "a")]["status"] == changed["status"]  # stored either way
    assert seen == ["ADDED", *(["MODIFIED"] if reported else [])]


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"ready": False}, {"unschedulable": "0/3 nodes"}, {"terminating": True},
     {"pull_log": "403 Forbidden"}, {"phase": "Failed", "restarts": 3}],
)  # fmt: skip
def test_the_cache_keeps_every_pod_field_the_planner_reads(kwargs: dict[str, Any]) -> None:
    full = pod_fixture(0, 1, **kwargs)
    full["spec"] = {"nodeName": "gpu-1", "containers": [{"name": "engine", "env": [{"name": "X"}]}]}
    kept = pod_essentials(copy.deepcopy(full))
    assert "containers" not in kept["spec"]
    assert pod_facts(kept, OWNERS) == pod_facts(full, OWNERS)
    assert kept["metadata"] == full["metadata"]  # evictions and pokes need all of it
