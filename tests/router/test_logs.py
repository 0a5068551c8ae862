"""Nothing a client sends reaches the router's log, even at its most verbose level."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from pathlib import Path

import aiohttp

from tests.router.helpers import raw_exchange, spawn
from tests.sim.conftest import SimFactory

KEY = "sk-CANARY-KEY-7f3a"
CANARY = re.compile("canary", re.IGNORECASE)


def request(path: str, body: bytes, *headers: str, key: str = KEY) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Authorization: Bearer {key}", *headers]
    if not any(h.lower().startswith("transfer-encoding") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chat(prompt: str) -> bytes:
    message = {"role": "user", "content": prompt}
    return json.dumps({"model": "sim-model", "messages": [message]}).encode()


CHAT = "/v1/chat/completions"
HOSTILE = [
    request(CHAT, chat("canary prompt ok")),
    request(CHAT, chat("canary control"), key=KEY + "\x01"),
    request(CHAT, chat("canary long"), key=KEY + "A" * 9000),
    request(CHAT, b"", "Transfer-Encoding: chunked")
    + b'10\r\n{"prompt":"CANARY chunk prompt"}\r\nzz\r\n',
    request(CHAT, b'{"messages":[{"role":"user","content":"CANARY json prompt"}'),
    request(CHAT, b'{"model":"sim-model","messages":[{"role":"user","content":"CANARY \\ud800"}]}'),
    request(CHAT, b'{"p":"CANARY deep",' + b'"x":' + b"[" * 900 + b"]" * 900 + b"}"),
    request(CHAT, b"\x1f\x8b CANARY gzip prompt", "Content-Encoding: gzip"),
    request(CHAT, gzip.compress(chat("canary real gzip")), "Content-Encoding: gzip"),
    request(CHAT, b"x" * 5000 + b"CANARY big", "X-Canary-Header: canary value"),
    request("/v1/../CANARY-path", chat("canary path")),
    request("/v1/%2e%2e/canary", chat("canary encoded path")),
    request("/v1/canary-unknown", chat("canary unknown path")),
    request(CHAT, chat("canary wrong key"), key="sk-canary-wrong"),
    b"CANARY-METHOD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Canary\x00: canary-null\r\n\r\n",
    b"GET /v1/models?key=canary HTTP/1.1\r\nHost: x\r\nContent-Length: canary\r\n\r\n",
]


async def test_no_header_or_body_byte_reaches_the_log(
    tmp_path: Path, sim_factory: SimFactory
) -> None:
    sim = await sim_factory()
    router = await spawn(
        tmp_path,
        "router",
        "router",
        "--backend",
        sim.url,
        "--log-level",
        "debug",
        "--max-body-bytes",
        "4096",
        LLMSVC_ROUTER_API_KEYS=KEY,
        PYTHONASYNCIODEBUG="1",
    )
    try:
        statuses = []
        for raw in HOSTILE:
            try:
                statuses.append((await raw_exchange(router.url, raw)).status)
            except (ConnectionError, asyncio.IncompleteReadError):
                statuses.append(0)
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {KEY}"}
            body = {"model": "sim-model", "stream": True, "prompt": "canary stream"}
            async with session.post(
                f"{router.url}/v1/completions", json=body, headers=headers
            ) as r:
                assert r.status == 200
                await r.read()
    finally:
        log = router.stop()
    assert 200 in statuses
    assert {400, 401, 404, 413} <= set(statuses), statuses
    assert "DEBUG" in log  # the most verbose level was on
    leaks = [line for line in log.splitlines() if CANARY.search(line)]
    assert leaks == []
