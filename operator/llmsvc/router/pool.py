"""Live backend state: in-flight counts, health, passive ejection (a circuit breaker).

The pool is the only mutable view of the backends. Policies never see it: they get an
immutable ``Snapshot`` built here per decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from llmsvc.router.config import RouterConfig
from llmsvc.router.policies import Endpoint, Snapshot


@dataclass
class Backend:
    """Mutable state of one backend."""

    url: str
    in_flight: int = 0
    healthy: bool = True
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    models: frozenset[str] = frozenset()

    def usable(self, now: float) -> bool:
        """Healthy and not ejected (capacity aside)."""
        return self.healthy and now >= self.ejected_until


class Pool:
    """The set of backends and their state; ``on_change`` fires when capacity may have appeared."""

    def __init__(self, config: RouterConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self.backends: dict[str, Backend] = {}
        self.listeners: list[Callable[[], None]] = []

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    def set_urls(self, urls: Iterable[str]) -> None:
        """Replace the backend set; known backends keep their state."""
        wanted = set(urls)
        for url in set(self.backends) - wanted:
            del self.backends[url]
        for url in wanted - set(self.backends):
            self.backends[url] = Backend(url)
        self._changed()

    def snapshot(self, exclude: frozenset[str] = frozenset()) -> Snapshot:
        """An immutable view for one decision; ``exclude`` holds URLs already tried."""
        now = self._clock()
        limit = self.config.max_concurrency
        return Snapshot.of(
            [
                Endpoint(
                    b.url,
                    b.in_flight,
                    b.usable(now) and b.in_flight < limit and b.url not in exclude,
                )
                for b in self.backends.values()
            ]
        )

    def any_usable(self, exclude: frozenset[str] = frozenset()) -> bool:
        """Whether some backend could take a request once it has capacity."""
        now = self._clock()
        return any(b.usable(now) and b.url not in exclude for b in self.backends.values())

    def snapshot_usable(self, url: str) -> bool:
        """Whether ``url`` is healthy and not ejected now."""
        backend = self.backends.get(url)
        return backend is not None and backend.usable(self._clock())

    def tick(self) -> None:
        """Time passed (ejections may have expired): let waiters retry."""
        self._changed()

    def begin(self, url: str) -> None:
        """A request was sent to ``url``."""
        if url in self.backends:
            self.backends[url].in_flight += 1

    def end(self, url: str) -> None:
        """A request to ``url`` finished (any outcome)."""
        if url in self.backends:
            self.backends[url].in_flight -= 1
        self._changed()

    def succeeded(self, url: str) -> None:
        """``url`` answered without a server error: close its circuit."""
        backend = self.backends.get(url)
        if backend:
            backend.failures = 0
            backend.ejections = 0

    def failed(self, url: str, hard: bool = False) -> None:
        """``url`` failed; eject it after ``failure_threshold`` failures (at once when ``hard``)."""
        backend = self.backends.get(url)
        if backend is None:
            return
        backend.failures = self.config.failure_threshold if hard else backend.failures + 1
        if backend.failures >= self.config.failure_threshold:
            delay = self.config.eject_base_seconds * 2**backend.ejections
            backend.ejected_until = self._clock() + min(delay, self.config.eject_max_seconds)
            backend.ejections += 1
            backend.failures = 0

    def set_health(self, url: str, healthy: bool, models: frozenset[str] | None = None) -> None:
        """Record an active health check result."""
        backend = self.backends.get(url)
        if backend is None:
            return
        was = backend.usable(self._clock())
        backend.healthy = healthy
        if models is not None:
            backend.models = models
        if healthy and not was:
            self._changed()

    def models(self) -> frozenset[str]:
        """Models any backend reported serving (empty when unknown)."""
        return frozenset().union(*(b.models for b in self.backends.values()))
