"""The one small layer that talks to the Kubernetes API: list, get, server-side apply, delete.

It speaks plain dicts over kubernetes-asyncio's ``ApiClient`` (the same shape render produces),
addresses objects through a fixed table of kinds, and counts every write it makes so that tests
and metrics can prove a steady state makes none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from yarl import URL

Obj = dict[str, Any]

# kind -> (API prefix, plural, namespaced)
KINDS: dict[str, tuple[str, str]] = {
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "ScaledObject": ("/apis/keda.sh/v1alpha1", "scaledobjects"),  # listed only with metrics: keda
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    # The served version is discovered (llmsvc.controller.discovery); this is only the default.
    "PodGroup": ("/apis/scheduling.k8s.io/v1beta1", "podgroups"),
    "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"),
    "LLMService": ("/apis/llmsvc.io/v1alpha1", "llmservices"),
}
CHILD_KINDS = (
    "StatefulSet",
    "Deployment",
    "Service",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "PodDisruptionBudget",
)
FIELD_MANAGER = "llmsvc-operator"
COMPONENT = "llmsvc-operator"
MAX_EVENT_MESSAGE = 1024
MAX_RETRY_AFTER = 600.0  # a server asking for more than 10 minutes is not taken literally
WriteHook = Callable[[str, str, str], None]  # (verb, kind, namespace)
StoredHook = Callable[[Obj], None]  # the server's reply to a write (the watch caches take it)


def prefix_of(api_version: str) -> str:
    """The REST prefix of an apiVersion: ``v1`` -> ``/api/v1``, ``apps/v1`` -> ``/apis/apps/v1``."""
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


def path(kind: str, namespace: str, name: str = "", sub: str = "", api_version: str = "") -> str:
    """The REST path of a namespaced object (or of the collection when ``name`` is empty);
    ``api_version`` overrides the table's version (for kinds whose version is discovered)."""
    prefix, plural = KINDS[kind]
    prefix = prefix_of(api_version) if api_version else prefix
    parts = [prefix, "namespaces", namespace, plural, name, sub]
    return "/".join(p.strip("/") for p in parts if p).join(["/", ""])


def retry_after(error: ApiException, now: datetime | None = None) -> float | None:
    """The seconds a 429 (or 503) response asks to wait (``Retry-After``), or None.

    The header is either a number of seconds (what kube-apiserver's priority and fairness sends)
    or an HTTP date; the result is bounded by :data:`MAX_RETRY_AFTER`."""
    if error.status not in (429, 503) or not error.headers:
        return None
    value = str(error.headers.get("Retry-After") or "").strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def server_message(error: ApiException) -> str:
    """The API server's own explanation of a refused request (``Status.message``)."""
    body = error.body.decode(errors="replace") if isinstance(error.body, bytes) else error.body
    try:
        status = json.loads(body or "")
    except ValueError:
        status = None
    message = status.get("message") if isinstance(status, dict) else None
    return str(message or error.reason or f"HTTP {error.status}")


