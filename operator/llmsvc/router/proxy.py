"""Forwarding: admit, send upstream, retry before the first byte, stream the answer through.

Bytes are relayed as they arrive (no buffering, no compression). A request is retried on
another backend only when the upstream connection failed or answered 5xx before anything was
sent to the client. When the client goes away, the upstream response is closed, which closes
the connection, so vLLM aborts the request.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

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
        "accept-encoding",
        "server",
        "date",
    ]
)
RETRYABLE = frozenset({500, 502, 503, 504})


@dataclass
class Proxy:
    """Everything a forwarded request needs; built once by the app factory."""

    config: RouterConfig
    pool: Pool
    admission: Admission
    metrics: RouterMetrics
    session: aiohttp.ClientSession | None = None

    def upstream_headers(self, incoming: Mapping[str, str]) -> CIMultiDict[str]:
        """Client headers minus hop-by-hop ones (and the router's own API key)."""
        headers = CIMultiDict((k, v) for k, v in incoming.items() if k.lower() not in HOP_BY_HOP)
        if self.config.api_keys:
            headers.popall("Authorization", None)
        headers["Accept-Encoding"] = "identity"
        headers.setdefault("x-request-id", uuid.uuid4().hex)
        return headers

    async def forward(
        self, request: web.Request, body: bytes, info: RequestInfo, priority: int
    ) -> web.StreamResponse:
        """Send ``request`` to a backend chosen by the policy and relay the answer."""
        tried: set[str] = set()
        headers = self.upstream_headers(request.headers)
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            endpoint = await self._admit(info, frozenset(tried), priority)
            last = attempt == attempts - 1
            upstream = await self._send(request, endpoint, body, headers, last)
            if upstream is None or (upstream.status in RETRYABLE and not last):
                self._give_up(endpoint, upstream)
                tried.add(endpoint.url)
                self.metrics.retries.inc()
                continue
            try:
                return await self._relay(request, upstream, endpoint)
            finally:
                self.admission.release(endpoint)
        raise RequestError(502, "no backend could serve the request")  # pragma: no cover

    async def _admit(self, info: RequestInfo, tried: frozenset[str], priority: int) -> Endpoint:
        start = time.monotonic()
        timeout = self.config.queue_timeout
        endpoint = await self.admission.admit(info, tried, priority, timeout)
        self.metrics.queue_wait.observe(time.monotonic() - start)
        return endpoint

    def _give_up(self, endpoint: Endpoint, upstream: aiohttp.ClientResponse | None) -> None:
        if upstream is not None:
            upstream.close()
            self.pool.failed(endpoint.url)
        self.admission.release(endpoint)

    async def _send(
        self,
        request: web.Request,
        endpoint: Endpoint,
        body: bytes,
        headers: CIMultiDict[str],
        last: bool,
    ) -> aiohttp.ClientResponse | None:
        """The upstream response, or ``None`` after a connection failure worth retrying."""
        assert self.session is not None
        url = endpoint.url + request.rel_url.path_qs
        try:
            return await self.session.request(request.method, url, data=body, headers=headers)
        except aiohttp.SocketTimeoutError:
            self.admission.release(endpoint)
            raise RequestError(504, "the backend did not answer in time") from None
        except aiohttp.ClientConnectionError as exc:
            self.pool.failed(endpoint.url, hard=True)
            if last:
                self.admission.release(endpoint)
                raise RequestError(502, f"backend unreachable ({type(exc).__name__})") from None
            return None  # the caller releases the slot and retries elsewhere
        except BaseException:
            self.admission.release(endpoint)
            raise

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse, endpoint: Endpoint
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for key, value in upstream.headers.items():
            if key.lower() not in HOP_BY_HOP:
                response.headers.add(key, value)
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        if upstream.status >= 500:
            self.pool.failed(endpoint.url)
        else:
            self.pool.succeeded(endpoint.url)
        finished = False
        try:
            await response.prepare(request)
            finished = await self._pump(request, upstream, response, endpoint)
        finally:
            if finished:
                upstream.release()
            else:
                upstream.close()
        return response

    async def _pump(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        response: web.StreamResponse,
        endpoint: Endpoint,
    ) -> bool:
        """Copy body chunks as they arrive; ``True`` when the upstream body ended cleanly."""
        first = True
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
                if first:
                    self.metrics.first_byte.observe(time.monotonic() - request_started(request))
                    first = False
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
            self.pool.failed(endpoint.url, hard=True)
            await _stream_error(response, upstream)
            return False
        except ConnectionResetError:
            return False  # the client went away: closing upstream aborts the generation
        await response.write_eof()
        return True


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
