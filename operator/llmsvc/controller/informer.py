"""List once, then watch: an informer-style store of one kind of object, kept from watch events.

One :class:`Informer` lists a collection (a namespace or the whole cluster, narrowed by a label
or field selector), then watches it from the list's resourceVersion, and keeps every object in
memory. The watch is renewed from the last resourceVersion it saw (bookmarks keep that recent),
so a healthy informer makes no LIST or GET request after its first list: it relists only when
the server says its resourceVersion is too old (410 Gone) or the connection fails. A relist
replaces the store, and objects that vanished meanwhile are reported as deleted. A change that
leaves what its handler reads as it was (``relevant``: a budget's status, which the disruption
controller rewrites after every pod event, when the planner reads no budget status) is stored
and not reported.

The operator's own writes reach the store at once (:meth:`Informer.remember`): a reconcile that
runs before the watch event of its previous write arrives sees what it wrote, and a late event
older than that write (by resourceVersion) is ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from llmsvc.controller.kube import server_message

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace '' for cluster-scoped objects
Handler = Callable[[str, Obj], None]  # (ADDED|MODIFIED|DELETED, object)
OWNER_LABEL = "llmsvc.io/name"  # the index: objects by (namespace, this label's value)
log = logging.getLogger("llmsvc.operator")
WATCH_SECONDS = 300  # the server ends each watch after this; it is renewed without a list
MIN_WATCH = 1.0  # seconds: a watch that ended sooner is renewed only after this pause
RELIST_DELAY = (1.0, 30.0)  # backoff between failed lists: first, cap


class GoneError(Exception):
    """The server no longer has the watched resourceVersion (410): relist."""


def key_of(obj: Obj) -> Key:
    """(namespace, name) of an object."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def version_of(obj: Obj) -> str:
    """The object's resourceVersion ('' when it has none)."""
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def owner_of(obj: Obj) -> Key:
    """(namespace, value of the ``llmsvc.io/name`` label) of an object."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str((meta.get("labels") or {}).get(OWNER_LABEL, ""))


def newer(candidate: str, held: str) -> bool:
    """Whether resourceVersion ``candidate`` is newer than ``held``. Versions are opaque to
    clients, but kube-apiserver's are etcd revisions: integers. Anything else counts as newer."""
    if candidate.isdigit() and held.isdigit():
        return int(candidate) > int(held)
    return candidate != held


