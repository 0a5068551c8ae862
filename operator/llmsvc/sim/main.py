"""``llmsvc sim``: run a vLLM-compatible simulator (OpenAI API, vLLM metrics, latency model).

Only the standard library is imported at module top; aiohttp is imported inside ``run``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmsvc.sim.engine import SimConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's flags; defaults come from ``SimConfig``."""
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--model", default="sim-model", help="the served model name")
    parser.add_argument("--max-num-seqs", type=int, default=64, help="max running requests")
    parser.add_argument("--load-seconds", type=float, default=0.0, help="/health 503s this long")
    parser.add_argument("--seed", type=int, default=0, help="seed of the deterministic output")
    parser.add_argument("--block-size", type=int, default=16, help="prefix-cache block (tokens)")
    parser.add_argument("--kv-cache-tokens", type=int, default=262144, help="cache capacity")
    parser.add_argument("--max-model-len", type=int, default=8192, help="prompt+output limit")
    parser.add_argument("--default-max-tokens", type=int, default=16, help="when unset")
    parser.add_argument("--prefill-base-ms", type=float, default=1.0, help="fixed prefill cost")
    parser.add_argument(
        "--prefill-ms-per-token", type=float, default=0.05, help="cost per uncached prompt token"
    )
    parser.add_argument("--itl-base-ms", type=float, default=10.0, help="inter-token latency")
    parser.add_argument("--itl-ms-per-seq", type=float, default=0.05, help="ITL per running seq")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Build the ``SimConfig`` from parsed flags (flag names match the field names)."""
    from llmsvc.sim.engine import SimConfig

    names = {f.name for f in dataclasses.fields(SimConfig)}
    config = SimConfig(**{k: v for k, v in vars(args).items() if k in names})
    for name in ("max_num_seqs", "block_size", "kv_cache_tokens", "max_model_len"):
        if getattr(config, name) < 1:
            raise SystemExit(f"llmsvc sim: --{name.replace('_', '-')} must be at least 1")
    return config


def run(args: argparse.Namespace) -> int:
    """Serve the simulator until interrupted."""
    from llmsvc.router.server import serve_forever
    from llmsvc.sim.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = config_from_args(args)
    logging.getLogger("llmsvc.sim").info(
        "simulating model %s on %s:%d", config.model, args.host, args.port
    )
    try:
        asyncio.run(serve_forever(create_app(config), args.host, args.port))
    except KeyboardInterrupt:
        return 0
    return 0
