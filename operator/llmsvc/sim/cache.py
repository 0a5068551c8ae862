"""The simulated prefix cache: token blocks hashed in a chain, kept in a bounded LRU.

Like vLLM's automatic prefix caching, only full blocks are cached and a block's hash covers
every token before it, so a hit on block ``i`` implies hits on blocks ``0..i-1``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence


def block_hashes(tokens: Sequence[str], block_size: int) -> list[bytes]:
    """Chained hashes of the full ``block_size``-token blocks of ``tokens``."""
    hashes: list[bytes] = []
    previous = b""
    for start in range(0, len(tokens) - block_size + 1, block_size):
        block = "\x00".join(tokens[start : start + block_size]).encode()
        previous = hashlib.blake2b(previous + block, digest_size=12).digest()
        hashes.append(previous)
    return hashes


class PrefixCache:
    """A bounded LRU of block hashes; ``capacity_blocks`` is the simulated KV cache size."""

    def __init__(self, capacity_blocks: int) -> None:
        if capacity_blocks < 1:
            raise ValueError("capacity_blocks must be at least 1")
        self.capacity_blocks = capacity_blocks
        self._blocks: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def lookup(self, hashes: Sequence[bytes]) -> int:
        """Number of leading blocks of ``hashes`` already cached (touched as recently used)."""
        hits = 0
        for digest in hashes:
            if digest not in self._blocks:
                break
            self._blocks.move_to_end(digest)
            hits += 1
        return hits

    def insert(self, hashes: Sequence[bytes]) -> None:
        """Cache ``hashes`` as most recently used; evict the least recently used beyond capacity."""
        for digest in hashes:
            self._blocks[digest] = None
            self._blocks.move_to_end(digest)
        while len(self._blocks) > self.capacity_blocks:
            self._blocks.popitem(last=False)

    def usage(self) -> float:
        """Fraction of the capacity in use, 0..1."""
        return len(self._blocks) / self.capacity_blocks
