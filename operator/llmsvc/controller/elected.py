"""Run the operator only while this process holds the leader Lease (``--leader-elect``).

While it waits, a follower serves ``/healthz`` itself (kopf's liveness endpoint starts only with
the operator), so the kubelet does not restart a healthy standby. Once leader it runs kopf until
it is stopped or loses the Lease; a lost Lease ends the process with exit code 1, so the pod
restarts as a follower, as client-go-based controllers do.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web

from llmsvc.controller.kube import api_client
from llmsvc.controller.leader import LeaderElector
from llmsvc.controller.leadermark import OwnPod, mark

Operate = Callable[[asyncio.Event], Awaitable[None]]


def identity() -> str:
    """This candidate's name: the pod name (downward API), else host and process id."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


async def _standby_health(address: str) -> web.AppRunner:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="standby: waiting for the leader Lease\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    host, port = address.rsplit(":", 1)
    await web.TCPSite(runner, host, int(port)).start()
    return runner


async def run_elected(
    namespace: str, name: str, health_address: str, operate: Operate, pod: OwnPod | None = None
) -> int:
    """Wait for the Lease ``namespace/name``, then ``operate`` until stopped or it is lost.

    ``pod``: this process's pod, labelled as the leader while it holds the Lease
    (:mod:`llmsvc.controller.leadermark`)."""
    api = await api_client()
    elector = LeaderElector(api, namespace, name, identity())
    standby = await _standby_health(health_address)
    try:
        if pod is not None:  # a leader that lost the Lease restarts here, in the same pod
            await mark(api, pod, leading=False)
        await elector.acquire()
        if pod is not None:
            await mark(api, pod, leading=True)
    finally:
        await standby.cleanup()
    stop = asyncio.Event()
    holding = asyncio.create_task(elector.hold())
    holding.add_done_callback(lambda _task: stop.set())
    try:
        await operate(stop)
    finally:
        lost = holding.done() and not holding.cancelled()
        holding.cancel()
        if pod is not None:
            await mark(api, pod, leading=False)
        if not lost:
            await elector.release()
        await api.close()
    return 1 if lost else 0
