"""Start an aiohttp application on a host/port and report the bound port.

Shared by ``llmsvc router``, ``llmsvc sim``, the tests and the benchmark, with two helpers for
starting servers as child processes (``free_port``, ``wait_ready``). Handler
cancellation is on: when a client disconnects, its handler task is cancelled, which is how a
client's disconnect travels upstream to the engine. An application that carries a
``ConnectionGuard`` (the router's) is served through it: a connection cap, an idle/header timeout
and safe answers to malformed HTTP (see ``connections.py``).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from llmsvc.router.connections import ConnectionGuard

GUARD = web.AppKey("connection_guard", ConnectionGuard)


@dataclass
class Running:
    """A started server: its runner (to stop it) and the port it listens on."""

    runner: web.AppRunner
    host: str
    port: int
    listener: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43121``."""
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Close the listening socket and all connections."""
        if self.listener is not None:
            self.listener.close()
        await self.runner.cleanup()


async def start(
    app: web.Application, host: str = "127.0.0.1", port: int = 0, grace_s: float = 5.0
) -> Running:
    """Serve ``app`` on ``host:port`` (``0`` picks a free port) and return once listening.

    On stop, open requests get ``grace_s`` seconds to finish before their connections close.
    """
    runner = web.AppRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=grace_s
    )
    await runner.setup()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    guard = app.get(GUARD)
    if guard is not None:
        assert runner.server is not None
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(guard.factory(runner.server), sock=sock)
        return Running(runner, host, port, listener)
    site = web.SockSite(runner, sock)
    await site.start()
    return Running(runner, host, port)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (for child processes to bind)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def wait_ready(url: str, path: str = "/health", seconds: float = 20.0) -> None:
    """Poll ``url + path`` until it answers 200; ``RuntimeError`` after ``seconds``."""
    async with aiohttp.ClientSession() as session:
        for _ in range(int(seconds / 0.05)):
            try:
                async with session.get(url + path) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url}{path} did not answer 200 within {seconds} s")


async def serve_forever(app: web.Application, host: str, port: int) -> None:
    """Serve until cancelled (SIGTERM/SIGINT end ``asyncio.run``)."""
    running = await start(app, host, port)
    try:
        await asyncio.Event().wait()
    finally:
        await running.stop()