async def api_client() -> client.ApiClient:
    """An API client from the in-cluster service account, else from KUBECONFIG."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config()
    api = client.ApiClient()
    read_env_once(api)
    return api


def env_proxy(host: str) -> str | None:
    """The proxy the environment names for the URL ``host``, or None: aiohttp's own choice
    (``HTTPS_PROXY``/``HTTP_PROXY`` unless ``NO_PROXY`` covers the host; an ``https://`` proxy
    is ignored with a warning; the proxy's credentials from its URL, else from ``~/.netrc``)."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(host))
    except LookupError:
        return None
    if auth is not None:
        proxy = proxy.with_user(auth.login).with_password(auth.password)
    return str(proxy)


def read_env_once(api: client.ApiClient) -> None:
    """Look up the API server's proxy once, not on every request.

    kubernetes-asyncio's aiohttp session trusts the environment, so each request reads the proxy
    variables in one thread and ``~/.netrc`` in another: a tenth of the operator's CPU at 1,000
    LLMServices. The API server takes no netrc credentials (it is sent a token or a client
    certificate); the proxy, and its netrc credentials, are the ones the environment names at
    start-up (:func:`env_proxy`)."""
    rest = api.rest_client
    proxy = rest.proxy or env_proxy(api.configuration.host or "")
    if proxy:
        rest.proxy = proxy
    rest.pool_manager._trust_env = False  # one of aiohttp's declared session attributes


class Kube:
    """Typed-enough access to the objects the operator reads and writes."""

    @staticmethod
    def _url(obj: Obj) -> str:
        meta = obj["metadata"]
        return path(obj["kind"], meta["namespace"], meta["name"], api_version=obj["apiVersion"])

    def __init__(
        self,
        api: client.ApiClient,
        on_write: WriteHook | None = None,
        on_stored: StoredHook | None = None,
        on_deleted: StoredHook | None = None,
    ) -> None:
        self._api = api
        self._on_write = on_write or (lambda verb, kind, namespace: None)
        self._on_stored = on_stored or (lambda obj: None)
        self._on_deleted = on_deleted or (lambda obj: None)

    async def _call(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        result = await self._api.call_api(
            url,
            method,
            query_params=query or [],
            body=body,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            auth_settings=["BearerToken"],
            response_types_map={200: "object", 201: "object"},
            _return_http_data_only=True,
            _request_timeout=30,
        )
        return dict(result or {})

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            return await self._call("GET", path(kind, namespace, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def get_raw(self, url: str) -> Obj | None:
        """Any GET (discovery documents); None when the server does not serve ``url``."""
        try:
            return await self._call("GET", url)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def dry_run_create(self, obj: Obj) -> Obj:
        """Create ``obj`` with ``dryRun=All``: what the server would store, nothing written."""
        meta = obj["metadata"]
        url = path(obj["kind"], meta["namespace"], api_version=obj["apiVersion"])
        return await self._call("POST", url, body=obj, query=[("dryRun", "All")])

    async def cordoned_nodes(self) -> set[str]:
        """Names of the nodes marked unschedulable (cordoned, e.g. by ``kubectl drain``)."""
        query = [("fieldSelector", "spec.unschedulable=true")]
        result = await self._call("GET", "/api/v1/nodes", query=query)
        return {str(n["metadata"]["name"]) for n in result.get("items") or []}

    async def list(
        self, kind: str, namespace: str, selector: str, api_version: str = ""
    ) -> list[Obj]:
        """Objects of ``kind`` in ``namespace`` matching ``selector``, kind and apiVersion set."""
        url = path(kind, namespace, api_version=api_version)
        result = await self._call("GET", url, query=[("labelSelector", selector)])
        items = [dict(item) for item in result.get("items") or []]
        for item in items:  # list items come without their kind and apiVersion
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", result.get("apiVersion", ""))
        return items

    async def apply(self, obj: Obj) -> Obj:
        """Server-side apply with the operator's field manager (conflicts forced: we own these)."""
        meta = obj["metadata"]
        self._on_write("apply", obj["kind"], meta["namespace"])
        stored = await self._call(
            "PATCH",
            self._url(obj),
            body=obj,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
        self._on_stored(stored)
        return stored

    async def delete(self, obj: Obj) -> None:
        """Delete ``obj`` if it is still the same object (uid precondition); gone is fine."""
        meta = obj["metadata"]
        body = {"propagationPolicy": "Background", "preconditions": {"uid": meta.get("uid")}}
        self._on_write("delete", obj["kind"], meta["namespace"])
        try:
            reply = await self._call("DELETE", self._url(obj), body=body)
        except ApiException as error:
            if error.status not in (404, 409):
                raise
            return
        # The object (still there while finalizers or a grace period hold it), or a Status.
        self._on_deleted(reply if reply.get("kind") == obj["kind"] else obj)

    async def patch_status(self, kind: str, namespace: str, name: str, status: Obj) -> None:
        """Replace the status fields the operator owns (merge patch on the status subresource)."""
        self._on_write("patch-status", kind, namespace)
        stored = await self._call(
            "PATCH",
            path(kind, namespace, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
        )
        self._on_stored(stored)

    async def post_event(self, about: Obj, type_: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on ``about`` (``kubectl describe`` and ``get events`` show it)."""
        meta = about["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": about["apiVersion"],
                "kind": about["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "type": type_,
            "reason": reason,
            "message": message[:MAX_EVENT_MESSAGE],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._on_write("create", "Event", meta["namespace"])
        await self._call("POST", path("Event", meta["namespace"]), body=event)
