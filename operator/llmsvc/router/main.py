"""``llmsvc router``: run the OpenAI-compatible router in front of vLLM backends.

Backends come from ``--backend URL`` (repeatable) or from the EndpointSlices of Service
``NAME-leaders`` (``--service NAME --namespace NS``). Only the standard library is imported
at module top; aiohttp and kubernetes-asyncio are imported inside ``run``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

POLICIES = ("round-robin", "least-request", "prefix-aware", "session")
API_KEYS_ENV = "LLMSVC_ROUTER_API_KEYS"
LIMITS = (
    "max_concurrency",
    "queue_size",
    "max_body_bytes",
    "max_buffered_bytes",
    "max_json_values",
    "max_json_depth",
    "max_connections",
    "max_metrics_bytes",
    "health_failures",
)
TIMEOUTS = (
    "first_byte_timeout",
    "chunk_timeout",
    "idle_timeout",
    "body_timeout",
    "load_timeout",
    "health_timeout",
    "health_interval",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The router's flags."""
    src = parser.add_argument_group("backends (choose one source)")
    src.add_argument("--backend", action="append", default=[], metavar="URL", help="repeatable")
    src.add_argument("--service", help="LLMService name: watch EndpointSlices of NAME-leaders")
    src.add_argument("--namespace", help="namespace of --service")
    src.add_argument("--backend-port", type=int, default=8000, help="port of discovered backends")
    parser.add_argument("--policy", choices=POLICIES, default="least-request")
    parser.add_argument(
        "--balance-factor",
        type=float,
        default=1.5,
        help="prefix-aware: a backend above FACTOR x mean load loses its affinity",
    )
    parser.add_argument(
        "--balance-slack",
        type=int,
        default=8,
        help="prefix-aware: ... unless it is within SLACK requests of the least loaded",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--max-concurrency", type=int, default=256, help="per backend")
    parser.add_argument("--queue-size", type=int, default=1024, help="waiting requests, max")
    parser.add_argument("--queue-timeout", type=float, default=30.0, help="seconds in queue, max")
    parser.add_argument(
        "--hold-when-empty",
        action="store_true",
        help="queue requests while no backend exists (scale to zero) instead of answering 503",
    )
    parser.add_argument("--connect-timeout", type=float, default=5.0, help="seconds")
    parser.add_argument(
        "--first-byte-timeout",
        type=float,
        default=600.0,
        help="seconds from sending a request to its first response byte (a whole non-streaming "
        "answer must fit)",
    )
    parser.add_argument(
        "--chunk-timeout", type=float, default=60.0, help="seconds between streamed chunks"
    )
    parser.add_argument("--request-timeout", type=float, default=1800.0, help="seconds in total")
    parser.add_argument("--max-retries", type=int, default=2, help="before the first byte only")
    parser.add_argument("--health-interval", type=float, default=5.0, help="seconds")
    parser.add_argument(
        "--health-timeout", type=float, default=2.0, help="seconds for one /health check"
    )
    parser.add_argument(
        "--health-failures",
        type=int,
        default=2,
        help="unanswered /health checks in a row before a backend counts as unhealthy (an "
        "answer other than 200 or a refused connection: at once)",
    )
    parser.add_argument(
        "--load-interval",
        type=float,
        default=1.0,
        help="seconds between reads of each backend's /metrics (engine load for the policies; "
        "0 turns it off)",
    )
    parser.add_argument(
        "--load-timeout", type=float, default=1.0, help="seconds for one /metrics read"
    )
    parser.add_argument(
        "--max-metrics-bytes",
        type=int,
        default=4 * 1024 * 1024,
        help="a larger /metrics body is not used",
    )
    parser.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024)
    parser.add_argument(
        "--max-buffered-bytes",
        type=int,
        default=128 * 1024 * 1024,
        help="request body bytes held in memory at once, all requests together",
    )
    parser.add_argument(
        "--max-json-values", type=int, default=262_144, help="JSON values in a body, max"
    )
    parser.add_argument("--max-json-depth", type=int, default=64, help="JSON nesting, max")
    parser.add_argument(
        "--max-connections", type=int, default=1024, help="open client connections, max"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=15.0,
        help="seconds a connection may take to send a request head (also idle keep-alive)",
    )
    parser.add_argument(
        "--body-timeout", type=float, default=60.0, help="seconds to receive a request body"
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info"
    )
    parser.add_argument("--session-header", default="x-session-id")
    parser.add_argument("--priority-header", default="x-priority")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop (uvloop needs the optional uvloop package)",
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        help=f"file with one API key per line, re-read when it changes (or env {API_KEYS_ENV}, "
        "comma-separated)",
    )


