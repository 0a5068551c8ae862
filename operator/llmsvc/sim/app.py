"""The simulator's HTTP layer: OpenAI endpoints, ``/health``, ``/metrics`` and ``/sim/stats``."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from llmsvc.router.errors import RequestError, error_bytes
from llmsvc.sim import protocol
from llmsvc.sim.cache import PrefixCache
from llmsvc.sim.engine import Engine, SimConfig, tokenize
from llmsvc.sim.metrics import EngineCollector, SimMetrics

ENGINE = web.AppKey("engine", Engine)
REGISTRY = web.AppKey("registry", CollectorRegistry)
READY_AT = web.AppKey("ready_at", float)


def create_app(config: SimConfig, registry: CollectorRegistry | None = None) -> web.Application:
    """Build the simulator application; ``registry`` receives its metrics."""
    registry = registry if registry is not None else CollectorRegistry()
    engine = Engine(config, SimMetrics(registry, config.model))
    registry.register(EngineCollector(engine))
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[_errors])
    app[ENGINE] = engine
    app[REGISTRY] = registry
    app[READY_AT] = time.monotonic() + config.load_seconds
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/completions", _text)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/sim/stats", _stats)
    app.router.add_post("/reset_prefix_cache", _reset_prefix_cache)
    return app


def _json_error(err: RequestError) -> web.Response:
    return web.Response(
        status=err.status,
        body=error_bytes(err.status, err.message, err.param),
        content_type="application/json",
    )


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except RequestError as err:
        return _json_error(err)
    except web.HTTPException as exc:
        return _json_error(RequestError(exc.status, exc.reason))
    return response


def _loading(request: web.Request) -> bool:
    return time.monotonic() < request.app[READY_AT]


async def _health(request: web.Request) -> web.Response:
    if _loading(request):
        raise RequestError(503, "the model is still loading")
    return web.Response(status=200)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(dataclasses.asdict(request.app[ENGINE].stats))


async def _reset_prefix_cache(request: web.Request) -> web.Response:
    """Empty the prefix cache, as vLLM's dev endpoint of the same name does."""
    engine = request.app[ENGINE]
    engine.cache = PrefixCache(engine.cache.capacity_blocks)
    return web.Response(status=200)


async def _models(request: web.Request) -> web.Response:
    model = request.app[ENGINE].config.model
    card = {"id": model, "object": "model", "created": 0, "owned_by": "llmsvc-sim"}
    return web.json_response({"object": "list", "data": [card]})


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _complete(request, "chat")


async def _text(request: web.Request) -> web.StreamResponse:
    return await _complete(request, "text")


async def _read_json(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the request body is not valid JSON: {exc}") from exc


async def _complete(request: web.Request, kind: protocol.Kind) -> web.StreamResponse:
    if _loading(request):
        raise RequestError(503, "the model is still loading")
    engine = request.app[ENGINE]
    req = protocol.parse_completion(kind, await _read_json(request), engine.config.model)
    tokens = tokenize(req.prompt)
    max_tokens = req.max_tokens or engine.config.default_max_tokens
    if len(tokens) + max_tokens > engine.config.max_model_len:
        raise RequestError(
            400,
            f"This model's maximum context length is {engine.config.max_model_len} tokens; "
            f"the request has {len(tokens)} prompt tokens and asks for {max_tokens}.",
            "messages" if kind == "chat" else "prompt",
        )
    request_id = request.headers.get("x-request-id") or f"cmpl-{uuid.uuid4().hex}"
    words = engine.generate(request_id, req.prompt, tokens, max_tokens)
    if req.stream:
        return await _stream(request, req, request_id, words, len(tokens))
    out = [word async for word in words]
    body = protocol.full_response(req, request_id, " ".join(out), len(tokens), len(out))
    return web.json_response(body, headers={"x-request-id": request_id})


async def _stream(
    request: web.Request, req: protocol.Completion, request_id: str, words: Any, prompt_len: int
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "x-request-id": request_id,
        }
    )
    await response.prepare(request)
    count = 0
    try:
        async for word in words:
            text = word if count == 0 else " " + word
            await response.write(protocol.chunk(req, request_id, text, first=count == 0))
            count += 1
    finally:
        await words.aclose()
    await response.write(protocol.chunk(req, request_id, "", finish="length"))
    if req.include_usage:
        await response.write(protocol.usage_chunk(req, request_id, prompt_len, count))
    await response.write(protocol.DONE)
    await response.write_eof()
    return response
