"""The simulated prefix cache: chained block hashes and a bounded LRU."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmsvc.sim.cache import PrefixCache, block_hashes


def test_only_full_blocks_are_hashed_and_hashes_chain() -> None:
    tokens = [f"t{i}" for i in range(40)]
    hashes = block_hashes(tokens, 16)
    assert len(hashes) == 2
    changed = block_hashes(["x", *tokens[1:]], 16)
    assert changed[0] != hashes[0]
    assert changed[1] != hashes[1]


def test_lookup_counts_leading_hits_only() -> None:
    cache = PrefixCache(100)
    a = block_hashes([f"a{i}" for i in range(64)], 16)
    cache.insert(a[:2])
    assert cache.lookup(a) == 2
    assert cache.lookup([a[2], a[0]]) == 0


def test_least_recently_used_blocks_are_evicted() -> None:
    cache = PrefixCache(4)
    old = block_hashes([f"o{i}" for i in range(32)], 16)
    new = block_hashes([f"n{i}" for i in range(48)], 16)
    cache.insert(old)
    cache.lookup(old[:1])
    cache.insert(new)
    assert len(cache) == 4
    assert cache.lookup(new) == 3
    assert cache.lookup(old) == 1


@settings(max_examples=50, deadline=None)
@given(capacity=st.integers(1, 20), sizes=st.lists(st.integers(0, 200), max_size=20))
def test_cache_never_exceeds_capacity(capacity: int, sizes: list[int]) -> None:
    cache = PrefixCache(capacity)
    for n, size in enumerate(sizes):
        cache.insert(block_hashes([f"{n}-{i}" for i in range(size)], 8))
        assert len(cache) <= capacity
        assert 0.0 <= cache.usage() <= 1.0