def read_api_keys(path: Path | None, env: str | None) -> frozenset[str]:
    """API keys from the file (one per line, ``#`` comments) or the environment value."""
    if path is not None:
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise SystemExit(f"llmsvc router: cannot read --api-key-file {path}: {exc}") from None
        keys = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
        if not keys:
            raise SystemExit(f"llmsvc router: --api-key-file {path} holds no key")
        return frozenset(keys)
    return frozenset(k.strip() for k in (env or "").split(",") if k.strip())


def validate(args: argparse.Namespace) -> None:
    """Exit with a clear message when the flags do not make sense together."""
    if bool(args.backend) == bool(args.service):
        raise SystemExit("llmsvc router: give either --backend URL (repeatable) or --service NAME")
    if args.service and not args.namespace:
        raise SystemExit("llmsvc router: --service needs --namespace")
    for url in args.backend:
        if not url.startswith(("http://", "https://")):
            raise SystemExit(
                f"llmsvc router: --backend {url!r} must start with http:// or https://"
            )
    if args.balance_factor < 1 or args.balance_slack < 1:
        raise SystemExit("llmsvc router: --balance-factor and --balance-slack must be at least 1")
    for name in LIMITS:
        if getattr(args, name) < 1:
            raise SystemExit(f"llmsvc router: --{name.replace('_', '-')} must be at least 1")
    if args.max_buffered_bytes < args.max_body_bytes:
        raise SystemExit("llmsvc router: --max-buffered-bytes must be at least --max-body-bytes")
    for name in TIMEOUTS:
        if not getattr(args, name) > 0:
            raise SystemExit(f"llmsvc router: --{name.replace('_', '-')} must be positive")
    if not 0 <= args.load_interval < float("inf"):
        raise SystemExit("llmsvc router: --load-interval must be 0 (off) or a positive number")


def run(args: argparse.Namespace) -> int:
    """Serve the router until interrupted."""
    from llmsvc.router.app import create_app
    from llmsvc.router.config import RouterConfig
    from llmsvc.router.discovery import Discovery, StaticDiscovery
    from llmsvc.router.kube import EndpointSliceDiscovery
    from llmsvc.router.server import serve_forever

    validate(args)
    configure_logging(args.log_level)
    config = RouterConfig(
        policy=args.policy,
        balance_factor=args.balance_factor,
        balance_slack=args.balance_slack,
        max_concurrency=args.max_concurrency,
        queue_size=args.queue_size,
        queue_timeout=args.queue_timeout,
        connect_timeout=args.connect_timeout,
        first_byte_timeout=args.first_byte_timeout,
        chunk_timeout=args.chunk_timeout,
        request_timeout=args.request_timeout,
        max_retries=args.max_retries,
        health_interval=args.health_interval,
        health_timeout=args.health_timeout,
        health_failures=args.health_failures,
        load_interval=args.load_interval,
        load_timeout=args.load_timeout,
        max_metrics_bytes=args.max_metrics_bytes,
        max_body_bytes=args.max_body_bytes,
        max_buffered_bytes=args.max_buffered_bytes,
        max_json_values=args.max_json_values,
        max_json_depth=args.max_json_depth,
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        body_timeout=args.body_timeout,
        api_keys=read_api_keys(args.api_key_file, os.environ.get(API_KEYS_ENV)),
        api_key_file=args.api_key_file,
        session_header=args.session_header,
        priority_header=args.priority_header,
        hold_when_empty=args.hold_when_empty,
    )
    discovery: Discovery = (
        StaticDiscovery(args.backend)
        if args.backend
        else EndpointSliceDiscovery(args.service, args.namespace, args.backend_port)
    )
    logging.getLogger("llmsvc.router").info(
        "router on %s:%d, policy %s, api keys %s",
        args.host,
        args.port,
        config.policy,
        "from a file" if config.api_key_file else "on" if config.api_keys else "off",
    )
    try:
        run_loop(serve_forever(create_app(config, discovery), args.host, args.port), args.loop)
    except KeyboardInterrupt:
        return 0
    return 0


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``; the Kubernetes client never below INFO (it logs bodies)."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("kubernetes_asyncio").setLevel(max(logging.INFO, logging.getLogger().level))


def run_loop(main: Coroutine[Any, Any, None], loop: str) -> None:
    """Run ``main`` on asyncio's loop, or on uvloop when asked."""
    if loop == "uvloop":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            main.close()
            raise SystemExit("llmsvc router: --loop uvloop needs: pip install uvloop") from None
        uvloop.run(main)
        return
    asyncio.run(main)
