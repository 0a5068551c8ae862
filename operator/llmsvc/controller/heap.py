"""How the operator's long-lived heap meets CPython's cyclic garbage collector.

The watch caches hold every child and engine pod as decoded JSON: at 1,000 LLMServices some
hundreds of thousands of dicts and lists, each kept until a newer version replaces it (then
freed by reference counting: decoded JSON has no cycles). A full collection scans all of them,
and CPython runs one whenever the objects that survived younger collections reach a quarter of
those that survived the last full one: while 1,000 LLMServices came up, ten full collections
took 0.05-0.6 s each (3.5 s in all), each one stalling the event loop, and one landing at rest
cost more than everything else the operator did in two minutes. Freezing brought them to
0.94 s in all, the longest 0.2 s (docs/benchmarks.md; the CPU until Ready did not move
measurably: the gain is shorter stalls).

So the survivors of each full collection are moved to the permanent generation
(:func:`gc.freeze`), which collections do not scan: the next full collection looks only at what
was allocated since. What the cache replaces is still freed at once by reference counting. Only
cyclic garbage among frozen objects would wait: every :data:`THAW_SECONDS` they are handed back
(:func:`gc.unfreeze`), and the next full collection scans the whole heap once and frees it.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

THAW_SECONDS = 3600.0


def freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    """A :data:`gc.callbacks` hook: after a full collection, freeze what survived it."""
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def install() -> None:
    """Freeze the survivors of every full collection from now on (idempotent)."""
    if freeze_survivors not in gc.callbacks:
        gc.callbacks.append(freeze_survivors)


def uninstall() -> None:
    """Stop freezing and hand every frozen object back to the collector."""
    while freeze_survivors in gc.callbacks:
        gc.callbacks.remove(freeze_survivors)
    gc.unfreeze()


async def thaw_forever(every: float = THAW_SECONDS) -> None:
    """Every ``every`` seconds, let the next full collection scan (and free) the frozen heap."""
    while True:
        await asyncio.sleep(every)
        gc.unfreeze()
