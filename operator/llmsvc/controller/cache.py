"""Watch caches of everything a reconcile reads, so that a reconcile makes no read request.

:class:`Cache` keeps one :class:`~llmsvc.controller.informer.Informer` per kind (per watched
namespace, or cluster-wide): LLMServices, every child kind and the engine pods, each selected by
the operator's ``llmsvc.io/name`` label (never every pod of the cluster), and the cordoned
nodes. Their watch events trigger reconciles; their stores answer the reconciles' reads
(:class:`llmsvc.controller.reconciler.Reads`). Kinds that only some LLMServices need (PodGroups,
KEDA ScaledObjects) are watched from the first reconcile that asks for them. A kind the operator
may not list (403, e.g. nodes in namespaced mode) or the server does not serve (404) is reported
to the reconcile that asks, and asked again only by a later reconcile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client import ApiClient

from llmsvc.api import LLMService
from llmsvc.controller.informer import Informer, key_of
from llmsvc.controller.kube import CHILD_KINDS, KINDS, prefix_of
from llmsvc.plan import key
from llmsvc.render import NONE, Capabilities, names

Obj = dict[str, Any]
Poke = Callable[[str, str], None]  # (namespace, LLMService name)
Seen = Callable[[str, str, bool], None]  # (namespace, name, deleted)
CORDONED = "spec.unschedulable=true"
POD_SELECTOR = f"{names.LABEL_NAME},{names.LABEL_GROUP}"
NODE = ("Node", "v1", "/api/v1/nodes")
SERVER_KEPT = ("resourceVersion", "managedFields")  # metadata a status write changes
POD_STATUS = ("phase", "conditions", "containerStatuses", "initContainerStatuses", "podIP")
# The only status fields of the children that a reconcile reads (the planner's rollout and the
# router's availability); a change to any other (a budget's counts, a Service's load balancer)
# pokes no reconcile.
STATUS_READ: dict[str, tuple[str, ...]] = {
    "StatefulSet": ("updateRevision",),
    "Deployment": ("availableReplicas",),
}


def collection(kind: str, namespace: str, api_version: str = "") -> str:
    """The REST path of every ``kind`` in ``namespace``, or in every namespace when it is ''."""
    prefix, plural = KINDS[kind]
    prefix = prefix_of(api_version) if api_version else prefix
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


def version_of_kind(kind: str) -> str:
    """The table's apiVersion of ``kind`` (``/apis/apps/v1`` -> ``apps/v1``)."""
    prefix = KINDS[kind][0]
    return prefix.removeprefix("/api/").removeprefix("/apis/")


def pod_essentials(pod: Obj) -> Obj:
    """What the planner reads of a pod (:func:`llmsvc.plan.pods.pod_facts`, evictions, node
    pokes): its metadata, node and status, without the containers of its spec (most of it)."""
    node = (pod.get("spec") or {}).get("nodeName")
    status = pod.get("status") or {}
    return {
        "kind": pod.get("kind"), "apiVersion": pod.get("apiVersion"),
        "metadata": pod.get("metadata") or {}, "spec": {"nodeName": node} if node else {},
        "status": {k: status[k] for k in POD_STATUS if k in status},
    }  # fmt: skip


def reads_of(kind: str) -> Callable[[Obj], Obj]:
    """What a reconcile reads of an object of ``kind``: all but its resourceVersion and, of a
    child's status, only the fields of :data:`STATUS_READ` (a pod's, already trimmed, whole)."""
    fields = STATUS_READ.get(kind, ())

    def project(obj: Obj) -> Obj:
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
        status = obj.get("status") or {}
        if kind != "Pod":
            status = {name: status.get(name) for name in fields}
        return obj | {"metadata": meta, "status": status}

    return project


def _moved(held: Obj, reply: Obj) -> bool:
    """Whether ``reply`` differs from ``held`` outside its status (and the server's bookkeeping)."""

    def rest(obj: Obj) -> Obj:
        meta = obj.get("metadata") or {}
        return {
            "metadata": {k: v for k, v in meta.items() if k not in SERVER_KEPT},
            "spec": obj.get("spec"),
        }

    return rest(held) != rest(reply)


def owner(obj: Obj) -> str:
    """The LLMService an object is labelled for ('' when none)."""
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(names.LABEL_NAME) or "")


