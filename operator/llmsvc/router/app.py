"""The router's aiohttp application factory: routes, middlewares and background tasks.

``create_app(config, registry, discovery)`` wires one policy, one pool, one admission queue
and one upstream client session; nothing is global, so tests run many routers side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)

from llmsvc.router import health, paths
from llmsvc.router.admission import Admission
from llmsvc.router.budget import BodyBudget
from llmsvc.router.config import RouterConfig
from llmsvc.router.connections import ConnectionGuard
from llmsvc.router.discovery import Discovery
from llmsvc.router.errors import RequestError, error_bytes
from llmsvc.router.jsonscan import JsonLimits
from llmsvc.router.keys import KeyRing
from llmsvc.router.load import Scraper
from llmsvc.router.metrics import RouterMetrics, StateCollector
from llmsvc.router.policies import RequestInfo, make_policy
from llmsvc.router.pool import Pool
from llmsvc.router.proxy import STARTED, Proxy
from llmsvc.router.requests import priority_of, request_info
from llmsvc.router.server import GUARD

log = logging.getLogger("llmsvc.router")
PROXY = web.AppKey("proxy", Proxy)
# Probes and scrapes are not client requests: they are left out of the request metrics.
NOT_REQUESTS = frozenset({"/health", "/ready", "/metrics"})
REGISTRY = web.AppKey("registry", CollectorRegistry)
KEYS = web.AppKey("keys", KeyRing)
BUDGET = web.AppKey("budget", BodyBudget)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    config: RouterConfig, discovery: Discovery, registry: CollectorRegistry | None = None
) -> web.Application:
    """Build the router application; ``registry`` receives its metrics."""
    if registry is None:
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_* (CPU, memory, open fds) of this router
    pool = Pool(config)
    policy = make_policy(config.policy, config.balance_factor, config.balance_slack)
    admission = Admission(pool, policy)
    registry.register(StateCollector(admission))
    proxy = Proxy(config, pool, admission, RouterMetrics(registry))
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[_errors_and_metrics, _plain_path, _auth],
    )
    app[PROXY] = proxy
    app[REGISTRY] = registry
    app[KEYS] = KeyRing(config.api_keys, config.api_key_file)
    app[KEYS].reload()
    app[GUARD] = ConnectionGuard(registry, config.max_connections, config.idle_timeout)
    app[BUDGET] = BodyBudget(config.max_buffered_bytes, registry)
    for path in paths.PARSED:
        app.router.add_post(path, _held(_completion))
    for path in paths.PASSED:
        app.router.add_post(path, _held(_other))
    app.router.add_get(paths.MODELS, _models)
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
            asyncio.create_task(app[KEYS].watch(proxy.config.key_reload_seconds)),
        ]
        if proxy.config.load_interval > 0:
            tasks.append(asyncio.create_task(Scraper(proxy.pool).run(proxy.session)))
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
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=["User-Agent"],
    )


def _error_response(err: RequestError) -> web.Response:
    response = web.Response(
        status=err.status,
        body=error_bytes(err.status, err.message, err.param),
        content_type="application/json",
        headers=err.headers,
    )
    if err.status in (408, 413):
        response.force_close()  # the rest of the body is not worth reading
    return response


def _http_error(request: web.Request, exc: web.HTTPException) -> RequestError:
    if exc.status == 413:
        return RequestError(413, "request body too large (flag --max-body-bytes)")
    if exc.status == 404:
        return RequestError(404, f"no route for {request.method} {request.path}")
    return RequestError(exc.status, exc.reason)


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes an OpenAI-format error; no request content is ever logged."""
    request[STARTED] = time.monotonic()
    metrics = request.app[PROXY].metrics
    try:
        response = await handler(request)
    except RequestError as err:
        response = _error_response(err)
    except web.HTTPException as exc:
        response = _error_response(_http_error(request, exc))
    except ConnectionResetError:
        metrics.requests.labels("499").inc()
        raise
    except Exception as exc:  # a bug: answer 500 and log the kind, never the message
        log.error(
            "internal error on %s %s (%s)", request.method, _route(request), type(exc).__name__
        )
        response = _error_response(RequestError(500, "the router failed; see its log"))
    if request.path not in NOT_REQUESTS:
        metrics.requests.labels(str(response.status)).inc()
        metrics.duration.observe(time.monotonic() - request[STARTED])
    return response


