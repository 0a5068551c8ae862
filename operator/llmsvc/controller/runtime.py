"""Per-process state of the operator: the API client, per-object locks and debounced triggers.

Reconciles of one LLMService never overlap (a lock per object), and a burst of child events
(eight ranks changing at once) collapses into one reconcile shortly after the burst.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
from kubernetes_asyncio.client import ApiClient

from llmsvc.controller.kube import Kube
from llmsvc.controller.metrics import OperatorMetrics
from llmsvc.controller.reconciler import Settings, reconcile
from llmsvc.plan import Event, Plan

Ref = tuple[str, str]  # (namespace, name)
log = logging.getLogger("llmsvc.operator")


def post_event(body: dict[str, Any], event: Event) -> None:
    """Post an Event on the LLMService through kopf's event poster."""
    kopf.event(
        kopf.Body(cast(kopf.RawBody, body)),
        type=event.type,
        reason=event.reason,
        message=event.message,
    )


@dataclass
class Runtime:
    """Everything the handlers share."""

    settings: Settings
    metrics: OperatorMetrics
    debounce: float = 0.5
    kube: Kube | None = None
    _api: ApiClient | None = None
    _locks: dict[Ref, asyncio.Lock] = field(default_factory=dict)
    _pending: dict[Ref, asyncio.Task[None]] = field(default_factory=dict)

    def attach(self, api: ApiClient) -> None:
        """Start talking to the API server through ``api``."""
        self._api = api
        self.kube = Kube(api, on_write=self.metrics.count_write)

    async def close(self) -> None:
        """Cancel pending pokes and close the API client."""
        for task in self._pending.values():
            task.cancel()
        if self._api is not None:
            await self._api.close()

    async def reconcile(self, namespace: str, name: str) -> Plan | None:
        """Run one reconcile of ``namespace/name``, serialised per object, and record metrics."""
        if self.kube is None:
            raise kopf.TemporaryError("the operator is still starting", delay=1)
        lock = self._locks.setdefault((namespace, name), asyncio.Lock())
        async with lock:
            started = time.perf_counter()
            try:
                todo = await reconcile(self.kube, namespace, name, self.settings, post_event)
            except Exception:
                self.metrics.reconciles.labels(result="error").inc()
                raise
            finally:
                self.metrics.duration.observe(time.perf_counter() - started)
        self._record(todo)
        return todo

    def _record(self, todo: Plan | None) -> None:
        result = "gone" if todo is None else "changed" if todo.writes else "unchanged"
        self.metrics.reconciles.labels(result=result).inc()
        if todo is not None:
            self.metrics.restarts.inc(len([e for e in todo.events if e.reason == "GroupRestarted"]))

    def poke(self, namespace: str, name: str) -> None:
        """Schedule a reconcile soon; pokes arriving before it starts are merged into it."""
        ref = (namespace, name)
        if ref in self._pending and not self._pending[ref].done():
            return
        self._pending[ref] = asyncio.create_task(self._later(ref))

    async def _later(self, ref: Ref) -> None:
        await asyncio.sleep(self.debounce)
        self._pending.pop(ref, None)
        try:
            await self.reconcile(*ref)
        except Exception:  # the timer retries; one failed poke must not kill the task silently
            log.exception("reconcile of %s/%s after a child event failed", *ref)

    def forget(self, namespace: str, name: str) -> None:
        """Drop the state of a deleted LLMService."""
        self._locks.pop((namespace, name), None)
