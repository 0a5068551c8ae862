"""What both autoscaling e2e files (loopback fleet and real node) ask of a cluster: the operator
serving the metrics API, the served queue, a load of concurrent clients, and checks on the HPA,
the replica sequence and the LLMService's status.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import aiohttp

from e2e.autoscale_harness import (
    APISERVICE,
    METRICS_SERVICE,
    queue_path,
    raw,
    register_metrics_api,
    unregister_metrics_api,
)
from e2e.helpers import kubectl_json, wait_for
from e2e.operator_process import OperatorProcess
from llmsvc.router.server import free_port


@contextmanager
def metrics_api(namespace: str, env: dict[str, str] | None = None) -> Iterator[OperatorProcess]:
    """The operator (metrics API on, ``namespace`` only) as a local process, registered as the
    APIService; unregistered and stopped afterwards."""
    port = free_port()
    operator = OperatorProcess(
        namespaces=(namespace,),
        extra_args=(
            f"--metrics-api-address=127.0.0.1:{port}",
            f"--metrics-api-service={METRICS_SERVICE}",
            f"--metrics-api-namespace={namespace}",
            f"--metrics-api-apiservice={APISERVICE}",
            "--scrape-interval=0.5",
        ),
        env=env,
    )
    register_metrics_api(namespace, port)
    operator.start()
    try:
        wait_for(_available, timeout=60, what=f"APIService Available (log: {operator.log})")
        yield operator
    finally:
        unregister_metrics_api()
        operator.stop()


def _available() -> bool:
    api = kubectl_json("get", "apiservice", APISERVICE)
    conditions = api.get("status", {}).get("conditions") or []
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


def queue_value(namespace: str, name: str) -> float | None:
    """The served queue, or None when the API answers an error (missing data)."""
    code, body = raw(queue_path(namespace, name))
    if code != 0 or not body.get("items"):
        return None
    text = body["items"][0]["value"]
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def missing(namespace: str, name: str) -> dict[str, Any] | None:
    """The metrics API's error body for the service's queue, None while it serves a value."""
    code, body = raw(queue_path(namespace, name))
    return body if code != 0 else None


class Answer(NamedTuple):
    """One completion's HTTP status and, when it failed, the router's error message."""

    status: int
    error: str = ""


async def complete(session: aiohttp.ClientSession, url: str, tokens: int) -> Answer:
    """One completion through ``url``."""
    body = {"model": "demo", "prompt": "hello", "max_tokens": tokens}
    async with session.post(f"{url}/v1/completions", json=body) as response:
        text = await response.text(errors="replace")
        return Answer(response.status, "" if response.status == 200 else text[:200])


async def load(url: str, concurrency: int, seconds: float, tokens: int = 25) -> list[Answer]:
    """``concurrency`` clients sending requests back to back for ``seconds``: their answers."""
    answers: list[Answer] = []
    deadline = asyncio.get_running_loop().time() + seconds
    timeout = aiohttp.ClientTimeout(total=120)

    async def client(session: aiohttp.ClientSession) -> None:
        while asyncio.get_running_loop().time() < deadline:
            answers.append(await complete(session, url, tokens))

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return answers


async def burst(url: str, n: int) -> list[int]:
    """``n`` requests at once (5 tokens each): their statuses."""
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        answers = await asyncio.gather(*(complete(session, url, 5) for _ in range(n)))
    return [a.status for a in answers]


def lost(answers: list[Answer]) -> Counter[Answer]:
    """The failed answers, counted (empty when every request got a 200)."""
    return Counter(a for a in answers if a.status != 200)


def unimodal(sequence: list[int]) -> bool:
    """Goes up (or stays), then down (or stays): no flapping."""
    peak = sequence.index(max(sequence))
    up, down = sequence[: peak + 1], sequence[peak:]
    return up == sorted(up) and down == sorted(down, reverse=True)


def hpa_condition(namespace: str, name: str, kind: str, status: str) -> dict[str, Any] | None:
    """The HPA's condition ``kind`` when it has ``status``, else None."""
    hpa = kubectl_json("get", "hpa", name, "-n", namespace)
    for condition in hpa.get("status", {}).get("conditions") or []:
        if condition["type"] == kind and condition["status"] == status:
            return dict(condition)
    return None


def ready_reason(namespace: str, name: str) -> str:
    """The reason of the LLMService's Ready condition ("" before there is one)."""
    svc = kubectl_json("get", "llmservice", name, "-n", namespace)
    ready = [c for c in svc.get("status", {}).get("conditions") or [] if c["type"] == "Ready"]
    return str(ready[0]["reason"]) if ready else ""


def engine_pods(namespace: str, name: str) -> list[dict[str, Any]]:
    """The engine pods of the LLMService (every rank)."""
    selector = f"llmsvc.io/name={name},app.kubernetes.io/component=engine"
    found = kubectl_json("get", "pods", "-n", namespace, "-l", selector)
    items: list[dict[str, Any]] = found["items"]
    return items
