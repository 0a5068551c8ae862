"""The survivors of a full collection are frozen (later full collections skip them), what the
caches drop is still freed at once, and a thaw lets cyclic garbage among them be collected."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from llmsvc.controller import heap


class Node:
    """A container object the collector tracks (and a weakref can watch)."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def frozen_heap() -> Iterator[None]:
    heap.uninstall()
    heap.install()
    yield
    heap.uninstall()


def test_a_full_collection_freezes_its_survivors_only(frozen_heap: None) -> None:
    cached = {"pod": Node()}
    gc.collect()  # a full collection: it and everything else alive are frozen
    frozen = gc.get_freeze_count()
    assert frozen > 0
    assert not any(o is cached for o in gc.get_objects(generation=2))  # not scanned any more
    young = {"pod": Node()}  # allocated after the freeze: collected as usual
    assert any(o is young for o in gc.get_objects())
    gone = weakref.ref(cached["pod"])
    cached["pod"] = Node()  # the cache replaces it: reference counting frees it at once
    assert gone() is None


def test_a_cycle_among_frozen_objects_waits_for_the_thaw(frozen_heap: None) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    gc.collect()
    watch = weakref.ref(a)
    del a, b
    gc.collect()
    assert watch() is not None  # frozen: no collection looks at it
    gc.unfreeze()  # what thaw_forever does every THAW_SECONDS
    gc.collect()
    assert watch() is None


async def test_thaw_forever_hands_the_frozen_heap_back(frozen_heap: None) -> None:
    gc.collect()
    assert gc.get_freeze_count() > 0
    thaw = asyncio.create_task(heap.thaw_forever(every=0.01))
    await asyncio.sleep(0.05)
    thaw.cancel()
    assert gc.get_freeze_count() == 0


def test_install_is_idempotent_and_uninstall_unfreezes(frozen_heap: None) -> None:
    heap.install()
    assert gc.callbacks.count(heap.freeze_survivors) == 1
    gc.collect()
    heap.uninstall()
    assert heap.freeze_survivors not in gc.callbacks
    assert gc.get_freeze_count() == 0