def _route(request: web.Request) -> str:
    """The matched route (never the client's spelling of the path)."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "-"


@web.middleware
async def _plain_path(request: web.Request, handler: Handler) -> web.StreamResponse:
    paths.check_path(request.raw_path)
    return await handler(request)


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    keys = request.app[KEYS]
    if keys.enabled and request.path.startswith("/v1/"):
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not keys.check(given):
            raise RequestError(401, "a valid API key is required: send 'Authorization: Bearer KEY'")
    return await handler(request)


def _held(handler: Handler) -> Handler:
    """``handler`` with its request body's size reserved from the budget while it runs."""

    async def held(request: web.Request) -> web.StreamResponse:
        config = request.app[PROXY].config
        size = config.max_body_bytes
        if request.content_length is not None and "Content-Encoding" not in request.headers:
            size = min(size, request.content_length)
        with request.app[BUDGET].hold(size if request.body_exists else 0):
            return await handler(request)

    return held


async def read_body(request: web.Request) -> bytes:
    """The decoded request body, within ``body_timeout`` (408) and its Content-Encoding (400)."""
    limit = request.app[PROXY].config.body_timeout
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        request.app[GUARD].timeouts.labels("body").inc()
        raise RequestError(408, f"the request body did not arrive within {limit:g} s") from None
    except (HttpProcessingError, RequestPayloadError, zlib.error) as exc:
        raise RequestError(400, _unreadable(request, exc)) from None


def _unreadable(request: web.Request, exc: Exception) -> str:
    encoding = request.headers.get("Content-Encoding")
    if encoding:
        return f"the request body does not decode as Content-Encoding {encoding!r}; send it as is"
    return f"the request body could not be read ({type(exc).__name__}); check its framing"


async def _forward(request: web.Request, body: bytes, info: RequestInfo) -> web.StreamResponse:
    proxy = request.app[PROXY]
    priority = priority_of(request.headers.get(proxy.config.priority_header))
    query = request.raw_path.partition("?")[2]
    target = _route(request) + (f"?{query}" if query else "")
    strip_auth = request.app[KEYS].enabled
    return await proxy.forward(
        request, target, body, info=info, priority=priority, strip_auth=strip_auth
    )


async def _completion(request: web.Request) -> web.StreamResponse:
    proxy = request.app[PROXY]
    body = await read_body(request)
    session = request.headers.get(proxy.config.session_header)
    limits = JsonLimits(proxy.config.max_json_values, proxy.config.max_json_depth)
    info = request_info(request.path, body, session, limits)
    known = proxy.pool.models()
    if info.model is not None and known and info.model not in known:
        served = ", ".join(sorted(known))
        raise RequestError(
            404, f"The model `{info.model}` does not exist; served: {served}", "model"
        )
    return await _forward(request, body, info)


async def _models(request: web.Request) -> web.StreamResponse:
    known = request.app[PROXY].pool.models()
    if not known:
        return await _other(request)
    cards = [
        {"id": m, "object": "model", "created": 0, "owned_by": "llmsvc"} for m in sorted(known)
    ]
    return web.json_response({"object": "list", "data": cards})


async def _other(request: web.Request) -> web.StreamResponse:
    return await _forward(request, await read_body(request), RequestInfo())


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _ready(request: web.Request) -> web.Response:
    if not request.app[PROXY].pool.any_usable():
        raise RequestError(503, "no healthy backend is available")
    return web.json_response({"status": "ready"})


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
