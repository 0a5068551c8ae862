"""Live backend state: in-flight counts, health, passive ejection (a circuit breaker).

The pool is the only mutable view of the backends. Policies never see it: they get an
immutable ``Snapshot`` built here per decision.

In-flight counts survive discovery changes: a backend that leaves discovery while requests run
on it is kept aside (not routable) until they end, and taken back with its count if it
returns, so its ``--max-concurrency`` still holds and no count goes negative.

Ejection (passive health) counts one incident once: failures of requests sent before the
backend's latest ejection began do not extend it. A passing active health check that started at
least ``eject_base_seconds`` after an ejection began lifts it, so recovery follows ``/health``
within one check interval; a backend ejected ``FLAP_EJECTIONS`` times without a quiet period of
``eject_max_seconds`` in between is flapping and waits out its doubled ejection instead.

Engine load (``load.py`` scrapes each backend's ``/metrics``) enters the snapshot as the
engine's requests minus this router's in flight at scrape time (the other routers' share)
plus this router's in flight now; a missing or stale scrape leaves only the router's own count.

Changes of the backend set and ejections are logged (INFO, WARNING): with the health checks'
log lines they explain every "no healthy backend" answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from llmsvc.router.config import RouterConfig
from llmsvc.router.policies import Endpoint, Snapshot
from llmsvc.router.promtext import EngineLoad

FLAP_EJECTIONS = 3
log = logging.getLogger(__name__)


@dataclass
class Backend:
    """Mutable state of one backend."""

    url: str
    in_flight: int = 0
    healthy: bool = True
    check_failures: int = 0
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    ejected_at: float = float("-inf")
    models: frozenset[str] = frozenset()
    scraped: EngineLoad | None = None
    scraped_own: int = 0
    scraped_at: float = float("-inf")

    def usable(self, now: float) -> bool:
        """Healthy and not ejected (capacity aside)."""
        return self.healthy and now >= self.ejected_until


class Pool:
    """The set of backends and their state; ``on_change`` fires when capacity may have appeared."""

    def __init__(self, config: RouterConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self.backends: dict[str, Backend] = {}
        self.leaving: dict[str, Backend] = {}
        self.synced = False  # discovery has published its first backend set
        self.listeners: list[Callable[[], None]] = []
        self.down_listeners: list[Callable[[str], None]] = []
        self.set_listeners: list[Callable[[], None]] = []  # after each discovery update

    def now(self) -> float:
        """The pool's clock (monotonic seconds)."""
        return self._clock()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    def set_urls(self, urls: Iterable[str]) -> None:
        """Replace the backend set; known backends keep their state."""
        wanted, known = set(urls), set(self.backends)
        self.synced = True
        removed, added = known - wanted, wanted - known
        for url in removed:
            gone = self.backends.pop(url)
            if gone.in_flight:
                self.leaving[url] = gone
        for url in added:
            self.backends[url] = self.leaving.pop(url) if url in self.leaving else Backend(url)
        if added or removed:
            log.info(
                "backends: %d (added: %s; removed: %s)",
                len(self.backends),
                ", ".join(sorted(added)) or "none",
                ", ".join(sorted(removed)) or "none",
            )
        self._changed()
        for listener in self.set_listeners:
            listener()

    def snapshot(self, exclude: frozenset[str] = frozenset()) -> Snapshot:
        """An immutable view for one decision; ``exclude`` holds URLs already tried."""
        now = self._clock()
        limit = self.config.max_concurrency
        return Snapshot.of(
            [
                self._endpoint(b, b.usable(now) and b.in_flight < limit and b.url not in exclude)
                for b in self.backends.values()
            ]
        )

    def _endpoint(self, backend: Backend, eligible: bool) -> Endpoint:
        scraped = self.fresh_load(backend)
        if scraped is None:
            return Endpoint(backend.url, backend.in_flight, eligible)
        others = max(0, scraped.requests - backend.scraped_own)
        return Endpoint(
            backend.url, backend.in_flight, eligible, others + backend.in_flight, scraped.kv_usage
        )

    def fresh_load(self, backend: Backend) -> EngineLoad | None:
        """The backend's scraped load, unless older than ``load_max_age``."""
        if self._clock() - backend.scraped_at > self.config.load_max_age:
            return None
        return backend.scraped

    def set_load(self, url: str, load: EngineLoad | None) -> None:
        """Record a scrape of ``url`` (``None``: it failed; fall back to own counts)."""
        backend = self.backends.get(url)
        if backend is not None:
            backend.scraped = load
            backend.scraped_own = backend.in_flight
            backend.scraped_at = self._clock()

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
        backend = self.backends.get(url) or self.leaving.get(url)
        if backend is not None:
            backend.in_flight -= 1
            if not backend.in_flight:
                self.leaving.pop(url, None)
        self._changed()

    def succeeded(self, url: str) -> None:
        """``url`` answered without a server error: close its circuit."""
        backend = self.backends.get(url)
        if backend:
            backend.failures = 0
            if self._clock() - backend.ejected_until >= self.config.eject_max_seconds:
                backend.ejections = 0  # quiet long enough: no longer flapping

    def failed(self, url: str, hard: bool = False, sent_at: float | None = None) -> None:
        """``url`` failed; eject it after ``failure_threshold`` failures (at once when ``hard``).

        ``sent_at`` (when the failed request was sent): a request sent before the backend's
        latest ejection began belongs to the incident that ejected it and is not counted again.
        """
        backend = self.backends.get(url)
        if backend is None or (sent_at is not None and sent_at < backend.ejected_at):
            return
        backend.failures = self.config.failure_threshold if hard else backend.failures + 1
        if backend.failures >= self.config.failure_threshold:
            self._eject(backend, "a broken connection" if hard else "failed requests")

    def _eject(self, backend: Backend, why: str) -> None:
        now = self._clock()
        delay = min(
            self.config.eject_base_seconds * 2**backend.ejections, self.config.eject_max_seconds
        )
        backend.ejected_at = now
        backend.ejected_until = now + delay
        backend.ejections += 1
        backend.failures = 0
        log.warning("backend %s ejected for %g s after %s", backend.url, delay, why)

    def check_failed(self, url: str, certain: bool = False) -> None:
        """An active check of ``url`` failed: it turns unhealthy at once when the failure is
        ``certain`` (the backend answered so, or refused the connection), else after
        ``health_failures`` in a row.

        One unanswered check is not enough: it may be the router that stalled (a CPU-starved
        node), and marking every backend unhealthy then would fail every request with a 503.
        """
        backend = self.backends.get(url)
        if backend is None:
            return
        backend.check_failures += 1
        if certain or backend.check_failures >= self.config.health_failures:
            self.set_health(url, False)

    def set_health(
        self,
        url: str,
        healthy: bool,
        models: frozenset[str] | None = None,
        checked_at: float | None = None,
    ) -> None:
        """Record an active health check result (``checked_at``: when the check started)."""
        backend = self.backends.get(url)
        if backend is None:
            return
        now = self._clock()
        was = backend.usable(now)
        if healthy and self._may_lift(backend, now if checked_at is None else checked_at):
            backend.ejected_until = now
        if healthy:
            backend.check_failures = 0
        went_down = backend.healthy and not healthy
        backend.healthy = healthy
        if models is not None:
            backend.models = models
        if went_down:
            for listener in self.down_listeners:
                listener(url)
        if healthy and not was:
            self._changed()

    def _may_lift(self, backend: Backend, checked_at: float) -> bool:
        """Whether a passing check that started at ``checked_at`` ends the backend's ejection."""
        return (
            backend.ejected_until > checked_at
            and checked_at - backend.ejected_at >= self.config.eject_base_seconds
            and backend.ejections < FLAP_EJECTIONS
        )

    def models(self) -> frozenset[str]:
        """Models any backend reported serving (empty when unknown)."""
        return frozenset().union(*(b.models for b in self.backends.values()))
