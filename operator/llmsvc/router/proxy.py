"""Forwarding: admit, send upstream, retry before the first byte, stream the answer through.

Bytes are relayed as they arrive (no buffering, no compression). Nothing is sent to the client
before the backend's first body byte arrived, so until then a request can still go elsewhere:
after a connection failure, a 502/503/504, a 500 (see below), or when the active health check
marks its backend unhealthy (a hung backend: its waiting requests move on within one check).
Two upstream timeouts: ``first_byte_timeout`` from sending to the first body byte (a whole
non-streaming generation fits in it) and ``chunk_timeout`` between body chunks once streaming.

Who is to blame: a 502/503/504 or a broken connection counts against the backend; a 500 is
retried on another backend and counts against the first one only when another backend served
the same request. When every backend answers 500 the request itself is at fault (vLLM answers
500 to some inputs): the last backend's own error goes to the client and nobody is charged.
When the client goes away, the upstream response is closed, which closes the connection, so
vLLM aborts the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from llmsvc.router.admission import Admission
from llmsvc.router.config import RouterConfig
from llmsvc.router.errors import RequestError, error_body
from llmsvc.router.metrics import RouterMetrics
from llmsvc.router.policies import Endpoint, RequestInfo
from llmsvc.router.pool import Pool

HOP_BY_HOP = frozenset(
    [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",  # the router forwards the body aiohttp already decoded
        "accept-encoding",
        "server",
        "date",
    ]
)
UNAVAILABLE = frozenset({502, 503, 504})


@dataclass(frozen=True)
class Outgoing:
    """What is sent upstream, the same on every attempt."""

    method: str
    target: str
    body: bytes
    headers: CIMultiDict[str]


@dataclass
class Upstream:
    """A backend's answer whose first body chunk has arrived (and was not sent on yet)."""

    response: aiohttp.ClientResponse
    first: bytes
    endpoint: Endpoint
    sent_at: float


