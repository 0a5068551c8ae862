"""Leader election on a ``coordination.k8s.io/v1`` Lease, so several operator replicas can run.

Only the holder of the Lease reconciles; the others wait and serve ``/healthz`` (they are
healthy, just idle). The semantics follow client-go's leaderelection package:

- the holder renews ``spec.renewTime`` every ``retry`` seconds; if it cannot renew for
  ``renew_deadline`` seconds it stops leading (the process exits and is restarted as a follower);
- a candidate takes the Lease over when it has seen the same (holder, renewTime) for
  ``lease_duration`` seconds by its own clock (so clock skew between nodes does not matter);
- every write carries the ``resourceVersion`` it read: of two candidates only one wins;
- on a clean shutdown the leader releases the Lease (empty holder), so a follower takes over
  within ``retry`` seconds instead of ``lease_duration``.

:func:`decide` is the pure part (what to write, given what was read); :class:`LeaderElector` the
thin shell around the API calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

Obj = dict[str, Any]
log = logging.getLogger("llmsvc.leader")
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def micro_time(moment: datetime) -> str:
    """A ``MicroTime`` as the API server writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Timing:
    """Lease duration, renew deadline and retry period (client-go's defaults are 15/10/2 s)."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0


@dataclass
class Observation:
    """The last (holder, renewTime) seen and when this process first saw it (monotonic)."""

    record: tuple[str, str] = ("", "")
    since: float = field(default_factory=time.monotonic)

    def see(self, lease: Obj | None, now: float) -> float:
        """Record ``lease``; return for how long its record has stayed unchanged."""
        spec = (lease or {}).get("spec") or {}
        record = (str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""))
        if record != self.record:
            self.record, self.since = record, now
        return now - self.since


def decide(lease: Obj | None, me: str, unchanged_for: float, timing: Timing) -> str:
    """``create``, ``take``, ``renew`` or ``wait``: what a candidate does with what it read."""
    if lease is None:
        return "create"
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    if holder == me:
        return "renew"
    duration = float(spec.get("leaseDurationSeconds") or timing.lease_duration)
    if not holder or unchanged_for >= duration:
        return "take"
    return "wait"


def lease_spec(me: str, timing: Timing, now: datetime, previous: Obj | None) -> Obj:
    """The Lease spec this candidate writes when it creates, takes or renews it."""
    old = (previous or {}).get("spec") or {}
    keeps = old.get("holderIdentity") == me
    transitions = int(old.get("leaseTransitions") or 0) + (0 if keeps or not previous else 1)
    return {
        "holderIdentity": me,
        "leaseDurationSeconds": int(timing.lease_duration),
        "acquireTime": old.get("acquireTime") if keeps else micro_time(now),
        "renewTime": micro_time(now),
        "leaseTransitions": transitions,
    }


class LeaderElector:
    """Acquire, hold and release the Lease ``namespace/name`` as identity ``me``."""

    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, me: str, timing: Timing = Timing()
    ) -> None:
        self._api, self.namespace, self.name, self.me, self.timing = (
            api,
            namespace,
            name,
            me,
            timing,
        )
        self._seen = Observation()

    async def _call(self, method: str, url: str, body: Obj | None = None) -> Obj:
        result = await self._api.call_api(
            url,
            method,
            body=body,
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            auth_settings=["BearerToken"],
            response_types_map={200: "object", 201: "object"},
            _return_http_data_only=True,
            _request_timeout=max(1.0, self.timing.retry),
        )
        return dict(result or {})

    async def _read(self) -> Obj | None:
        try:
            return await self._call("GET", f"{LEASES.format(namespace=self.namespace)}/{self.name}")
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def try_once(self) -> bool:
        """One round: read, decide, write. True when this process holds the Lease afterwards."""
        lease = await self._read()
        action = decide(lease, self.me, self._seen.see(lease, time.monotonic()), self.timing)
        if action == "wait":
            return False
        spec = lease_spec(self.me, self.timing, datetime.now(UTC), lease)
        collection = LEASES.format(namespace=self.namespace)
        meta: Obj = {"name": self.name, "namespace": self.namespace}
        try:
            if lease is None:
                await self._call("POST", collection, {"metadata": meta, "spec": spec})
            else:
                meta["resourceVersion"] = lease["metadata"]["resourceVersion"]
                await self._call(
                    "PUT", f"{collection}/{self.name}", {"metadata": meta, "spec": spec}
                )
        except ApiException as error:
            if error.status in (409, 404):  # another candidate wrote first
                return False
            raise
        if action != "renew":
            log.info("became leader (Lease %s/%s, identity %s)", self.namespace, self.name, self.me)
        return True

    async def acquire(self) -> None:
        """Return once this process holds the Lease (retrying every ``retry`` seconds)."""
        while True:
            if await self._attempt():
                return
            await asyncio.sleep(self.timing.retry)

    async def _attempt(self) -> bool:
        try:
            return await self.try_once()
        except (ApiException, OSError, TimeoutError) as error:
            log.warning("leader election: %s", error)
            return False

    async def hold(self) -> None:
        """Renew until renewals fail for ``renew_deadline`` seconds; then return (Lease lost)."""
        last = time.monotonic()
        while time.monotonic() - last < self.timing.renew_deadline:
            await asyncio.sleep(self.timing.retry)
            if await self._attempt():
                last = time.monotonic()
        log.error("lost the Lease %s/%s: stopping", self.namespace, self.name)

    async def release(self) -> None:
        """Give the Lease up (empty holder) so a follower takes over without waiting."""
        lease = await self._read()
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.me:
            return
        spec = dict(lease["spec"], holderIdentity="", leaseDurationSeconds=1)
        meta = {"name": self.name, "resourceVersion": lease["metadata"]["resourceVersion"]}
        url = f"{LEASES.format(namespace=self.namespace)}/{self.name}"
        try:
            await self._call("PUT", url, {"metadata": meta, "spec": spec})
        except ApiException as error:
            log.warning("could not release the Lease: %s", error.reason)
