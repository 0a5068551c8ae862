"""The simulated engine: a bounded running batch, a FIFO waiting queue, prefill and decode.

Costs are asyncio sleeps, never CPU, so one process holds hundreds of streams:

* at most ``max_num_seqs`` requests run; the rest wait (``vllm:num_requests_waiting``);
* prefill runs one request at a time and costs ``prefill_base_ms`` plus
  ``prefill_ms_per_token`` for every prompt token NOT found in this instance's prefix cache;
* each further token costs ``itl_base_ms + itl_ms_per_seq * running``: bigger batches decode slower.

Outputs are deterministic for a seed and a prompt.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from llmsvc.sim.cache import PrefixCache, block_hashes

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "it",
    "for",
    "on",
    "with",
    "as",
    "was",
    "at",
    "by",
    "an",
    "be",
    "this",
    "from",
    "or",
    "are",
    "model",
    "token",
    "cache",
    "queue",
    "batch",
    "node",
    "rank",
    "prefix",
    "stream",
    "router",
    "engine",
    "kernel",
    "tensor",
]


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes the simulator's behaviour (the ``llmsvc sim`` flags)."""

    model: str = "sim-model"
    max_num_seqs: int = 64
    load_seconds: float = 0.0
    seed: int = 0
    block_size: int = 16
    kv_cache_tokens: int = 262144
    max_model_len: int = 8192
    default_max_tokens: int = 16
    prefill_base_ms: float = 1.0
    prefill_ms_per_token: float = 0.05
    itl_base_ms: float = 10.0
    itl_ms_per_seq: float = 0.05


@dataclass
class SimStats:
    """Counters the simulator keeps; exported on ``/metrics`` and ``/sim/stats``."""

    started: int = 0
    finished: int = 0
    aborted: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_queries: int = 0
    prefix_hits: int = 0
    running: int = 0
    waiting: int = 0
    aborted_ids: list[str] = field(default_factory=list)


class Observer(Protocol):
    """Receives latency observations (the metrics layer implements it)."""

    def ttft(self, seconds: float) -> None: ...

    def itl(self, seconds: float) -> None: ...

    def e2e(self, seconds: float) -> None: ...


class NullObserver:
    """Discards observations."""

    def ttft(self, seconds: float) -> None:
        """Ignore."""

    def itl(self, seconds: float) -> None:
        """Ignore."""

    def e2e(self, seconds: float) -> None:
        """Ignore."""


def tokenize(text: str) -> list[str]:
    """Whitespace tokens: good enough for a latency model."""
    return text.split()


class Engine:
    """One simulated vLLM engine."""

    def __init__(self, config: SimConfig, observer: Observer | None = None) -> None:
        self.config = config
        self.stats = SimStats()
        self.cache = PrefixCache(max(1, config.kv_cache_tokens // config.block_size))
        self._slots = asyncio.Semaphore(config.max_num_seqs)
        self._prefill = asyncio.Lock()
        self._observer = observer or NullObserver()

    def output_words(self, prompt: str, count: int) -> list[str]:
        """The deterministic completion for ``prompt`` under this engine's seed."""
        rng = random.Random(f"{self.config.seed}\x00{prompt}")  # noqa: S311 - not crypto
        return [rng.choice(WORDS) for _ in range(count)]

    async def generate(
        self, request_id: str, prompt: str, tokens: Sequence[str], max_tokens: int
    ) -> AsyncGenerator[str, None]:
        """Yield ``max_tokens`` words with simulated timing; an early close counts as an abort."""
        start = time.monotonic()
        produced = 0
        self.stats.started += 1
        try:
            await self._wait_for_slot()
            self.stats.running += 1
            try:
                await self._prefill_prompt(tokens)
                self._observer.ttft(time.monotonic() - start)
                for word in self.output_words(prompt, max_tokens):
                    if produced:
                        await self._decode_step()
                    produced += 1
                    self.stats.generation_tokens += 1
                    yield word
            finally:
                self.stats.running -= 1
                self._slots.release()
        except BaseException:
            self._record_abort(request_id, produced, max_tokens)
            raise
        self.stats.finished += 1
        self._observer.e2e(time.monotonic() - start)

    async def _wait_for_slot(self) -> None:
        self.stats.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.stats.waiting -= 1

    def _record_abort(self, request_id: str, produced: int, max_tokens: int) -> None:
        if produced < max_tokens:
            self.stats.aborted += 1
            self.stats.aborted_ids = [*self.stats.aborted_ids[-99:], request_id]

    async def _prefill_prompt(self, tokens: Sequence[str]) -> None:
        hashes = block_hashes(tokens, self.config.block_size)
        async with self._prefill:
            hit_tokens = self.cache.lookup(hashes) * self.config.block_size
            self.stats.prompt_tokens += len(tokens)
            self.stats.prefix_queries += len(tokens)
            self.stats.prefix_hits += hit_tokens
            missed = len(tokens) - hit_tokens
            cost = self.config.prefill_base_ms + missed * self.config.prefill_ms_per_token
            await asyncio.sleep(cost / 1000)
            self.cache.insert(hashes)

    async def _decode_step(self) -> None:
        cost = self.config.itl_base_ms + self.config.itl_ms_per_seq * self.stats.running
        await asyncio.sleep(cost / 1000)
        self._observer.itl(cost / 1000)
