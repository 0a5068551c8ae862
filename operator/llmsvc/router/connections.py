"""Client connections: a cap, an idle/header timeout, and safe answers to malformed HTTP.

aiohttp keeps a connection that sends nothing (or a request head one byte at a time) for an
hour, accepts any number of connections, answers malformed HTTP with plain text, and logs the
offending bytes (headers, API keys, prompts) at ERROR. ``GuardedHandler`` is aiohttp's own
protocol with four changes:

- beyond ``max_connections`` open connections a new one gets a 503 (OpenAI JSON) and is closed;
- a connection that has not sent a complete request head within ``idle_timeout`` seconds of
  opening or of its previous response is closed (aiohttp's keep-alive timer, which also runs
  before the first request, set to that value);
- malformed HTTP (bad request line, header or chunked body) is answered with an OpenAI-format
  error that names only the kind of problem;
- its log messages keep aiohttp's static text and drop every argument and traceback, so no
  byte a client sent can reach the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CollectorRegistry, Counter, Gauge

from llmsvc.router.errors import error_bytes

log = logging.getLogger("llmsvc.router.http")

_REASONS = {400: "Bad Request", 413: "Payload Too Large", 431: "Headers Too Large"}
_FULL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
)


class ConnectionGuard:
    """Limits and metrics shared by every connection of one router."""

    def __init__(
        self, registry: CollectorRegistry, max_connections: int, idle_timeout: float
    ) -> None:
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.open = 0
        Gauge(
            "llmsvc_router_connections", "Open client connections.", registry=registry
        ).set_function(lambda: self.open)
        self.rejected = Counter(
            "llmsvc_router_connections_rejected",
            "Client connections refused because --max-connections were open.",
            registry=registry,
        )
        self.timeouts = Counter(
            "llmsvc_router_client_timeouts",
            "Client connections closed for slowness, by phase (idle/header, body).",
            ["phase"],
            registry=registry,
        )
        self.malformed = Counter(
            "llmsvc_router_malformed_requests",
            "Requests aiohttp could not parse as HTTP (answered 400 and closed).",
            registry=registry,
        )

    def factory(self, server: web.Server) -> Callable[[], RequestHandler]:
        """The protocol factory for ``loop.create_server`` over ``server`` (an app's runner)."""
        loop = asyncio.get_running_loop()
        return lambda: GuardedHandler(
            server, self, loop=loop, access_log=None, keepalive_timeout=self.idle_timeout
        )


class GuardedHandler(RequestHandler):
    """aiohttp's HTTP protocol with a connection cap, safe errors and argument-free logs."""

    def __init__(self, server: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(server, logger=log, **kwargs)
        self.guard = guard
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Serve the connection, or answer 503 and close it when the cap is reached."""
        if self.guard.open >= self.guard.max_connections:
            self.guard.rejected.inc()
            body = error_bytes(503, "the router has too many open connections; retry later")
            assert isinstance(transport, asyncio.Transport)
            transport.write(_FULL % (len(body), body))
            transport.close()
            return
        self.counted = True
        self.guard.open += 1
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Forget the connection (only a counted one was ever served)."""
        if not self.counted:
            return
        self.counted = False
        self.guard.open -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse only on served connections."""
        if self.counted:
            super().data_received(data)

    def _process_keepalive(self) -> None:
        was_open = self.transport is not None
        super()._process_keepalive()
        if was_open and self.transport is None:
            self.guard.timeouts.labels("idle").inc()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """An OpenAI-format error naming only the kind of problem; the connection closes."""
        kind = type(exc).__name__ if exc is not None else "error"
        log.info("answered %d to a request aiohttp could not handle (%s)", status, kind)
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started")
        if isinstance(exc, ContentEncodingError):
            self.guard.malformed.inc()
            text = "the request body does not decode with its Content-Encoding (gzip and deflate "
            text += "are supported); send it uncompressed"
        elif 400 <= status < 500:
            self.guard.malformed.inc()
            text = f"malformed HTTP request ({kind}): check the request line, headers and body"
        else:
            text = "the router failed to handle the request"
        response = web.Response(
            status=status,
            reason=_REASONS.get(status),
            body=error_bytes(status, text),
            content_type="application/json",
        )
        response.force_close()
        return response

    def log_debug(self, *args: Any, **kw: Any) -> None:
        """aiohttp's debug message, static text only."""
        if args and isinstance(args[0], str):
            log.debug("aiohttp: %s", args[0].split("%")[0].strip())

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's error message, static text and exception type only (no traceback)."""
        text = args[0].split("%")[0].strip() if args and isinstance(args[0], str) else ""
        kind = type(kw.get("exc_info")).__name__
        log.error("aiohttp: %s (%s)", text, kind)
