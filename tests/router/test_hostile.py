"""Hostile clients over real sockets: path tricks, malformed HTTP and bodies, gzip, slow clients."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator

import pytest

from llmsvc.router.server import Running
from tests.router.conftest import RouterFactory
from tests.router.helpers import Recorder, raw_exchange, recorder
from tests.router.test_proxy import scrape

CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture
async def backend() -> AsyncIterator[Recorder]:
    """A recording backend."""
    async with recorder() as running:
        yield running


@pytest.fixture
async def router(backend: Recorder, router_factory: RouterFactory) -> Running:
    """A router in front of the recording backend."""
    return await router_factory([backend.url])


def post(path: str, body: bytes = CHAT, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize(
    "path",
    [
        "/v1/../reset_prefix_cache",
        "/v1/%2e%2e/reset_prefix_cache",
        "/v1/%2E%2E/reset_prefix_cache",
        "/v1/%252e%252e/reset_prefix_cache",
        "/v1/chat/../../reset_prefix_cache",
        "/v1/./chat/completions",
        "/v1//chat/completions",
        "/v1/chat%2fcompletions",
        "/v1\\..\\reset_prefix_cache",
        "/v1/load_lora_adapter",
        "/reset_prefix_cache",
        "/v1/anything",
    ],
)
async def test_only_listed_endpoints_reach_a_backend(
    router: Running, backend: Recorder, path: str
) -> None:
    answer = await raw_exchange(router.url, post(path))
    assert answer.status in (400, 404), answer
    assert "path" in answer.error()["message"] or "no route" in answer.error()["message"]
    assert backend.seen == []


async def test_a_listed_endpoint_is_forwarded_as_listed(router: Running, backend: Recorder) -> None:
    answer = await raw_exchange(router.url, post("/v1/embeddings?x=%2e%2e", b'{"input":"a"}'))
    assert answer.status == 200, answer
    assert [(m, p) for m, p, _, _ in backend.seen] == [("POST", "/v1/embeddings?x=%2e%2e")]


async def test_json_nested_too_deep_is_an_openai_400(router: Running, backend: Recorder) -> None:
    deep = b'{"model":"m","messages":' + b"[" * 900 + b"]" * 900 + b"}"
    answer = await raw_exchange(router.url, post("/v1/chat/completions", deep))
    assert answer.status == 400
    assert "deeper than 64" in answer.error()["message"]
    assert backend.seen == []


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_a_body_that_does_not_decode_is_an_openai_400(
    router: Running, backend: Recorder, encoding: str
) -> None:
    body = b"\x1f\x8b\x08 definitely not " + encoding.encode()
    request = post("/v1/chat/completions", body, f"Content-Encoding: {encoding}")
    answer = await raw_exchange(router.url, request)
    assert answer.status == 400, answer
    assert "Content-Encoding" in answer.error()["message"]
    assert backend.seen == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nBad Header: \x01\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n{}\r\n0\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ],
    ids=["request-line", "control-byte", "header-too-long", "bad-chunk", "bad-length"],
)
async def test_malformed_http_gets_an_openai_error(
    router: Running, backend: Recorder, request_bytes: bytes
) -> None:
    answer = await raw_exchange(router.url, request_bytes)
    assert 400 <= answer.status < 500, answer
    assert "malformed HTTP" in answer.error()["message"] or answer.status == 400
    assert backend.seen == []


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
async def test_a_compressed_body_is_forwarded_decoded(
    router: Running, backend: Recorder, encoding: str, compress: object
) -> None:
    assert callable(compress)
    packed = compress(CHAT)
    answer = await raw_exchange(
        router.url, post("/v1/chat/completions", packed, f"Content-Encoding: {encoding}")
    )
    assert answer.status == 200, answer
    [(_, _, headers, body)] = backend.seen
    assert body == CHAT
    assert "Content-Encoding" not in headers
    assert headers["Content-Length"] == str(len(CHAT))
    assert 'backend_healthy{backend="' + backend.url + '"} 1.0' in await scrape(router.url)


async def _open_idle(url: str, count: int) -> list[tuple[asyncio.StreamReader, object]]:
    host, port = url.removeprefix("http://").split(":")
    return [await asyncio.open_connection(host, int(port)) for _ in range(count)]


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the peer closed the connection within 2 s (sending nothing)."""
    try:
        return await asyncio.wait_for(reader.read(), 2.0) == b""
    except ConnectionError:
        return True


async def test_idle_and_slow_clients_are_cut_and_connections_capped(
    backend: Recorder, router_factory: RouterFactory
) -> None:
    router = await router_factory([backend.url], idle_timeout=0.5, max_connections=4)
    idle = await _open_idle(router.url, 3)
    host, port = router.url.removeprefix("http://").split(":")
    slow_reader, slow_writer = await asyncio.open_connection(host, int(port))
    over = await raw_exchange(router.url, post("/v1/chat/completions"))  # the 5th connection
    assert over.status == 503
    assert "too many open connections" in over.error()["message"]
    for byte in b"POST /v1/chat/completions HTTP/1.1\r\n":  # a slowloris head, 1 byte / 50 ms
        try:
            slow_writer.write(bytes([byte]))
            await slow_writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(0.05)
    for reader, _ in [*idle, (slow_reader, slow_writer)]:
        assert await closed(reader)
    metrics = await scrape(router.url)
    assert 'llmsvc_router_client_timeouts_total{phase="idle"} 4.0' in metrics
    assert "llmsvc_router_connections_rejected_total 1.0" in metrics
    assert (await raw_exchange(router.url, post("/v1/chat/completions"))).status == 200


async def test_a_body_that_trickles_in_gets_408(
    backend: Recorder, router_factory: RouterFactory
) -> None:
    router = await router_factory([backend.url], body_timeout=0.5)
    partial = post("/v1/chat/completions")[:-5]
    answer = await raw_exchange(router.url, partial)
    assert answer.status == 408
    assert "did not arrive within 0.5 s" in answer.error()["message"]
    assert 'llmsvc_router_client_timeouts_total{phase="body"} 1.0' in await scrape(router.url)
    assert backend.seen == []
