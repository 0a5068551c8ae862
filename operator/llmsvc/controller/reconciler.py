"""One level-based reconcile of one LLMService: observe, plan (pure), execute.

The same function runs on create, update, resume, on child events and on the periodic timer. It
reads the LLMService, renders the desired children with the code behind ``llmsvc render``,
observes what exists, asks :func:`llmsvc.plan.plan` what to write, and writes exactly that. A pass
that finds nothing to change makes no write request at all. Its reads go through :class:`Reads`:
the operator's watch caches (:class:`llmsvc.controller.cache.Cache`, no request at all), or
:class:`ApiReads` (a GET and a LIST per kind: tests and one-off passes).

An apply the API server refuses as invalid (HTTP 422: a child the CRD's rules could not foresee,
such as requests above limits) does not fail the pass: the other children are still written, and
the server's message becomes the Degraded condition and an Event, where ``kubectl describe``
shows it. Other errors propagate and the pass is retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes_asyncio.client.exceptions import ApiException

from llmsvc.api import InvalidSpecError, LLMService, parse
from llmsvc.api.status import LLMServiceStatus
from llmsvc.controller.discovery import Discovery, gang_status
from llmsvc.controller.kube import CHILD_KINDS, Kube, server_message
from llmsvc.plan import (
    Event,
    Plan,
    RestartPolicy,
    invalid_status,
    key,
    merged,
    plan,
    with_rejections,
)
from llmsvc.render import NONE, Capabilities, group, names, render, surge_extras

Obj = dict[str, Any]
log = logging.getLogger("llmsvc.operator")


@dataclass(frozen=True)
class Settings:
    """What a reconcile needs besides the object: the image for pullers/routers, restart policy."""

    image: str
    backoff_base: float = 10.0
    pull_secrets: tuple[str, ...] = ()


Observed = tuple[dict[tuple[str, str], Obj], list[Obj]]


class Reads(Protocol):
    """Where a reconcile reads the LLMService, its children and pods, and the cordoned nodes."""

    async def llmservice(self, namespace: str, name: str) -> Obj | None: ...

    async def observe(self, svc: LLMService, caps: Capabilities = NONE) -> Observed: ...

    async def cordoned(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class ApiReads:
    """Reads straight from the API server: a GET, then a LIST per child kind, every pass."""

    kube: Kube

    async def llmservice(self, namespace: str, name: str) -> Obj | None:
        return await self.kube.get("LLMService", namespace, name)

    async def observe(self, svc: LLMService, caps: Capabilities = NONE) -> Observed:
        return await observe(self.kube, svc, caps)

    async def cordoned(self) -> frozenset[str]:
        return await cordoned(self.kube)


async def observe(kube: Kube, svc: LLMService, caps: Capabilities = NONE) -> Observed:
    """Every child labelled for ``svc`` (by kind and name), and its engine pods."""
    selector = f"{names.LABEL_NAME}={svc.name}"
    # KEDA's CRD may not exist: ScaledObjects are listed only when this service asks for them.
    keda = ("ScaledObject",) if svc.spec.autoscaling.metrics == "keda" else ()
    calls = [kube.list(k, svc.namespace, selector) for k in CHILD_KINDS + keda]
    if caps.podgroups:  # listed even with gang: off, so that earlier PodGroups are pruned
        calls.append(kube.list("PodGroup", svc.namespace, selector, caps.podgroup_version))
    lists = await asyncio.gather(*calls)
    live = {key(obj): obj for items in lists for obj in items}
    pods = await kube.list("Pod", svc.namespace, f"{selector},{names.LABEL_GROUP}")
    return live, pods


async def _apply(kube: Kube, obj: Obj) -> str:
    """Apply ``obj``; '' when stored, else the server's reason for refusing it as invalid."""
    try:
        await kube.apply(obj)
    except ApiException as error:
        if error.status != 422:
            raise
        log.warning("the API server rejected %s/%s as invalid", *key(obj))
        return server_message(error)
    return ""


