"""Test helpers for hostile-input tests: raw HTTP, a recording backend, router processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from llmsvc.router.server import Running, free_port, start, wait_ready

IDLE_ENGINE = "vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n"


@dataclass
class Raw:
    """A response read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        """The OpenAI error object of the body (fails when it is not one)."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        error: dict[str, Any] = json.loads(self.body)["error"]
        assert error["message"], self
        return error


async def raw_exchange(url: str, data: bytes, seconds: float = 5.0) -> Raw:
    """Send ``data`` as is to ``url``'s host and port; read the response until it closes."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), seconds)
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
        }
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), seconds)
        return Raw(int(lines[0].split()[1]), headers, body)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@dataclass
class Recorder:
    """A backend that records every request it receives and answers like vLLM."""

    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    server: Running | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        assert self.server is not None
        return self.server.url

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Health checks and load scrapes answered; the rest recorded and answered with JSON."""
        if request.raw_path in ("/health", "/v1/models"):
            return web.json_response({"object": "list", "data": [{"id": "m"}]})
        if request.raw_path == "/metrics":  # the router's load scrape, answered like vLLM
            return web.Response(text=IDLE_ENGINE)
        body = await request.read()
        self.seen.append((request.method, request.raw_path, dict(request.headers), body))
        return web.json_response({"object": "list", "data": [{"id": "m"}], "ok": True})


@contextlib.asynccontextmanager
async def recorder() -> AsyncIterator[Recorder]:
    """A running ``Recorder`` on 127.0.0.1."""
    backend = Recorder()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", backend.handle)
    backend.server = await start(app)
    try:
        yield backend
    finally:
        await backend.server.stop()


@dataclass
class Process:
    """A child process serving HTTP on ``url``, its output captured in ``log``."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def rss_kib(self, field_name: str = "VmRSS") -> int:
        """Resident memory (``VmRSS``) or its peak (``VmHWM``) in KiB, from /proc."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith(field_name + ":"))
        return int(line.split()[1])

    def stop(self) -> str:
        """Stop the process (SIGTERM, then SIGKILL) and return everything it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.log.read_text(errors="replace")


async def spawn(tmp: Path, name: str, *argv: str, port: int | None = None, **env: str) -> Process:
    """``llmsvc ARGV --host 127.0.0.1 --port P`` as a child process, ready on ``/health``."""
    port = port or free_port()
    log = tmp / f"{name}.log"
    command = [sys.executable, "-m", "llmsvc.cli", *argv, "--host", "127.0.0.1"]
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, waited on below
            [*command, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    process = Process(proc, f"http://127.0.0.1:{port}", log)
    try:
        await wait_ready(process.url)
    except RuntimeError:
        raise AssertionError(process.stop()) from None
    return process
