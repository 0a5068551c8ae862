"""In-flight accounting survives any sequence of discovery changes, admissions and releases."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llmsvc.router.admission import Admission
from llmsvc.router.config import RouterConfig
from llmsvc.router.policies import Endpoint, RequestInfo, make_policy
from llmsvc.router.pool import Pool

URLS = ("http://a:1", "http://b:1", "http://c:1")
LIMIT = 2

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("discover"), st.frozensets(st.sampled_from(URLS))),
        st.just(("start",)),
        st.tuples(st.just("finish"), st.integers(0, 50)),
        st.tuples(st.just("health"), st.sampled_from(URLS), st.booleans()),
    ),
    max_size=60,
)


class Model:
    """The pool and admission queue under test, and what really runs where."""

    def __init__(self) -> None:
        self.pool = Pool(RouterConfig(max_concurrency=LIMIT, queue_size=100))
        self.admission = Admission(self.pool, make_policy("least-request"))
        self.running: list[Endpoint] = []
        self.waiting: list[asyncio.Task[Endpoint]] = []

    async def apply(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "discover":
            self.pool.set_urls(step[1])
        elif kind == "start":
            task = asyncio.create_task(self.admission.admit(RequestInfo(), wait_s=30))
            self.waiting.append(task)
        elif kind == "finish" and self.running:
            self.admission.release(self.running.pop(step[1] % len(self.running)))
        elif kind == "health":
            self.pool.set_health(step[1], step[2])
        await self.settle()

    async def settle(self) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        done = [t for t in self.waiting if t.done()]
        self.waiting = [t for t in self.waiting if not t.done()]
        self.running += [t.result() for t in done if not t.exception()]

    def check(self) -> None:
        leaving = getattr(self.pool, "leaving", {})
        assert not set(leaving) & set(self.pool.backends)
        runs = Counter(e.url for e in self.running)
        for url in URLS:
            backend = self.pool.backends.get(url) or leaving.get(url)
            counted = backend.in_flight if backend is not None else 0
            assert counted == runs[url], (url, counted, runs[url])
            assert 0 <= counted <= LIMIT

    async def drain(self) -> None:
        for task in self.waiting:
            task.cancel()
        await asyncio.gather(*self.waiting, return_exceptions=True)
        while self.running:
            self.admission.release(self.running.pop())
        self.check()
        assert not getattr(self.pool, "leaving", {})
        assert all(b.in_flight == 0 for b in self.pool.backends.values())


@settings(max_examples=200, deadline=None)
@given(steps=STEPS)
def test_in_flight_matches_what_runs_through_any_discovery_sequence(
    steps: list[tuple[Any, ...]],
) -> None:
    async def scenario() -> None:
        model = Model()
        model.pool.set_urls(URLS)
        for step in steps:
            await model.apply(step)
            model.check()
        await model.drain()

    asyncio.run(scenario())


async def test_a_flapping_backend_keeps_its_concurrency_limit() -> None:
    """The issue's case: leave discovery with 2 running, come back, 2 more must wait."""
    model = Model()
    model.pool.set_urls([URLS[0]])
    for _ in range(2):
        await model.apply(("start",))
    model.pool.set_urls([])
    model.pool.set_urls([URLS[0]])
    for _ in range(2):
        await model.apply(("start",))
    assert len(model.running) == 2
    assert len(model.waiting) == 2
    model.check()
    await model.drain()
