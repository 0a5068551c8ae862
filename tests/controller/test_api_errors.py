"""API errors over real HTTP: Retry-After on 429 is honoured, a 422 becomes Degraded + an Event
and keeps the stale NetworkPolicies."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException
from multidict import CIMultiDict, CIMultiDictProxy

from llmsvc.controller.kube import MAX_RETRY_AFTER, Kube, retry_after, server_message
from llmsvc.controller.metrics import OperatorMetrics
from llmsvc.controller.reconciler import Settings, reconcile
from llmsvc.controller.runtime import Runtime, retry_delay
from tests.controller.fake_api import FakeApi, serve, status
from tests.plan.fixtures import BASE

REJECTION = (
    'StatefulSet.apps "llama-0" is invalid: spec.template.spec.containers[0].resources.requests: '
    'Invalid value: "2": must be less than or equal to cpu limit of 1'
)


def error(code: int, headers: dict[str, str] | None = None, body: Any = None) -> ApiException:
    e = ApiException(status=code, reason="Too Many Requests")
    e.headers = CIMultiDictProxy(CIMultiDict(headers or {}))
    e.body = body
    return e


@pytest.mark.parametrize(
    ("code", "header", "seconds"),
    [
        (429, "3", 3.0),
        (429, "0.5", 0.5),
        (503, "7", 7.0),
        (429, "Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
        (429, "86400", MAX_RETRY_AFTER),
        (429, "-5", 0.0),
        (429, "soon", None),
        (429, "nan", None),
        (429, "", None),
        (500, "3", None),
    ],
)
def test_retry_after(code: int, header: str, seconds: float | None) -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after(error(code, {"Retry-After": header}), now) == seconds


def test_retry_after_is_a_floor_the_backoff_cap_does_not_shorten() -> None:
    throttled = error(429, {"Retry-After": "20"})
    assert retry_delay(throttled, 0, cap=5) == 20
    assert retry_delay(throttled, 6, cap=30) == 30  # backoff already longer
    assert retry_delay(ValueError("boom"), 0, cap=30) == 2
    assert retry_delay(error(429), 10, cap=5) == 5  # no header: plain backoff


def test_server_message_is_the_status_message() -> None:
    assert server_message(error(422, body=b'{"message": "bad spec"}')) == "bad spec"
    assert server_message(error(422, body="not json")) == "Too Many Requests"


def llmservice(**engine: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    body["spec"]["engine"].update(engine)
    return body


async def until(done: Callable[[], bool]) -> None:
    """Wait (at most 5 s) until ``done()``."""
    async with asyncio.timeout(5):
        while not done():  # noqa: ASYNC110 - polling what a real HTTP server recorded
            await asyncio.sleep(0.01)


async def test_a_throttled_reconcile_waits_for_retry_after() -> None:
    api = FakeApi(llmservice=copy.deepcopy(BASE))
    throttled = iter([True])

    def throttle(method: str, path: str) -> web.Response | None:
        if method == "PATCH" and path.endswith("/status") and next(throttled, False):
            return status(429, "TooManyRequests", "slow down", {"Retry-After": "1"})
        return None

    api.rules.append(throttle)
    async with serve(api) as client:
        runtime = Runtime(Settings(image="img"), OperatorMetrics(), resync=60, debounce=0)
        runtime.attach(client)
        try:
            await until(lambda: len(api.received("PATCH", "/status")) >= 1)
            runtime.poke("ml", "llama", delay=0)  # events meanwhile are merged into the retry
            await until(lambda: len(api.received("PATCH", "/status")) >= 2)
        finally:
            await runtime.close()
    first, second = api.received("PATCH", "/status")[:2]
    assert second.at - first.at >= 0.95, "retried before the server's Retry-After"


async def test_an_invalid_child_is_surfaced_as_degraded_and_an_event_once() -> None:
    api = FakeApi(llmservice=llmservice(resources={"requests": {"cpu": 2}, "limits": {"cpu": 1}}))

    def reject_statefulsets(method: str, path: str) -> web.Response | None:
        if method == "PATCH" and "/statefulsets/" in path:
            return status(422, "Invalid", REJECTION)
        return None

    api.rules.append(reject_statefulsets)
    async with serve(api) as client:
        kube = Kube(client)
        todo = await reconcile(kube, "ml", "llama", Settings(image="img"))
        assert todo is not None
        assert api.received("PATCH", "/services/llama-headless"), "other children still applied"
        assert api.llmservice is not None
        conditions = {c["type"]: c for c in api.llmservice["status"]["conditions"]}
        degraded = conditions["Degraded"]
        assert (degraded["status"], degraded["reason"]) == ("True", "ApplyRejected")
        assert f"StatefulSet/llama-0: {REJECTION}" in degraded["message"]
        ready = conditions["Ready"]
        assert (ready["status"], ready["reason"]) == ("False", "ApplyRejected")
        events = [r.body for r in api.received("POST", "/events")]
        rejected = [e["message"] for e in events if e["reason"] == "ApplyRejected"]
        assert len(rejected) == 2  # llama-0 and llama-1
        assert REJECTION in rejected[0]
        created = [e["message"] for e in events if e["reason"] == "Created"]
        assert len(created) == 1, "one Created Event per pass"
        assert "Service llama-headless" in created[0]
        assert "StatefulSet" not in created[0]  # both were rejected: never claimed
        status_writes = len(api.received("PATCH", "/status"))
        await reconcile(kube, "ml", "llama", Settings(image="img"))
        again = [r.body["reason"] for r in api.received("POST", "/events")]
        assert again.count("ApplyRejected") == 2, "the same rejection reported again"
        assert len(api.received("PATCH", "/status")) == status_writes, "status churn"


async def test_other_api_errors_still_fail_the_pass() -> None:
    api = FakeApi(llmservice=llmservice())

    def forbid(method: str, path: str) -> web.Response | None:
        return status(403, "Forbidden", "no") if method == "PATCH" else None

    api.rules.append(forbid)
    async with serve(api) as client:
        with pytest.raises(ApiException) as raised:
            await reconcile(Kube(client), "ml", "llama", Settings(image="img"))
    assert raised.value.status == 403


async def test_a_child_labelled_with_an_empty_name_pokes_nothing() -> None:
    runtime = Runtime(Settings(image="img"), OperatorMetrics())
    runtime.poke("ml", "")
    assert not runtime._pending


async def test_old_network_policies_stay_while_their_replacement_is_refused() -> None:
    """A NetworkPolicy refused as invalid (a peer no check caught) must not leave the pods open:
    the stale policies that still close them are kept until the new one is stored."""
    stale: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": "llama-7", "namespace": "ml", "labels": {"llmsvc.io/name": "llama"},
            "ownerReferences": [{"uid": BASE["metadata"]["uid"], "controller": True}],
        },
    }  # fmt: skip
    stale_service = {**stale, "apiVersion": "v1", "kind": "Service"}
    stale_service["metadata"] = {**stale["metadata"], "name": "llama-stale"}
    api = FakeApi(llmservice=copy.deepcopy(BASE))

    def serve_children(method: str, path: str) -> web.Response | None:
        lists = {"/networkpolicies": stale, "/services": stale_service}
        for suffix, item in lists.items():
            if method == "GET" and path.endswith(suffix):
                return web.json_response({"apiVersion": "v1", "items": [item]})
        if method == "PATCH" and "/networkpolicies/" in path and "-7" not in path:
            return status(422, "Invalid", "NetworkPolicy is invalid: ipBlock.cidr")
        return None

    api.rules.append(serve_children)
    async with serve(api) as client:
        todo = await reconcile(Kube(client), "ml", "llama", Settings(image="img"))
    assert todo is not None
    assert stale in todo.delete, "the planner wants it gone once the new policies exist"
    assert api.received("DELETE", "/services/llama-stale"), "other stale children still pruned"
    assert not api.received("DELETE", "/networkpolicies/"), "an old policy was pruned"
