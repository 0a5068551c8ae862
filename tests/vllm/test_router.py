"""``llmsvc router`` (the real CLI, one process per policy) in front of two real vLLM servers:
every policy, streaming, and a client disconnect that stops generation in vLLM."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from llmsvc.probe.rank_check import metric_sums
from llmsvc.router.main import POLICIES
from llmsvc.router.server import free_port
from tests.vllm import engine
from tests.vllm.engine import Rank

FINISHED = ("vllm:request_success_total",)


def finished(server: Rank) -> float:
    return metric_sums(engine.get(f"{server.url}/metrics")[1], FINISHED)[FINISHED[0]]


def gauge(servers: list[Rank], name: str) -> float:
    """``name`` summed over every server."""
    return sum(metric_sums(engine.get(f"{s.url}/metrics")[1], (name,))[name] for s in servers)


RUNNING, GENERATED = "vllm:num_requests_running", "vllm:generation_tokens_total"


@pytest.fixture(scope="module")
def routers(single_servers: list[Rank], engine_logs: Path) -> Iterator[dict[str, str]]:
    """One `llmsvc router` per policy over both servers: policy -> base URL."""
    procs, urls = [], {}
    backends = [arg for s in single_servers for arg in ("--backend", s.url)]
    for policy in POLICIES:
        port = free_port()
        log = (engine_logs / f"router-{policy}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "llmsvc.cli", "router", *backends, "--policy", policy,
                 "--host", "127.0.0.1", "--port", str(port), "--health-interval", "1"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        urls[policy] = f"http://127.0.0.1:{port}"
    try:
        for url in urls.values():
            wait_router(url, len(single_servers))
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def wait_router(url: str, backends: int) -> None:
    for _ in range(120):
        healthy = router_gauges(engine.get(f"{url}/metrics")[1], "llmsvc_router_backend_healthy")
        if sum(value == 1.0 for value in healthy) >= backends:
            return
        time.sleep(0.5)
    raise AssertionError(f"router {url} never saw {backends} healthy backends")


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def ask(url: str, content: str, headers: dict[str, str] | None = None) -> None:
    reply = client(url).chat.completions.create(
        model=engine.MODEL_NAME,
        messages=[{"role": "user", "content": content}],
        max_tokens=4,
        extra_headers=headers,
    )
    assert reply.usage is not None
    assert reply.usage.completion_tokens > 0


def wait_idle(url: str, backends: int) -> None:
    """Wait until the router at ``url`` sees every backend idle on a fresh engine scrape.

    A scrape taken during the previous test's burst stays in use for up to a second; a
    policy that balances on it rightly avoids the backend it shows busy.
    """
    for _ in range(60):
        text = engine.get(f"{url}/metrics")[1]  # one read: both gauges of the same instant
        loads = router_gauges(text, "llmsvc_router_backend_load")
        fresh = router_gauges(text, "llmsvc_router_backend_load_scraped")
        if len(loads) == backends and not any(loads) and all(fresh):
            return
        time.sleep(0.25)
    raise AssertionError(f"router {url} never saw its {backends} backends idle")


def router_gauges(text: str, name: str) -> list[float]:
    """The per-backend samples of gauge ``name`` in a router's /metrics ``text``."""
    lines = text.splitlines()
    return [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name + "{")]


def spread(servers: list[Rank], send: list[tuple[str, dict[str, str]]], url: str) -> list[float]:
    """Requests each server finished while ``send`` went through the router (concurrently)."""
    wait_idle(url, len(servers))
    before = [finished(s) for s in servers]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda item: ask(url, *item), send))
    return [finished(s) - b for s, b in zip(servers, before, strict=True)]


def test_round_robin_and_least_request_use_both_servers(
    routers: dict[str, str], single_servers: list[Rank]
) -> None:
    for policy in ("round-robin", "least-request"):
        counts = spread(single_servers, [(f"q{i}", {}) for i in range(8)], routers[policy])
        assert sum(counts) == 8, f"{policy}: {counts}"
        assert min(counts) >= 1, f"{policy}: {counts}"


def test_session_policy_sticks_to_one_server(
    routers: dict[str, str], single_servers: list[Rank]
) -> None:
    send = [(f"turn {i}", {"x-session-id": "alice"}) for i in range(6)]
    counts = spread(single_servers, send, routers["session"])
    assert sorted(counts) == [0, 6]


def test_prefix_aware_keeps_a_shared_prefix_on_one_server(
    routers: dict[str, str], single_servers: list[Rank]
) -> None:
    prefix = "You are a helpful assistant. " * 40  # a few KV blocks of shared prefix
    counts = [0.0, 0.0]
    for i in range(6):  # one at a time: no load imbalance to override the affinity
        step = spread(single_servers, [(f"{prefix} question {i}", {})], routers["prefix-aware"])
        counts = [c + s for c, s in zip(counts, step, strict=True)]
    assert sorted(counts) == [0, 6]


def test_streaming_through_the_router(routers: dict[str, str]) -> None:
    stream = client(routers["least-request"]).chat.completions.create(
        model=engine.MODEL_NAME,
        messages=[{"role": "user", "content": "stream please"}],
        max_tokens=12,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    chunks = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(chunks) >= 2


def disconnected_generation(routers: dict[str, str], servers: list[Rank], max_tokens: int) -> float:
    """Tokens vLLM generated for a streamed request whose client left after the first event."""
    before = gauge(servers, GENERATED)
    stream = client(routers["round-robin"]).chat.completions.create(
        model=engine.MODEL_NAME,
        messages=[{"role": "user", "content": "a long answer"}],
        max_tokens=max_tokens,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    next(iter(stream))  # the first event: generation is under way
    assert gauge(servers, RUNNING) == 1
    stream.close()  # the client goes away
    deadline = time.monotonic() + 20
    while gauge(servers, RUNNING) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gauge(servers, RUNNING) == 0, "vLLM kept generating"
    return gauge(servers, GENERATED) - before


def test_client_disconnect_stops_generation_in_vllm(
    routers: dict[str, str], single_servers: list[Rank]
) -> None:
    # The tiny model can make all its tokens before the abort arrives on a loaded machine, so
    # up to three tries; without the abort every try makes them all and the test fails.
    max_tokens = engine.MAX_MODEL_LEN - 64
    made = []
    for _ in range(3):
        made.append(disconnected_generation(routers, single_servers, max_tokens))
        if made[-1] < max_tokens:
            break
    assert made[-1] < max_tokens, f"{made} tokens made of {max_tokens}: the abort came too late"
