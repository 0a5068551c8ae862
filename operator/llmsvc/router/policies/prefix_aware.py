"""Prefix-aware routing: send a prompt where its prefix was sent before, within a load bound.

The policy remembers, per backend, the chained hashes of the prompt blocks it routed there
(a bounded LRU, an approximation of that backend's prefix cache). A request goes to the
backend holding its longest leading run of blocks, but only among backends whose load (the
engine's scraped requests when fresh, else this router's in flight) is within the bound
``max(ceil(balance_factor * mean load), min load + balance_slack)``. A shared
system prompt matches everywhere, so it cannot pull all traffic to one backend: ties on the
match go to the least loaded backend, then to a rendezvous hash of the first block so that
concurrent first requests for a new prefix agree.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

from llmsvc.router.policies.base import Endpoint, RequestInfo, Snapshot, stable_hash


def prompt_blocks(text: str, block_chars: int, max_blocks: int) -> list[int]:
    """Chained hashes of the full ``block_chars``-character blocks of ``text``."""
    hashes: list[int] = []
    previous = 0
    for start in range(0, min(len(text), block_chars * max_blocks), block_chars):
        block = text[start : start + block_chars]
        if len(block) < block_chars:
            break
        previous = stable_hash(str(previous), block)
        hashes.append(previous)
    return hashes


class BlockHistory:
    """A bounded LRU of block hashes routed to one backend."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def match(self, blocks: Sequence[int]) -> int:
        """How many leading ``blocks`` this backend was sent."""
        count = 0
        for block in blocks:
            if block not in self._blocks:
                break
            count += 1
        return count

    def add(self, blocks: Sequence[int]) -> None:
        """Record ``blocks`` as most recently routed here; forget the oldest beyond capacity."""
        for block in blocks:
            self._blocks[block] = None
            self._blocks.move_to_end(block)
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)


class PrefixAware:
    """Longest remembered prefix wins among backends within the load bound."""

    name = "prefix-aware"

    def __init__(
        self,
        block_chars: int = 128,
        max_blocks: int = 512,
        history_blocks: int = 65536,
        balance_factor: float = 1.5,
        balance_slack: int = 8,
    ) -> None:
        self.block_chars = block_chars
        self.max_blocks = max_blocks
        self.history_blocks = history_blocks
        self.balance_factor = balance_factor
        self.balance_slack = balance_slack
        self._history: dict[str, BlockHistory] = {}

    def load_bound(self, candidates: Sequence[Endpoint]) -> int:
        """The most load (requests in the engine) a backend may have and still win on affinity."""
        loads = [e.load for e in candidates]
        mean_after = (sum(loads) + 1) / len(loads)
        return max(math.ceil(self.balance_factor * mean_after), min(loads) + self.balance_slack)

    def pick(self, snapshot: Snapshot, request: RequestInfo) -> Endpoint | None:
        """The eligible endpoint that most likely holds the prompt's prefix, within the bound."""
        candidates = snapshot.eligible()
        if not candidates:
            return None
        blocks = prompt_blocks(request.prompt, self.block_chars, self.max_blocks)
        bound = self.load_bound(candidates)
        allowed = [e for e in candidates if e.load < bound] or list(candidates)
        first = str(blocks[0]) if blocks else request.prompt[: self.block_chars]
        chosen = max(allowed, key=lambda e: self._score(e, blocks, first))
        self._history_of(chosen.url).add(blocks)
        if len(self._history) > 2 * len(snapshot.endpoints):
            self._forget_except({e.url for e in snapshot.endpoints})
        return chosen

    def _forget_except(self, urls: set[str]) -> None:
        for url in [u for u in self._history if u not in urls]:
            del self._history[url]

    def _score(self, endpoint: Endpoint, blocks: Sequence[int], first: str) -> tuple[int, int, int]:
        history = self._history.get(endpoint.url)
        matched = history.match(blocks) if history else 0
        return (matched, -endpoint.load, stable_hash(endpoint.url, first))

    def _history_of(self, url: str) -> BlockHistory:
        if url not in self._history:
            self._history[url] = BlockHistory(self.history_blocks)
        return self._history[url]

    def remembered(self, url: str) -> int:
        """How many blocks are remembered for ``url`` (for tests and debugging)."""
        history = self._history.get(url)
        return len(history) if history else 0