@dataclass
class Informer:
    """A watched collection at ``url`` (e.g. ``/apis/apps/v1/namespaces/ml/statefulsets``)."""

    api: ApiClient
    url: str
    kind: str
    api_version: str
    label_selector: str = ""
    field_selector: str = ""
    on_event: Handler = lambda type_, obj: None
    store: dict[Key, Obj] = field(default_factory=dict)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    error: ApiException | None = None  # the last refused list (a 403 or 404 stops the informer)
    refusal_expected: bool = False  # a 403 is normal here (nodes under namespaced RBAC): no error
    index: dict[Key, dict[str, Obj]] = field(default_factory=dict)  # by owner_of
    keep: Callable[[Obj], Obj] | None = None  # the part of each object worth holding
    relevant: Callable[[Obj], Any] | None = None  # what of it the handler reads; None: all of it
    _version: str = ""
    _gone: dict[Key, str] = field(default_factory=dict)  # deleted by us, at this version

    async def run(self) -> None:
        """List and watch until cancelled; a refused list (403, 404) ends the informer."""
        delay = RELIST_DELAY[0]
        while True:
            try:
                await self._list()
                delay = RELIST_DELAY[0]
                await self._watch_forever()
            except GoneError:
                log.info("watch of %s expired; relisting", self.url)
            except ApiException as error:
                if error.status in (403, 404):
                    self._refused(error)
                    self.error = error
                    self.synced.set()  # waiters see the error instead of waiting forever
                    return
                log.warning("list/watch of %s failed (%s); retrying in %.0f s",
                            self.url, error.reason, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, RELIST_DELAY[1])
            except (TimeoutError, OSError, ValueError, aiohttp.ClientError) as error:
                log.warning("watch of %s broke (%s); relisting", self.url, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RELIST_DELAY[1])

    def _refused(self, error: ApiException) -> None:
        if self.refusal_expected and error.status == 403:
            log.info("may not list %s (namespaced RBAC); going without it", self.url)
        else:  # the server's message names the missing permission
            log.error("cannot list %s: %s", self.url, server_message(error))

    def _query(self, **extra: str) -> list[tuple[str, str]]:
        query = [("labelSelector", self.label_selector), ("fieldSelector", self.field_selector)]
        return [(k, v) for k, v in query + list(extra.items()) if v]

    async def _list(self) -> None:
        result = await self.api.call_api(
            self.url, "GET", query_params=self._query(),
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
            response_types_map={200: "object"}, _return_http_data_only=True,
            _request_timeout=120,
        )  # fmt: skip
        listed: dict[Key, Obj] = {}
        for item in (result or {}).get("items") or []:
            obj = dict(item)
            obj.setdefault("kind", self.kind)  # list items come without kind and apiVersion
            obj.setdefault("apiVersion", self.api_version)
            listed[key_of(obj)] = obj
        vanished = [self.store[k] for k in self.store.keys() - listed.keys()]
        self.store, self.index, self._gone = {}, {}, {}
        for obj in listed.values():
            self._put(obj)
        self._version = str(((result or {}).get("metadata") or {}).get("resourceVersion") or "")
        self.synced.set()
        for obj in vanished:
            self.on_event("DELETED", obj)
        for obj in listed.values():
            self.on_event("ADDED", obj)

    async def _watch_forever(self) -> None:
        while True:
            started = time.monotonic()
            await self._watch_once()
            if time.monotonic() - started < MIN_WATCH:  # a server (or proxy) ending watches
                await asyncio.sleep(MIN_WATCH)  # at once is not asked again in a busy loop

    async def _watch_once(self) -> None:
        query = self._query(
            watch="true", resourceVersion=self._version, allowWatchBookmarks="true",
            timeoutSeconds=str(WATCH_SECONDS),
        )  # fmt: skip
        response = await self.api.call_api(
            self.url, "GET", query_params=query, header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"], _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(sock_connect=10, sock_read=WATCH_SECONDS + 30),
        )  # fmt: skip
        async with response:
            if response.status == 410:
                raise GoneError()
            if response.status != 200:
                text = await response.text()
                raise ApiException(status=response.status, reason=text[:200])
            async for line in response.content:
                if line.strip():
                    self._event(json.loads(line))

    def _event(self, event: Obj) -> None:
        type_, obj = str(event.get("type")), dict(event.get("object") or {})
        if type_ == "ERROR":
            if obj.get("code") == 410:
                raise GoneError()
            raise ApiException(status=int(obj.get("code") or 0), reason=str(obj.get("message")))
        self._version = version_of(obj) or self._version
        if type_ not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK: only its resourceVersion matters
        obj.setdefault("kind", self.kind)
        obj.setdefault("apiVersion", self.api_version)
        held = self.store.get(key_of(obj))
        if not self._apply(type_, obj):
            return
        if held is not None and owner_of(held) != owner_of(obj):
            self.on_event(type_, held)  # relabelled: its former owner lost it
        elif type_ == "MODIFIED" and held is not None and self._same(held, key_of(obj)):
            return  # nothing the handler reads changed
        self.on_event(type_, obj)

    def _same(self, held: Obj, k: Key) -> bool:
        """Whether the stored object at ``k`` is ``held`` as far as the handler can tell."""
        return self.relevant is not None and self.relevant(held) == self.relevant(self.store[k])

    def _apply(self, type_: str, obj: Obj) -> bool:
        """Store one event; False when it is older than what the store holds."""
        k, version = key_of(obj), version_of(obj)
        held = self.store.get(k)
        if held is not None and not newer(version, version_of(held)) and type_ != "DELETED":
            return False
        if k in self._gone and not newer(version, self._gone[k]):
            return False
        self._gone.pop(k, None)
        if type_ == "DELETED":
            self._drop(k)
        else:
            self._put(obj)
        return True

    def _put(self, obj: Obj) -> None:
        (obj.get("metadata") or {}).pop("managedFields", None)  # unread; a third of the bytes
        obj = self.keep(obj) if self.keep is not None else obj
        k = key_of(obj)
        self._drop(k)
        self.store[k] = obj
        self.index.setdefault(owner_of(obj), {})[k[1]] = obj

    def _drop(self, k: Key) -> None:
        held = self.store.pop(k, None)
        if held is None:
            return
        owned = self.index.get(owner_of(held), {})
        owned.pop(k[1], None)
        if not owned:
            self.index.pop(owner_of(held), None)

    def owned(self, namespace: str, name: str) -> list[Obj]:
        """The objects of ``namespace`` labelled ``llmsvc.io/name=name``."""
        return list(self.index.get((namespace, name), {}).values())

    def remember(self, obj: Obj) -> None:
        """An object as the server returned it to one of our writes (apply, status patch)."""
        self._apply("MODIFIED", obj)

    def forget(self, obj: Obj) -> None:
        """An object we deleted (the server's reply to the DELETE): drop it unless it lingers
        (deletionTimestamp set: finalizers, or a pod's grace period), then keep the reply."""
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            self._apply("MODIFIED", obj)
            return
        k = key_of(obj)
        self._drop(k)
        self._gone[k] = version_of(obj)