@dataclass
class Proxy:
    """Everything a forwarded request needs; built once by the app factory."""

    config: RouterConfig
    pool: Pool
    admission: Admission
    metrics: RouterMetrics
    session: aiohttp.ClientSession | None = None
    _down: dict[str, set[asyncio.Future[None]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pool.down_listeners.append(self._backend_down)

    def upstream_headers(self, incoming: Mapping[str, str], strip_auth: bool) -> CIMultiDict[str]:
        """Client headers minus hop-by-hop ones (and the router's own API key)."""
        headers = CIMultiDict((k, v) for k, v in incoming.items() if k.lower() not in HOP_BY_HOP)
        if strip_auth:
            headers.popall("Authorization", None)
        headers["Accept-Encoding"] = "identity"
        headers.setdefault("x-request-id", uuid.uuid4().hex)
        return headers

    async def forward(
        self,
        request: web.Request,
        target: str,
        body: bytes,
        *,
        info: RequestInfo,
        priority: int,
        strip_auth: bool,
    ) -> web.StreamResponse:
        """Send ``body`` to ``target`` (a path and query) on a backend and relay the answer."""
        headers = self.upstream_headers(request.headers, strip_auth)
        out = Outgoing(request.method, target, body, headers)
        tried: list[str] = []
        errors: list[Upstream] = []  # 500s, charged only if another backend serves the request
        for attempt in range(self.config.max_retries + 1):
            endpoint = await self._admit(info, frozenset(tried), priority)
            tried.append(endpoint.url)
            last = attempt == self.config.max_retries or not self.pool.any_usable(frozenset(tried))
            upstream = await self._attempt(out, endpoint, last)
            if upstream is not None and (last or upstream.response.status not in RETRYABLE):
                self._judge(upstream, errors)
                return await self._relay(request, upstream)
            if upstream is not None:
                self._judge_retried(upstream, errors)
            self.metrics.retries.inc()
        raise RequestError(502, "no backend could serve the request")  # pragma: no cover

    async def _admit(self, info: RequestInfo, tried: frozenset[str], priority: int) -> Endpoint:
        start = time.monotonic()
        timeout = self.config.queue_timeout
        endpoint = await self.admission.admit(info, tried, priority, timeout)
        self.metrics.queue_wait.observe(time.monotonic() - start)
        return endpoint

    def _judge_retried(self, upstream: Upstream, errors: list[Upstream]) -> None:
        """A response that will be retried elsewhere: free its slot; 502-504 count at once."""
        upstream.response.close()
        if upstream.response.status in UNAVAILABLE:
            self.pool.failed(upstream.endpoint.url, sent_at=upstream.sent_at)
        else:
            errors.append(upstream)
        self.admission.release(upstream.endpoint)

    def _judge(self, final: Upstream, errors: list[Upstream]) -> None:
        """Charge or clear backends now that ``final`` is the answer the client gets."""
        status = final.response.status
        if status in UNAVAILABLE:
            self.pool.failed(final.endpoint.url, sent_at=final.sent_at)
        elif status != 500:  # all 500 (or unreachable): the request is at fault, charge nobody
            self.pool.succeeded(final.endpoint.url)
            for earlier in errors:  # another backend served it: those 500s were not its fault
                self.pool.failed(earlier.endpoint.url, sent_at=earlier.sent_at)

    async def _attempt(self, out: Outgoing, endpoint: Endpoint, last: bool) -> Upstream | None:
        """The backend's answer, or ``None`` when the request may go elsewhere (slot freed)."""
        sent_at = self.pool.now()
        try:
            response, first = await self._first_byte(out, endpoint)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            self.pool.failed(endpoint.url, hard=True, sent_at=sent_at)
            self._no_answer(endpoint, last, f"backend unreachable ({type(exc).__name__})")
            return None
        except _BackendDownError:
            self._no_answer(endpoint, last, "the backend became unhealthy")
            return None
        except BaseException:
            self.admission.release(endpoint)
            raise
        return Upstream(response, first, endpoint, sent_at)

    def _no_answer(self, endpoint: Endpoint, last: bool, why: str) -> None:
        self.admission.release(endpoint)
        if last:
            raise RequestError(502, f"no backend could serve the request: {why}")

    async def _first_byte(
        self, out: Outgoing, endpoint: Endpoint
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        """Send, then wait for the first body byte, the timeout, or the backend going down."""
        assert self.session is not None
        down: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._down.setdefault(endpoint.url, set()).add(down)
        url = URL(endpoint.url + out.target, encoded=True)
        task = asyncio.ensure_future(_open(self.session, out, url))
        waits: list[asyncio.Future[Any]] = [task, down]
        try:
            await asyncio.wait(
                waits,
                timeout=self.config.first_byte_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:  # the client went away: drop whatever the backend sent
            await _discard(task)
            raise
        finally:
            self._forget(endpoint.url, down)
        if task.done():
            return task.result()
        await _discard(task)
        if down.done():
            raise _BackendDownError
        limit = self.config.first_byte_timeout
        raise RequestError(504, f"the backend sent nothing within {limit:g} s")

    def _forget(self, url: str, down: asyncio.Future[None]) -> None:
        waiters = self._down[url]
        waiters.discard(down)
        if not waiters:
            del self._down[url]

    def _backend_down(self, url: str) -> None:
        for waiter in self._down.get(url, ()):
            if not waiter.done():
                waiter.set_result(None)

    async def _relay(self, request: web.Request, upstream: Upstream) -> web.StreamResponse:
        source = upstream.response
        response = web.StreamResponse(status=source.status, reason=source.reason)
        for key, value in source.headers.items():
            if key.lower() not in HOP_BY_HOP:
                response.headers.add(key, value)
        if source.content_length is not None:
            response.content_length = source.content_length
        finished = False
        try:
            await response.prepare(request)
            finished = await self._pump(request, upstream, response)
        finally:
            if finished:
                source.release()
            else:
                source.close()
            self.admission.release(upstream.endpoint)
        return response

    async def _pump(
        self, request: web.Request, upstream: Upstream, response: web.StreamResponse
    ) -> bool:
        """Copy body chunks as they arrive; ``True`` when the upstream body ended cleanly."""
        try:
            if upstream.first:
                await response.write(upstream.first)
                self.metrics.first_byte.observe(time.monotonic() - request_started(request))
                await self._rest(upstream.response, response)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
            self.pool.failed(upstream.endpoint.url, hard=True, sent_at=upstream.sent_at)
            await _stream_error(response, upstream.response)
            return False
        except ConnectionResetError:
            return False  # the client went away: closing upstream aborts the generation
        await response.write_eof()
        return True

    async def _rest(self, source: aiohttp.ClientResponse, response: web.StreamResponse) -> None:
        """Copy the chunks after the first; ``TimeoutError`` when one is ``chunk_timeout`` late."""
        while True:
            async with asyncio.timeout(self.config.chunk_timeout):
                chunk = await source.content.readany()
            if not chunk:
                return
            await response.write(chunk)


RETRYABLE = UNAVAILABLE | {500}


class _BackendDownError(Exception):
    """The active health check marked the backend unhealthy while we waited for it."""


async def _open(
    session: aiohttp.ClientSession, out: Outgoing, url: URL
) -> tuple[aiohttp.ClientResponse, bytes]:
    """The response and its first body chunk (empty when the body is empty)."""
    response = await session.request(out.method, url, data=out.body, headers=out.headers)
    try:
        return response, await response.content.readany()
    except BaseException:
        response.close()
        raise


async def _discard(task: asyncio.Future[tuple[aiohttp.ClientResponse, bytes]]) -> None:
    """Cancel an upstream request, or close its response if it already arrived."""
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    elif not task.cancelled() and task.exception() is None:
        task.result()[0].close()


async def _stream_error(response: web.StreamResponse, upstream: aiohttp.ClientResponse) -> None:
    """Tell a streaming client the backend failed mid-answer (its status is already sent)."""
    if upstream.content_type != "text/event-stream":
        return
    body = error_body(502, "the backend failed while streaming the response")
    try:
        await response.write(b"data: " + json.dumps(body).encode() + b"\n\n")
        await response.write_eof()
    except ConnectionResetError:
        return


STARTED = web.RequestKey("started", float)


def request_started(request: web.Request) -> float:
    """When the router received ``request`` (monotonic seconds)."""
    started: float = request.get(STARTED, time.monotonic())
    return started
