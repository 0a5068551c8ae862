"""A tiny HTTP server that answers the few Kubernetes API calls one reconcile makes.

It stands in for kube-apiserver where the real one cannot be made to misbehave on cue (a 429
with Retry-After, a 422 on one kind): the operator's real client, real HTTP and real JSON go
through it, and it records every request. e2e/test_operator.py covers the same paths against
the real API server where that is possible.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from kubernetes_asyncio import client

from llmsvc.controller.kube import Kube

Obj = dict[str, Any]
# (method, path) -> a response, or None to fall through to the default behaviour
Rule = Callable[[str, str], web.Response | None]
WATCH_HOLD = 3600.0  # seconds a watch request stays open with no event


@dataclass
class Request:
    """One request the fake server received."""

    method: str
    path: str
    body: Any
    at: float


@dataclass
class FakeApi:
    """State of the fake server: the LLMService it serves, its rules and what it received."""

    llmservice: Obj | None = None
    rules: list[Rule] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    def received(self, method: str, contains: str = "") -> list[Request]:
        """The requests with ``method`` whose path contains ``contains``."""
        return [r for r in self.requests if r.method == method and contains in r.path]

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.requests.append(Request(request.method, request.path, body, time.monotonic()))
        for rule in self.rules:
            answer = rule(request.method, request.path)
            if answer is not None:
                return answer
        if request.query.get("watch") == "true":
            await asyncio.sleep(WATCH_HOLD)  # a watch on which nothing happens (until closed)
            return web.json_response({})
        return self._default(request.method, request.path, body)

    def _default(self, method: str, path: str, body: Any) -> web.Response:
        if method == "GET" and path.endswith("/llmservices/" + self._name()):
            if self.llmservice is None:
                return status(404, "NotFound", "not found")
            return web.json_response(self.llmservice)
        if method == "GET" and path.endswith("/llmservices") and self.llmservice is not None:
            return web.json_response({"apiVersion": "v1", "items": [self.llmservice]})
        if method == "GET":
            return web.json_response({"apiVersion": "v1", "items": []})
        if method == "PATCH" and path.endswith("/status") and self.llmservice is not None:
            self.llmservice["status"] = body["status"]
        return web.json_response(body or {}, status=201 if method == "POST" else 200)

    def _name(self) -> str:
        return str((self.llmservice or {}).get("metadata", {}).get("name", ""))


def status(
    code: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A response carrying a metav1.Status, as kube-apiserver sends for errors."""
    payload = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(payload, status=code, headers=headers)


@asynccontextmanager
async def serve(api: FakeApi) -> AsyncIterator[client.ApiClient]:
    """Run ``api`` on 127.0.0.1 and yield an API client pointed at it."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)  # held watches end at once
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    api.url = f"http://127.0.0.1:{port}"
    config = client.Configuration(host=api.url)
    api_client = client.ApiClient(configuration=config)
    try:
        yield api_client
    finally:
        await api_client.close()
        await runner.cleanup()


def kube(api_client: client.ApiClient) -> Kube:
    """The operator's API layer over ``api_client``."""
    return Kube(api_client)