@dataclass
class Cache:
    """Informers of one operator: cluster-wide, or one set per namespace of ``namespaces``."""

    api: ApiClient
    poke: Poke
    seen: Seen
    namespaces: tuple[str, ...] = ()
    informers: dict[tuple[str, str], Informer] = field(default_factory=dict)  # (kind, ns)
    _tasks: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)

    def start(self) -> None:
        """Watch LLMServices, every child kind, engine pods and cordoned nodes."""
        for namespace in self.namespaces or ("",):
            self._start("LLMService", namespace, selector="", on_event=self._on_llmservice)
            for kind in CHILD_KINDS:
                self._start(kind, namespace)
            self._start("Pod", namespace, selector=POD_SELECTOR)
        node = Informer(self.api, NODE[2], NODE[0], NODE[1], field_selector=CORDONED,
                        on_event=self._on_node, refusal_expected=True)  # fmt: skip
        self._run(("Node", ""), node)

    async def close(self) -> None:
        """Stop every watch."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _start(
        self, kind: str, namespace: str, selector: str = names.LABEL_NAME, api_version: str = "",
        on_event: Callable[[str, Obj], None] | None = None,
    ) -> Informer:  # fmt: skip
        version = api_version or version_of_kind(kind)
        keep = pod_essentials if kind == "Pod" else None
        relevant = None if kind == "LLMService" else reads_of(kind)
        informer = Informer(
            self.api, collection(kind, namespace, api_version), kind, version,
            label_selector=selector, on_event=on_event or self._on_child, keep=keep,
            relevant=relevant,
        )  # fmt: skip
        self._run((kind, namespace), informer)
        return informer

    def _run(self, slot: tuple[str, str], informer: Informer) -> None:
        self.informers[slot] = informer
        self._tasks[slot] = asyncio.create_task(informer.run())

    def _on_llmservice(self, type_: str, obj: Obj) -> None:
        namespace, name = key_of(obj)
        self.seen(namespace, name, type_ == "DELETED")
        if type_ != "DELETED":
            self.poke(namespace, name)

    def _on_child(self, type_: str, obj: Obj) -> None:
        self.poke(key_of(obj)[0], owner(obj))

    def _on_node(self, type_: str, obj: Obj) -> None:
        """A node was cordoned or uncordoned: reconcile the LLMServices with pods on it."""
        if type_ == "MODIFIED":  # still cordoned (a status heartbeat): nothing changed for us
            return
        node = key_of(obj)[1]
        for (kind, _), informer in list(self.informers.items()):
            if kind != "Pod":
                continue
            for pod in list(informer.store.values()):
                if (pod.get("spec") or {}).get("nodeName") == node:
                    self.poke(key_of(pod)[0], owner(pod))

    async def _synced(
        self, kind: str, namespace: str, api_version: str = "", selector: str = names.LABEL_NAME
    ) -> Informer:
        """The synced informer holding ``kind`` of ``namespace``, started on first use."""
        scope = "" if not self.namespaces else namespace
        informer = self.informers.get((kind, scope))
        if informer is None:
            informer = self._start(kind, scope, selector, api_version)
        await informer.synced.wait()
        if informer.error is not None:
            self.informers.pop((kind, scope), None)  # asked again by the next reconcile
            self._tasks.pop((kind, scope), None)
            raise informer.error
        return informer

    async def llmservice(self, namespace: str, name: str) -> Obj | None:
        """The LLMService as last seen (or as our last status write returned it)."""
        informer = await self._synced("LLMService", namespace, selector="")
        return informer.store.get((namespace, name))

    async def observe(
        self, svc: LLMService, caps: Capabilities = NONE
    ) -> tuple[dict[tuple[str, str], Obj], list[Obj]]:
        """Every child labelled for ``svc`` (by kind and name), and its engine pods."""
        kinds = [(kind, "") for kind in CHILD_KINDS]
        if svc.spec.autoscaling.metrics == "keda":
            kinds.append(("ScaledObject", ""))
        if caps.podgroups:
            kinds.append(("PodGroup", caps.podgroup_version))
        live: dict[tuple[str, str], Obj] = {}
        for kind, version in kinds:
            for obj in await self._owned(kind, svc.namespace, svc.name, version):
                live[key(obj)] = obj
        pods = await self._owned("Pod", svc.namespace, svc.name, selector=POD_SELECTOR)
        return live, pods

    async def _owned(
        self, kind: str, namespace: str, name: str, version: str = "",
        selector: str = names.LABEL_NAME,
    ) -> list[Obj]:  # fmt: skip
        informer = await self._synced(kind, namespace, version, selector)
        return informer.owned(namespace, name)

    async def cordoned(self) -> frozenset[str]:
        """The cordoned nodes; none when the operator may not watch nodes (namespaced RBAC)."""
        informer = self.informers[("Node", "")]
        await informer.synced.wait()
        return frozenset(name for _, name in informer.store)

    def has_children(self, namespace: str, name: str) -> bool:
        """Whether LLMService ``namespace/name`` has a StatefulSet in the cache."""
        informer = self.informers.get(("StatefulSet", "" if not self.namespaces else namespace))
        return informer is not None and bool(informer.index.get((namespace, name)))

    def remember(self, obj: Obj) -> None:
        """The server's reply to one of our writes: the cache holds it from now on.

        Our only write of an LLMService is its status, so a reply whose spec or metadata differs
        from the copy held was changed by someone else since the pass read it: that change's
        watch event is older than the reply and will be ignored, so it pokes here instead."""
        informer = self._holder(obj)
        if informer is None:
            return
        held = informer.store.get(key_of(obj))
        informer.remember(obj)
        if obj.get("kind") == "LLMService" and held is not None and _moved(held, obj):
            self.poke(*key_of(obj))

    def forget(self, obj: Obj) -> None:
        """The server's reply to one of our deletions (or the object, when it replied Status)."""
        informer = self._holder(obj)
        if informer is not None:
            informer.forget(obj)

    def _holder(self, obj: Obj) -> Informer | None:
        namespace = key_of(obj)[0] if self.namespaces else ""
        return self.informers.get((str(obj.get("kind")), namespace))
