"""Active health checks: when a failed ``/health`` check makes a backend unhealthy.

A backend turns unhealthy at once when it answers other than 200 or its port refuses the
connection, and after ``health_failures`` unanswered checks in a row. The last test is the
incident behind the rule: the router process was stopped for 3 s (a CPU-starved CI node) while a
check was in flight; its timer fired late with the answer already in the socket, every backend
counted as unhealthy and every client got 503.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from llmsvc.router.config import RouterConfig
from llmsvc.router.pool import Pool
from llmsvc.router.server import Running, start
from tests.router.conftest import RouterFactory
from tests.router.helpers import spawn
from tests.router.test_proxy import until
from tests.sim.test_app import CHAT, post

A = "http://a:1"
UNHEALTHY = "is now unhealthy"


@pytest.mark.parametrize(
    ("failures", "checks", "healthy"),
    [
        (2, ["silent"], True),
        (2, ["silent", "silent"], False),
        (2, ["silent", "passed", "silent"], True),
        (2, ["silent", "silent", "passed"], True),
        (2, ["down"], False),
        (2, ["silent", "down"], False),
        (3, ["silent", "silent"], True),
        (1, ["silent"], False),
    ],
)
def test_checks_in_a_row(failures: int, checks: list[str], healthy: bool) -> None:
    pool = Pool(RouterConfig(health_failures=failures))
    pool.set_urls([A])
    for check in checks:
        if check == "passed":
            pool.set_health(A, True)
        else:
            pool.check_failed(A, certain=check == "down")
    assert pool.backends[A].healthy is healthy


@dataclass
class Backend:
    """Answers completions at once; ``/health`` runs ``on_health`` first (a slow check, ...)."""

    on_health: Callable[[int], float | None] = lambda n: None
    status: int = 200
    checks: int = 0
    served: int = 0
    server: Running | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/health":
            self.checks += 1
            delay = self.on_health(self.checks)
            if delay:
                await asyncio.sleep(delay)
            return web.json_response({}, status=self.status)
        if request.path == "/v1/models":
            return web.json_response({"data": [{"id": "sim-model"}]})
        if request.path == "/v1/chat/completions":
            self.served += 1
        return web.json_response({"choices": [{"message": {"content": "hi"}}]})


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    served = Backend()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", served.handle)
    served.server = await start(app)
    yield served
    await served.server.stop()


async def checks_pass(backend: Backend, n: int) -> None:
    """Wait until ``n`` more checks reached the backend."""
    target = backend.checks + n
    await until(lambda: backend.checks >= target, seconds=5.0)


async def test_one_slow_check_is_not_enough(
    backend: Backend, router_factory: RouterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llmsvc.router.health")
    backend.on_health = lambda n: 0.6 if n == 3 else None
    router = await router_factory([backend.url], health_interval=0.05, health_timeout=0.3)
    await checks_pass(backend, 6)
    assert UNHEALTHY not in caplog.text
    assert (await post(f"{router.url}/v1/chat/completions", CHAT))[0] == 200


async def test_two_slow_checks_in_a_row_are(
    backend: Backend, router_factory: RouterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llmsvc.router.health")
    backend.on_health = lambda n: 0.6 if n >= 3 else None  # and slow from then on
    router = await router_factory([backend.url], health_interval=0.05, health_timeout=0.3)
    await checks_pass(backend, 4)
    await asyncio.sleep(0.4)  # the fourth check times out
    assert f"backend {backend.url} {UNHEALTHY}" in caplog.text
    status, body = await post(f"{router.url}/v1/chat/completions", CHAT)
    assert status == 503
    assert b"no healthy backend" in body


async def refuse(backend: Backend) -> None:
    """Stop the backend's server: its port refuses connections."""
    assert backend.server is not None
    await backend.server.stop()


async def answer_503(backend: Backend) -> None:
    """vLLM's answer on ``/health`` once its engine died."""
    backend.status = 503


@pytest.mark.parametrize("go_down", [refuse, answer_503])
async def test_a_backend_that_says_it_is_down_is_unhealthy_at_once(
    backend: Backend,
    router_factory: RouterFactory,
    caplog: pytest.LogCaptureFixture,
    go_down: Callable[[Backend], Awaitable[None]],
) -> None:
    caplog.set_level(logging.INFO, logger="llmsvc.router.health")
    await router_factory([backend.url], health_interval=0.05, health_failures=100)
    await checks_pass(backend, 2)
    await go_down(backend)  # 100 unanswered checks would take 5 s
    await until(lambda: UNHEALTHY in caplog.text, seconds=1.0)  # at once, not after 100


async def load(url: str, seconds: float) -> list[int]:
    """Four clients posting back to back for ``seconds``: their statuses."""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=30)

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            async with session.post(f"{url}/v1/chat/completions", json=CHAT) as response:
                await response.read()
                statuses.append(response.status)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(4)))
    return statuses


async def test_a_stalled_router_does_not_blame_the_backends(
    backend: Backend, tmp_path: Path
) -> None:
    router = await spawn(
        tmp_path, "router", "router", "--backend", backend.url,
        "--health-interval", "0.2", "--health-timeout", "1",
    )  # fmt: skip
    loop = asyncio.get_running_loop()

    def stall_in_the_middle_of_a_check(n: int) -> None:
        if n == 8:  # the router waits for this answer: stop it for 3 s, past its timeout
            os.kill(router.proc.pid, signal.SIGSTOP)
            loop.call_later(3.0, os.kill, router.proc.pid, signal.SIGCONT)

    backend.on_health = stall_in_the_middle_of_a_check
    try:
        statuses = await load(router.url, seconds=6)
        await checks_pass(backend, 3)  # checks go on after the stall
    finally:
        log = router.stop()
    assert backend.checks >= 11, backend.checks
    assert set(statuses) == {200}, f"{statuses.count(503)} answered 503: {log}"
    assert backend.served == len(statuses)  # each one served once, by the backend
    assert UNHEALTHY not in log, log
