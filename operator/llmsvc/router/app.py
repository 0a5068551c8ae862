"""The router's aiohttp application factory: routes, middlewares and background tasks.

``create_app(config, registry, discovery)`` wires one policy, one pool, one admission queue
and one upstream client session; nothing is global, so tests run many routers side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from llmsvc.router import health
from llmsvc.router.admission import Admission
from llmsvc.router.config import RouterConfig
from llmsvc.router.discovery import Discovery
from llmsvc.router.errors import RequestError, error_bytes
from llmsvc.router.metrics import RouterMetrics, StateCollector
from llmsvc.router.policies import RequestInfo, make_policy
from llmsvc.router.pool import Pool
from llmsvc.router.proxy import STARTED, Proxy
from llmsvc.router.requests import priority_of, request_info

log = logging.getLogger("llmsvc.router")
PROXY = web.AppKey("proxy", Proxy)
REGISTRY = web.AppKey("registry", CollectorRegistry)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    config: RouterConfig, discovery: Discovery, registry: CollectorRegistry | None = None
) -> web.Application:
    """Build the router application; ``registry`` receives its metrics."""
    registry = registry if registry is not None else CollectorRegistry()
    pool = Pool(config)
    policy = make_policy(config.policy, config.balance_factor, config.balance_slack)
    admission = Admission(pool, policy)
    registry.register(StateCollector(admission))
    proxy = Proxy(config, pool, admission, RouterMetrics(registry))
    app = web.Application(
        client_max_size=config.max_body_bytes, middlewares=[_errors_and_metrics, _auth]
    )
    app[PROXY] = proxy
    app[REGISTRY] = registry
    app.router.add_post("/v1/chat/completions", _completion)
    app.router.add_post("/v1/completions", _completion)
    app.router.add_get("/v1/models", _models)
    app.router.add_route("*", "/v1/{tail:.*}", _other)
    app.router.add_get("/health", _health)
    app.router.add_get("/ready", _ready)
    app.router.add_get("/metrics", _metrics)
    app.cleanup_ctx.append(_background(discovery))
    return app


def _background(
    discovery: Discovery,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def run(app: web.Application) -> AsyncIterator[None]:
        proxy = app[PROXY]
        proxy.session = _client_session(proxy.config)
        tasks = [
            asyncio.create_task(discovery.run(proxy.pool.set_urls)),
            asyncio.create_task(health.run_checks(proxy.session, proxy.pool)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await proxy.session.close()

    return run


def _client_session(config: RouterConfig) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(
        total=config.request_timeout,
        sock_connect=config.connect_timeout,
        sock_read=config.read_timeout,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=["User-Agent"],
    )


def _error_response(err: RequestError) -> web.Response:
    return web.Response(
        status=err.status,
        body=error_bytes(err.status, err.message, err.param),
        content_type="application/json",
        headers=err.headers,
    )


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[STARTED] = time.monotonic()
    metrics = request.app[PROXY].metrics
    try:
        response = await handler(request)
    except RequestError as err:
        response = _error_response(err)
    except web.HTTPException as exc:
        message = "request body too large" if exc.status == 413 else exc.reason
        if exc.status == 404:
            message = f"no route for {request.method} {request.path}"
        response = _error_response(RequestError(exc.status, message))
    except ConnectionResetError:
        metrics.requests.labels("499").inc()
        raise
    metrics.requests.labels(str(response.status)).inc()
    metrics.duration.observe(time.monotonic() - request[STARTED])
    return response


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    keys = request.app[PROXY].config.api_keys
    if keys and request.path.startswith("/v1/"):
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not any(hmac.compare_digest(given.encode(), key.encode()) for key in keys):
            raise RequestError(401, "a valid API key is required: send 'Authorization: Bearer KEY'")
    return await handler(request)


async def _completion(request: web.Request) -> web.StreamResponse:
    proxy = request.app[PROXY]
    body = await request.read()
    session = request.headers.get(proxy.config.session_header)
    info = request_info(request.path, body, session)
    known = proxy.pool.models()
    if info.model is not None and known and info.model not in known:
        served = ", ".join(sorted(known))
        raise RequestError(
            404, f"The model `{info.model}` does not exist; served: {served}", "model"
        )
    priority = priority_of(request.headers.get(proxy.config.priority_header))
    return await proxy.forward(request, body, info, priority)


async def _models(request: web.Request) -> web.StreamResponse:
    known = request.app[PROXY].pool.models()
    if not known:
        return await _other(request)
    cards = [
        {"id": m, "object": "model", "created": 0, "owned_by": "llmsvc"} for m in sorted(known)
    ]
    return web.json_response({"object": "list", "data": cards})


async def _other(request: web.Request) -> web.StreamResponse:
    proxy = request.app[PROXY]
    body = await request.read()
    priority = priority_of(request.headers.get(proxy.config.priority_header))
    return await proxy.forward(request, body, RequestInfo(), priority)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _ready(request: web.Request) -> web.Response:
    if not request.app[PROXY].pool.any_usable():
        raise RequestError(503, "no healthy backend is available")
    return web.json_response({"status": "ready"})


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
