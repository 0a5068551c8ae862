"""Per-process state of the operator: the API client, known objects, locks and debounced triggers.

Every reconcile is triggered through :meth:`Runtime.poke`: a watch event of an LLMService or of
one of its children (from :class:`llmsvc.controller.cache.Cache`, whose stores also answer the
reconciles' reads), or the periodic resync that walks every known LLMService spread evenly over
the resync period. Pokes that arrive before the reconcile starts are merged into it, reconciles
of one object never overlap, at most ``workers`` run at once, and a failed reconcile is retried
with backoff, never sooner than a throttling API server's ``Retry-After`` (pokes that arrive in
the meantime are merged into that retry). Event-driven reconciles take priority: the resync
sweep runs at most ``sweepers`` reconciles at once, so the others are always free for events,
and an event turns a pending sweep reconcile of the same object into an event-driven one.
First passes of new LLMServices (no StatefulSet yet: about ten writes each) run ``creators`` at a
time, so a burst of new objects is paced (the pods downstream are slower anyway) and neither
starves the repairs of existing ones nor crowds other clients off the API server. While new
LLMServices keep arriving (a client is applying a batch), their first passes wait until no new
one has arrived for ``arrival_quiet`` seconds, but no longer than ``arrival_hold`` seconds after
the batch began: the client's requests go first, a stream that never pauses is held once only,
and the children of a single new LLMService are not delayed at all. The
sweep passes over an LLMService that is settled (every group Ready, no restart bookkeeping that
time alone could change), whose last pass wrote no child (its status at most), and that no
watch event has poked since
(every change of its inputs in the watch caches pokes it) nor a change of the cluster's
capabilities: that pass would find nothing to do again. Skipping costs a set lookup, so 1,000
settled LLMServices cost the sweep almost nothing. None of this needs a finalizer on the
LLMService, so deleting one never waits for the operator.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from llmsvc.controller.cache import Cache
from llmsvc.controller.discovery import Discovery
from llmsvc.controller.kube import Kube, retry_after
from llmsvc.controller.metrics import OperatorMetrics
from llmsvc.controller.reconciler import Settings, reconcile
from llmsvc.plan import Plan

Ref = tuple[str, str]  # (namespace, name)
Obj = dict[str, Any]
log = logging.getLogger("llmsvc.operator")


def terminating(error: ApiException) -> bool:
    """A write refused because the namespace is being deleted."""
    return error.status == 403 and "because it is being terminated" in str(error.body or "")


def settled(body: Obj | None) -> bool:
    """Whether an LLMService's status leaves nothing for time alone to change: Ready and neither
    Progressing nor Reconciling, every group Ready, no restart whose backoff window is still
    open, no group moving off a cordoned node."""
    status = (body or {}).get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    groups = status.get("groups") or []
    busy = any(
        c.get("type") in ("Progressing", "Reconciling") and c.get("status") == "True"
        for c in conditions
    )
    return (ready and not busy) and all(
        g.get("phase") == "Ready" and not g.get("lastRestartTime") and not g.get("movingSince")
        for g in groups
    )


def retry_delay(error: Exception, attempt: int, cap: float) -> float:
    """Seconds before retrying a reconcile that failed with ``error`` (``attempt`` from 0).

    Exponential backoff (2, 4, 8 s ...) up to ``cap``; a server's Retry-After is a floor that
    the cap does not shorten."""
    backoff = min(cap, 2.0 ** (attempt + 1))
    after = retry_after(error) if isinstance(error, ApiException) else None
    return backoff if after is None else max(backoff, after)


@dataclass
class Runtime:
    """Everything the handlers share."""

    settings: Settings
    metrics: OperatorMetrics
    resync: float = 30.0
    debounce: float = 0.5
    workers: int = 16
    sweepers: int = 2
    creators: int = 1
    arrival_quiet: float = 0.5  # a first pass waits for a pause this long in new arrivals ...
    arrival_hold: float = 30.0  # ... but no longer than this after the batch's first arrival
    namespaces: tuple[str, ...] = ()
    kube: Kube | None = None
    discovery: Discovery | None = None
    cache: Cache | None = None
    known: set[Ref] = field(default_factory=set)
    _api: ApiClient | None = None
    _locks: dict[Ref, asyncio.Lock] = field(default_factory=dict)
    _pending: dict[Ref, tuple[asyncio.Task[None], bool]] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _live: set[asyncio.Task[None]] = field(default_factory=set)  # reconciles, queued or running
    _slots: asyncio.Semaphore | None = None
    _sweep: asyncio.Semaphore | None = None
    _create: asyncio.Semaphore | None = None
    _quiet: dict[Ref, object] = field(default_factory=dict)  # capabilities at a no-op pass
    _arrived: float = 0.0  # monotonic time the latest new LLMService was seen
    _batch: float = 0.0  # monotonic time the first of the current batch was seen
    _told: float = 0.0  # the batch whose hold was logged

    def attach(self, api: ApiClient) -> None:
        """Start talking to the API server through ``api``: the watch caches and the resync."""
        self._api = api
        self.cache = Cache(api, self.poke, self.seen, self.namespaces)
        cache = self.cache
        self.kube = Kube(
            api, on_write=self.metrics.count_write, on_stored=cache.remember,
            on_deleted=cache.forget,
        )  # fmt: skip
        self.discovery = Discovery(self.kube)
        self._slots = asyncio.Semaphore(self.workers)
        self._sweep = asyncio.Semaphore(self.sweepers)
        self._create = asyncio.Semaphore(self.creators)
        cache.start()
        self._tasks.append(asyncio.create_task(self._resync_loop()))

    async def close(self) -> None:
        """Cancel pending and running work, stop the watches and close the API client.

        A reconcile still running would otherwise fail on the closed client ("Session is
        closed"), log an error and schedule a retry in a process that is stopping."""
        tasks = [*self._live, *self._tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self.cache is not None:
            await self.cache.close()
        if self._api is not None:
            await self._api.close()

    def seen(self, namespace: str, name: str, deleted: bool) -> None:
        """Track which LLMServices exist (from their watch events)."""
        if deleted:
            self.known.discard((namespace, name))
            self._locks.pop((namespace, name), None)
            self._quiet.pop((namespace, name), None)
        elif (namespace, name) not in self.known:
            self.known.add((namespace, name))
            now = time.monotonic()
            if now - self._arrived >= self.arrival_quiet:
                self._batch = now  # a pause ended the previous batch
            self._arrived = now

    def poke(
        self, namespace: str, name: str, delay: float | None = None, sweep: bool = False
    ) -> None:
        """Schedule a reconcile soon; pokes arriving before it starts are merged into it.

        ``sweep``: a poke of the resync sweep, which yields to event-driven reconciles. A child
        labelled ``llmsvc.io/name=`` (empty) names no LLMService and is ignored."""
        if not name:
            return
        ref = (namespace, name)
        if not sweep:
            self._quiet.pop(ref, None)  # its inputs changed: the sweep must pass it again
        task, swept = self._pending.get(ref, (None, False))
        if task is not None and not task.done():
            if sweep or not swept:
                return
            task.cancel()  # an event arrived for an object the sweep is still queueing
        wait = self.debounce if delay is None else delay
        later = self._later(ref, wait, attempt=0, sweep=sweep)
        self._pending[ref] = (self._spawn(later), sweep)

    async def _later(self, ref: Ref, wait: float, attempt: int, sweep: bool = False) -> None:
        await asyncio.sleep(wait)
        if self._new(ref):
            with self.metrics.held.track_inprogress():
                await self._after_arrivals()
        if sweep and self._sweep is not None:
            async with self._sweep:
                self._pending.pop(ref, None)
                await self._attempt(ref, attempt, sweep)
        else:
            self._pending.pop(ref, None)
            await self._attempt(ref, attempt, sweep)

    async def _attempt(self, ref: Ref, attempt: int, sweep: bool) -> None:
        try:
            if self._create is not None and self._new(ref):
                async with self._create:
                    await self.reconcile(*ref)
            else:
                await self.reconcile(*ref)
        except Exception as error:  # retried with backoff; the resync would retry anyway
            if isinstance(error, ApiException) and terminating(error):
                log.info("%s/%s: its namespace is being deleted; not retrying", *ref)
                return
            delay = retry_delay(error, attempt, self.resync)
            if isinstance(error, ApiException) and error.status == 429:
                log.warning("%s/%s: throttled by the API server; retrying in %.1f s", *ref, delay)
            else:
                log.exception("reconcile of %s/%s failed (attempt %d)", *ref, attempt + 1)
            retry = self._later(ref, delay, attempt + 1, sweep)
            self._pending[ref] = (self._spawn(retry), False)  # events merge into it

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` as a task that :meth:`close` cancels, queued or running."""
        task = asyncio.create_task(work)
        self._live.add(task)
        task.add_done_callback(self._live.discard)
        return task

    async def _after_arrivals(self) -> None:
        """Return once no new LLMService has arrived for ``arrival_quiet`` seconds, or
        ``arrival_hold`` seconds after the batch began: a client applying a batch is not slowed
        by its children."""
        while (gap := self._arrived + self.arrival_quiet - time.monotonic()) > 0:
            left = self._batch + self.arrival_hold - time.monotonic()
            if left <= 0:
                return
            self._tell_hold(left)
            await asyncio.sleep(min(gap, left))

    def _tell_hold(self, left: float) -> None:
        """Log once per batch that its children wait for the batch (``left`` seconds at most)."""
        if self._told != self._batch:
            self._told = self._batch
            log.info(
                "new LLMServices keep arriving: their children are created once none has "
                "arrived for %.1f s (at most %.0f s from now)", self.arrival_quiet, left,
            )  # fmt: skip

    def _new(self, ref: Ref) -> bool:
        """Whether ``ref`` has no StatefulSet yet: its next pass creates its children."""
        return self.cache is not None and not self.cache.has_children(*ref)

    async def _resync_loop(self) -> None:
        """Poke every known LLMService that is not quiet once per resync period, spread evenly
        over it."""
        while True:
            refs = await self._due()
            if not refs:
                await asyncio.sleep(self.resync)
            for ref in refs:
                await asyncio.sleep(self.resync / len(refs))
                if ref in self.known and ref not in self._quiet:
                    self.poke(*ref, delay=0, sweep=True)

    async def _due(self) -> list[Ref]:
        """The known LLMServices a sweep pass could change; the others count as unchanged."""
        if self.discovery is not None and self._quiet:  # asking refreshes them now and then
            caps = await self.discovery.capabilities(next(iter(self._quiet))[0])
            for ref in [ref for ref, held in self._quiet.items() if held != caps]:
                self._quiet.pop(ref, None)
        due = sorted(self.known - self._quiet.keys())
        self.metrics.reconciles.labels(result="unchanged").inc(len(self.known) - len(due))
        return due

    async def reconcile(self, namespace: str, name: str) -> Plan | None:
        """Run one reconcile of ``namespace/name``, serialised per object, and record metrics."""
        if self.kube is None or self._slots is None:
            raise RuntimeError("the operator is still starting")
        lock = self._locks.setdefault((namespace, name), asyncio.Lock())
        async with lock, self._slots:
            started = time.perf_counter()
            try:
                todo = await reconcile(
                    self.kube, namespace, name, self.settings, self.discovery, reads=self.cache
                )
            except Exception:
                self.metrics.reconciles.labels(result="error").inc()
                raise
            finally:
                self.metrics.duration.observe(time.perf_counter() - started)
        self._record(todo)
        if todo is not None and todo.recheck is not None:  # an eviction window ends then
            self.poke(namespace, name, delay=todo.recheck)
        await self._remember_quiet((namespace, name), todo)
        if todo is None:
            self.metrics.forget(namespace, name)
        else:
            if todo.status is not None:
                self.metrics.observe(namespace, name, todo.status)
            if todo.pulls:  # an invalid spec plans nothing: keep the last values
                self.metrics.observe_pulls(namespace, name, todo.pulls)
        return todo

    async def _remember_quiet(self, ref: Ref, todo: Plan | None) -> None:
        """After a pass: ``ref`` is quiet when it wrote no child and is settled. A status it
        wrote is a fixed point of the planner (the next pass over the same children writes
        nothing), so the pass that writes the Ready status needs no confirming sweep pass. A
        watch event that arrived during the pass, or a change of the LLMService by someone else
        that its status write returned (:meth:`Cache.remember`), has queued another pass, which
        decides again."""
        self._quiet.pop(ref, None)
        if self.cache is None or todo is None or todo.child_writes or todo.recheck is not None:
            return
        if ref in self._pending or not settled(await self.cache.llmservice(*ref)):
            return
        self._quiet[ref] = self.discovery.current() if self.discovery else None

    def _record(self, todo: Plan | None) -> None:
        result = "gone" if todo is None else "changed" if todo.writes else "unchanged"
        self.metrics.reconciles.labels(result=result).inc()
        if todo is not None:
            restarts = sum(1 for e in todo.events if e.reason == "GroupRestarted")
            self.metrics.restarts.inc(restarts)
