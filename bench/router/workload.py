"""Pure workload generation for the router benchmark: tenants, sessions, Poisson arrivals.

Every tenant has a long system prompt shared by all its sessions; a session is a chat that
grows turn by turn (each turn's prompt extends the previous one). The schedule is computed
up front from a seed, so every target in one run receives exactly the same requests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

WORDS = [
    "cluster",
    "node",
    "replica",
    "tensor",
    "pipeline",
    "cache",
    "token",
    "prefix",
    "router",
    "queue",
    "latency",
    "batch",
    "gpu",
    "memory",
    "kernel",
    "shard",
    "rank",
    "stream",
    "request",
    "policy",
    "health",
    "metric",
    "scale",
    "session",
]


@dataclass(frozen=True)
class Planned:
    """One request of the schedule: when to send it, its session and its chat messages."""

    at: float
    session: str
    messages: tuple[dict[str, str], ...]


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def system_prompts(tenants: int, words: int, seed: int) -> list[str]:
    """One long, distinct system prompt per tenant."""
    rng = random.Random(seed)  # noqa: S311 - a benchmark, not crypto
    return [f"You are the assistant of tenant {t}. " + _words(rng, words) for t in range(tenants)]


def poisson_times(rate: float, duration: float, rng: random.Random) -> list[float]:
    """Arrival times of a Poisson process with ``rate`` per second over ``duration`` seconds."""
    times: list[float] = []
    now = 0.0
    while True:
        now += rng.expovariate(rate)
        if now >= duration:
            return times
        times.append(now)


@dataclass
class _Session:
    name: str
    tenant: int
    history: list[dict[str, str]]
    turns: int = 0


def schedule(
    rate: float,
    duration: float,
    seed: int,
    *,
    tenants: int = 16,
    system_words: int = 1200,
    turn_words: int = 40,
    max_turns: int = 6,
    live_sessions: int = 48,
) -> list[Planned]:
    """The requests of one run: Poisson arrivals, each the next turn of a random live session."""
    rng = random.Random(seed * 1000 + int(rate * 10))  # noqa: S311
    prompts = system_prompts(tenants, system_words, seed)
    counter = 0

    def new_session() -> _Session:
        nonlocal counter
        counter += 1
        tenant = rng.randrange(tenants)
        return _Session(f"s{counter}", tenant, [{"role": "system", "content": prompts[tenant]}])

    sessions = [new_session() for _ in range(live_sessions)]
    planned = []
    for at in poisson_times(rate, duration, rng):
        i = rng.randrange(live_sessions)
        session = sessions[i]
        session.history.append({"role": "user", "content": _words(rng, turn_words)})
        planned.append(Planned(at, session.name, tuple(session.history)))
        session.history.append({"role": "assistant", "content": _words(rng, turn_words)})
        session.turns += 1
        if session.turns >= max_turns:
            sessions[i] = new_session()
    return planned


def chat_body(messages: tuple[dict[str, str], ...], max_tokens: int) -> dict[str, Any]:
    """The streaming chat request body sent for one planned request."""
    return {
        "model": "sim-model",
        "messages": list(messages),
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
