"""The ``external.metrics.k8s.io/v1beta1`` HTTPS server (aiohttp, in the operator's event loop).

One metric, ``llmsvc_queue_length``, per LLMService, labelled ``llmsvc.io/name``. An HPA selects
its service with ``metric.selector.matchLabels``. A service whose reading is missing is left out
of the list; when every selected service is missing the answer is 503 with the reasons, so
``kubectl get --raw`` and the HPA's conditions say *missing*, never a made-up zero.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from llmsvc.metricsapi import GROUP, QUEUE_METRIC, VERSION
from llmsvc.metricsapi.auth import (
    Delegate,
    RequestHeaderConfig,
    User,
    bearer_token,
    common_name,
    from_request_headers,
)
from llmsvc.metricsapi.queue import Reading, quantity
from llmsvc.render import names

Obj = dict[str, Any]
PREFIX = f"/apis/{GROUP}/{VERSION}"
USER_KEY = web.AppKey("user", User)


class Readings(Protocol):
    """Where the server reads queues from (the scraper)."""

    def reading(self, namespace: str, name: str) -> Reading | None:
        """The queue of one service; None when unknown."""
        ...

    def services(self, namespace: str) -> list[str]:
        """Known service names of a namespace."""
        ...


def status(code: int, reason: str, message: str) -> web.Response:
    """A ``metav1.Status`` error, as every Kubernetes API answers errors."""
    body: Obj = {"kind": "Status", "apiVersion": "v1", "status": "Failure"}
    body |= {"message": message, "reason": reason, "code": code}
    return web.json_response(body, status=code)


def resource_list() -> Obj:
    """Discovery: the one metric this API serves."""
    metric = {"name": QUEUE_METRIC, "singularName": "", "namespaced": True}
    metric |= {"kind": "ExternalMetricValueList", "verbs": ["get"]}
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{GROUP}/{VERSION}",
        "resources": [metric],
    }


def parse_selector(text: str) -> list[tuple[str, str, bool]]:
    """``k=v,k!=v`` as (key, value, equal) triples; ValueError for anything else."""
    result = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        equal = "!=" not in part
        key, sep, value = part.partition("!=" if not equal else "==" if "==" in part else "=")
        if not sep or not key.strip():
            raise ValueError(
                f"unsupported label selector {part!r}: use {names.LABEL_NAME}=NAME (equality only)"
            )
        result.append((key.strip(), value.strip(), equal))
    return result


def matches(labels: dict[str, str], selector: list[tuple[str, str, bool]]) -> bool:
    """Whether ``labels`` satisfy every requirement of ``selector``."""
    return all((labels.get(k) == v) == equal for k, v, equal in selector)


def item(name: str, reading: Reading) -> Obj:
    """One ExternalMetricValue."""
    stamp = datetime.fromtimestamp(reading.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metricName": QUEUE_METRIC,
        "metricLabels": {names.LABEL_NAME: name},
        "timestamp": stamp,
        "value": quantity(reading.value or 0.0),
    }


def metric_values(readings: Readings, namespace: str, selector: str) -> web.Response:
    """The queue of every selected service of ``namespace``; 503 when all are missing."""
    try:
        wanted = parse_selector(selector)
    except ValueError as error:
        return status(400, "BadRequest", str(error))
    items, missing = [], []
    for name in readings.services(namespace):
        reading = readings.reading(namespace, name)
        if reading is None or not matches({names.LABEL_NAME: name}, wanted):
            continue
        if reading.value is None:
            missing.append(f"{namespace}/{name}: " + "; ".join(reading.missing))
        else:
            items.append(item(name, reading))
    if missing and not items:
        message = f"{QUEUE_METRIC} is missing (not zero) for " + " | ".join(missing)
        return status(503, "ServiceUnavailable", message)
    body = {"kind": "ExternalMetricValueList", "apiVersion": f"{GROUP}/{VERSION}"}
    return web.json_response(body | {"metadata": {}, "items": items})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _attributes(request: web.Request) -> Obj:
    namespace = request.match_info.get("namespace")
    if namespace is None:
        return {"path": request.path, "verb": "get"}
    return {
        "group": GROUP,
        "version": VERSION,
        "resource": request.match_info["metric"],
        "namespace": namespace,
        "verb": "list",
    }


def authenticator(config: RequestHeaderConfig, delegate: Delegate) -> Any:
    """Middleware: who is calling (request-header proxy or bearer token), then may they."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/apis/"):
            return await handler(request)
        user = await _authenticate(request, config, delegate)
        if user is None:
            return status(401, "Unauthorized", "authentication required")
        if not await delegate.authorize(user, _attributes(request)):
            return status(403, "Forbidden", f"user {user.name!r} may not read {request.path}")
        return await handler(request)

    return middleware


async def _authenticate(
    request: web.Request, config: RequestHeaderConfig, delegate: Delegate
) -> User | None:
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    user = from_request_headers(common_name(peer), request.headers, config)
    if user is not None:
        return user
    token = bearer_token(request.headers.get("Authorization"))
    return await delegate.authenticate(token) if token else None


def create_app(
    readings: Readings, config: RequestHeaderConfig, delegate: Delegate
) -> web.Application:
    """The aiohttp application of the metrics API."""

    async def discovery(_: web.Request) -> web.Response:
        return web.json_response(resource_list())

    async def values(request: web.Request) -> web.Response:
        if request.match_info["metric"] != QUEUE_METRIC:
            return status(404, "NotFound", f"no metric {request.match_info['metric']!r}")
        namespace = request.match_info["namespace"]
        return metric_values(readings, namespace, request.query.get("labelSelector", ""))

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[authenticator(config, delegate)])
    app.router.add_get(PREFIX, discovery)
    app.router.add_get(PREFIX + "/namespaces/{namespace}/{metric}", values)
    for path in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(path, healthz)
    return app


def tls_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """Serving TLS; client certificates are optional but verified against ``client_ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert_file.write_text(cert)
        key_file.touch(mode=0o600)
        key_file.write_text(key)
        context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(cadata=client_ca)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context
