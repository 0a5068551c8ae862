"""The simulator's latency model: queueing, prefix-cache misses and batch size all cost time."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmsvc.sim.engine import Engine, NullObserver, SimConfig, tokenize

PROMPT = " ".join(f"w{i}" for i in range(400))


async def run_one(engine: Engine, prompt: str, max_tokens: int = 3) -> tuple[float, list[str]]:
    """(seconds to the first token, the tokens)."""
    start = time.monotonic()
    first = 0.0
    out: list[str] = []
    async for word in engine.generate("r", prompt, tokenize(prompt), max_tokens):
        if not out:
            first = time.monotonic() - start
        out.append(word)
    return first, out


async def test_outputs_are_deterministic_for_a_seed() -> None:
    a, b, c = (Engine(SimConfig(seed=s, itl_base_ms=0)) for s in (7, 7, 8))
    assert (await run_one(a, "hello", 8))[1] == (await run_one(b, "hello", 8))[1]
    assert (await run_one(a, "hello", 8))[1] != (await run_one(c, "hello", 8))[1]


async def test_a_cached_prefix_makes_the_first_token_faster() -> None:
    engine = Engine(SimConfig(prefill_ms_per_token=0.5, prefill_base_ms=0, itl_base_ms=0))
    cold, _ = await run_one(engine, PROMPT)
    warm, _ = await run_one(engine, PROMPT + " and one more question")
    assert cold >= 0.2  # 400 uncached tokens x 0.5 ms
    assert warm < cold / 2  # 16 uncached tokens: 8 ms plus scheduling
    assert engine.stats.prefix_hits >= 384
    assert engine.stats.prefix_queries == 800 + 4


async def test_requests_beyond_max_num_seqs_wait() -> None:
    engine = Engine(SimConfig(max_num_seqs=2, itl_base_ms=20, prefill_base_ms=0))
    tasks = [asyncio.create_task(run_one(engine, f"p{i}", 3)) for i in range(4)]
    await asyncio.sleep(0.01)
    assert (engine.stats.running, engine.stats.waiting) == (2, 2)
    results = await asyncio.gather(*tasks)
    firsts = sorted(first for first, _ in results)
    assert firsts[2] >= 0.035  # waited for two decode steps of a running request
    assert (engine.stats.running, engine.stats.waiting, engine.stats.finished) == (0, 0, 4)


class Recorder(NullObserver):
    """Keeps the inter-token latencies the engine charged."""

    def __init__(self) -> None:
        self.itls: list[float] = []

    def itl(self, seconds: float) -> None:
        self.itls.append(seconds)


async def test_a_bigger_batch_decodes_slower() -> None:
    config = SimConfig(max_num_seqs=64, itl_base_ms=1, itl_ms_per_seq=0.5, prefill_base_ms=0)
    alone, crowded = Recorder(), Recorder()
    await run_one(Engine(config, alone), "x", 10)
    engine = Engine(config, crowded)
    await asyncio.gather(*(run_one(engine, f"x{i}", 10) for i in range(40)))
    assert max(alone.itls) == pytest.approx(0.0015)  # 1 ms + 0.5 ms x 1 running
    assert max(crowded.itls) == pytest.approx(0.021)  # 1 ms + 0.5 ms x 40 running


async def test_closing_the_stream_early_counts_an_abort() -> None:
    engine = Engine(SimConfig(itl_base_ms=1))
    stream = engine.generate("req-1", "p", ["p"], 50)
    assert await anext(stream)
    await stream.aclose()
    assert engine.stats.aborted == 1
    assert engine.stats.aborted_ids == ["req-1"]
    assert engine.stats.running == 0


async def test_cancelled_while_waiting_frees_the_queue() -> None:
    engine = Engine(SimConfig(max_num_seqs=1, itl_base_ms=50))
    busy = asyncio.create_task(run_one(engine, "a", 3))
    queued = asyncio.create_task(run_one(engine, "b", 3))
    await asyncio.sleep(0.01)
    assert engine.stats.waiting == 1
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    await busy
    assert (engine.stats.waiting, engine.stats.running, engine.stats.aborted) == (0, 0, 1)