async def execute(kube: Kube, svc: LLMService, todo: Plan, now: datetime) -> Plan:
    """Perform the plan's writes: applies, deletions, group restarts, then the status.

    Returns the plan as executed: with Degraded=ApplyRejected when the server refused an apply."""
    # A group's PodGroup exists before its pods (first wave). A RoleBinding may only be created
    # once its Role exists (RBAC escalation check), so bindings go in the last wave.
    waves = [[o for o in todo.apply if o["kind"] == kind] for kind in ("PodGroup", "RoleBinding")]
    rest = [o for o in todo.apply if o["kind"] not in ("PodGroup", "RoleBinding")]
    rejected: dict[tuple[str, str], str] = {}
    for wave in (waves[0], rest, waves[1]):
        results = await asyncio.gather(*(_apply(kube, obj) for obj in wave))
        rejected |= {key(obj): r for obj, r in zip(wave, results, strict=True) if r}
    todo = with_rejections(svc, todo, rejected, now)
    for obj in kept_while_rejected(todo.delete, rejected):
        await kube.delete(obj)
    # The planner chose the victims: only pods controlled by the restarted group's StatefulSet.
    await asyncio.gather(*(kube.delete(p) for p in todo.evict))
    if todo.status is not None:
        await kube.patch_status("LLMService", svc.namespace, svc.name, todo.status)
    return todo


def kept_while_rejected(stale: list[Obj], rejected: dict[tuple[str, str], str]) -> list[Obj]:
    """The stale children to delete: all, but no NetworkPolicy while one of the new ones was
    refused (the old policies keep the pods closed until their replacement exists)."""
    if not any(kind == "NetworkPolicy" for kind, _ in rejected):
        return stale
    return [obj for obj in stale if obj["kind"] != "NetworkPolicy"]


async def cordoned(kube: Kube) -> frozenset[str]:
    """The cordoned nodes; none when the operator may not read nodes (namespaced RBAC)."""
    try:
        return frozenset(await kube.cordoned_nodes())
    except ApiException as error:
        if error.status != 403:
            raise
        return frozenset()


async def reconcile(
    kube: Kube,
    namespace: str,
    name: str,
    settings: Settings,
    discovery: Discovery | None = None,
    *,
    reads: Reads | None = None,
) -> Plan | None:
    """Bring the children of LLMService ``namespace/name`` to the desired state."""
    reads = reads or ApiReads(kube)
    body = await reads.llmservice(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    now = datetime.now(UTC)
    caps = await discovery.capabilities(namespace) if discovery else NONE
    try:
        svc = parse(body)
        # Rendering checks what the schema cannot (cache paths, pod-template overlays).
        image, secrets = settings.image, settings.pull_secrets
        children = render(svc, image=image, caps=caps, pull_secrets=secrets)
        surge = group(svc, svc.spec.replicas, image=image, caps=caps, pull_secrets=secrets)
    except InvalidSpecError as error:
        return await _invalid(kube, body, error.problems, now)
    live, pods = await reads.observe(svc, caps)
    todo = plan(
        svc,
        children,
        surge_group=surge,
        surge_extras=surge_extras(svc, caps=caps),
        live=live,
        pods=pods,
        now=now,
        policy=RestartPolicy(backoff_base=settings.backoff_base),
        cordoned=await reads.cordoned(),
        gang=gang_status(svc.spec.scheduling.gang, caps, svc.spec.parallelism.nodes),
    )
    todo = await execute(kube, svc, todo, now)
    for event in merged(todo.events):  # one Created Event per pass, not one per child
        await post(kube, body, event)
    return todo


async def _invalid(kube: Kube, body: Obj, problems: list[str], now: datetime) -> Plan:
    meta = body["metadata"]
    previous = LLMServiceStatus.model_validate(body.get("status") or {})
    status = invalid_status(previous, meta.get("generation"), problems, now)
    if status == previous.wire():
        return Plan()
    await kube.patch_status("LLMService", meta["namespace"], meta["name"], status)
    event = Event("Warning", "InvalidSpec", "; ".join(problems))
    await post(kube, body, event)
    return Plan(status=status, events=[event])


async def post(kube: Kube, body: Obj, event: Event) -> None:
    """Record ``event`` on the LLMService; an Event that cannot be written never fails a pass."""
    try:
        await kube.post_event(body, event.type, event.reason, event.message)
    except ApiException as error:
        log.warning(
            "could not record event %s on %s: %s",
            event.reason,
            body["metadata"]["name"],
            error.reason,
        )
