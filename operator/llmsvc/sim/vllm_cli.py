"""A ``vllm`` executable for test images: parses ``vllm serve`` like vLLM, serves ``llmsvc sim``.

The test engine image (``e2e/cluster/node/images/engine.Dockerfile``) runs ``python3 -m
llmsvc.sim.vllm_cli`` as ``vllm``, so the exact command lines the operator renders run unchanged on
a real node. Flags vLLM does not know are rejected with vLLM's exit status 2. ``SERVE_FLAGS`` is the
ONE list of accepted flags; a test checks it against real vLLM's own parser.

Multi-node contract (vLLM's native ``--nnodes``, as an NCCL world behaves): rank 0 listens on
``--master-addr:--master-port`` (the name must resolve to an address of its own) and serves HTTP
only after every ``--headless`` rank 1..N-1 has connected to that address; when any connection
drops, every remaining rank exits non-zero. Knobs vLLM has no flag for come from the environment:
``LLMSVC_SIM_LOAD_SECONDS`` (``/health`` answers 503 this long after the world is formed) and
``LLMSVC_SIM_STOP_SECONDS`` (on SIGTERM, rank r exits after the r-th of these comma-separated
seconds, the last one for higher ranks: ranks that shut down at different speeds). Only a formed
world is slow to tear down: a rank whose world has not formed yet exits at once on SIGTERM without
joining (vLLM's start-up ends on SIGTERM), so a rank on its way out never joins the next world of
its group, whose new rank 0 may already listen under the same name.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# flag -> argparse keyword arguments. Value types follow vLLM's own parser.
SERVE_FLAGS: dict[str, dict[str, Any]] = {
    "--host": {"default": "0.0.0.0"},
    "--port": {"type": int, "default": 8000},
    "--served-model-name": {"nargs": "+"},
    "--tensor-parallel-size": {"type": int, "default": 1},
    "--pipeline-parallel-size": {"type": int, "default": 1},
    "--data-parallel-size": {"type": int, "default": 1},
    "--max-model-len": {"type": int},
    "--gpu-memory-utilization": {"type": float, "default": 0.9},
    "--distributed-executor-backend": {"choices": ["ray", "mp", "uni", "external_launcher"]},
    "--nnodes": {"type": int, "default": 1},
    "--node-rank": {"type": int, "default": 0},
    "--master-addr": {"default": "127.0.0.1"},
    "--master-port": {"type": int, "default": 29501},
    "--headless": {"action": "store_true"},
    "--enable-prefix-caching": {"action": argparse.BooleanOptionalAction},
    "--enable-chunked-prefill": {"action": argparse.BooleanOptionalAction},
    "--max-num-seqs": {"type": int, "default": 64},
    "--max-num-batched-tokens": {"type": int},
    "--block-size": {"type": int, "default": 16},
    "--seed": {"type": int, "default": 0},
    "--dtype": {"choices": ["auto", "half", "float16", "bfloat16", "float", "float32"]},
    "--kv-cache-dtype": {},
    "--quantization": {},
    "--trust-remote-code": {"action": "store_true"},
    "--enforce-eager": {"action": "store_true"},
    "--tokenizer": {},
    "--revision": {},
    "--load-format": {},
    "--api-key": {"nargs": "+"},
    "--chat-template": {},
    "--generation-config": {},
    "--uvicorn-log-level": {"choices": ["debug", "info", "warning", "error", "critical", "trace"]},
    "--disable-log-stats": {"action": "store_true"},
}
HEARTBEAT_SECONDS = 1.0
PEER_TIMEOUT_SECONDS = 10.0
RETRY_SECONDS = 1.0


class WorldError(RuntimeError):
    """The rank group cannot form or has broken (what NCCL reports as a failed communicator)."""


class StoppedError(Exception):
    """SIGTERM came before this rank's world formed: it leaves without joining (status 0)."""


def build_parser() -> argparse.ArgumentParser:
    """``vllm serve MODEL [flags]``: only the flags of ``SERVE_FLAGS``."""
    parser = argparse.ArgumentParser(prog="vllm")
    subs = parser.add_subparsers(dest="command", required=True)
    serve = subs.add_parser("serve", help="serve a model (simulated by llmsvc sim)")
    serve.add_argument("model")
    for flag, kwargs in SERVE_FLAGS.items():
        serve.add_argument(flag, **kwargs)
    return parser


def check(args: argparse.Namespace) -> None:
    """What vLLM validates before it starts: a local model directory and a sane world."""
    if not os.path.isdir(args.model):
        raise SystemExit(f"vllm serve: model directory {args.model} does not exist (offline)")
    if args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes:
        raise SystemExit(f"vllm serve: --node-rank {args.node_rank} outside 0..{args.nnodes - 1}")
    if args.headless and args.nnodes > 1 and args.node_rank == 0:
        raise SystemExit("vllm serve: --headless is for ranks other than 0")


def ready_timeout() -> float:
    """How long ranks wait for each other: vLLM's ``VLLM_ENGINE_READY_TIMEOUT_S`` (600 s)."""
    return float(os.environ.get("VLLM_ENGINE_READY_TIMEOUT_S", "600"))


def log(message: str) -> None:
    """One line on stderr, as vLLM logs (never prompts)."""
    print(f"vllm-sim: {message}", file=sys.stderr, flush=True)


@dataclass
class World:
    """Rank 0's view of the group: connected ranks and the first failure."""

    nnodes: int
    peers: dict[int, asyncio.StreamWriter]
    formed: asyncio.Event
    broken: asyncio.Future[str]

    def fail(self, reason: str) -> None:
        """Record the first failure; the main task exits with it."""
        if not self.broken.done():
            self.broken.set_result(reason)


class NotARankError(Exception):
    """A connection that left before saying hello: a port check, not a rank."""


async def _hello(reader: asyncio.StreamReader, nnodes: int) -> int:
    line = (await asyncio.wait_for(reader.readline(), PEER_TIMEOUT_SECONDS)).decode().split()
    if not line:
        raise NotARankError("closed before its hello")
    if len(line) != 3 or line[0] != "HELLO" or not line[1].isdigit():
        raise WorldError(f"bad handshake {' '.join(line)[:80]!r}")
    rank, their_nnodes = int(line[1]), line[2]
    if their_nnodes != str(nnodes) or not 0 < rank < nnodes:
        raise WorldError(f"rank {rank} of {their_nnodes} cannot join a world of {nnodes}")
    return rank


async def _watch_peer(world: World, rank: int, reader: asyncio.StreamReader) -> None:
    """A worker never sends after its hello: EOF or an error means it is gone."""
    with contextlib.suppress(OSError):
        await reader.read()
    world.fail(f"lost rank {rank}: its connection closed")


def on_connect(world: World) -> Any:
    """Handler of rank 0's rendezvous listener."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            rank = await _hello(reader, world.nnodes)
        except NotARankError:
            # TCPStore's way: a client that connects and leaves (the workers' liveness check
            # probes this port) is not a member, so the world it never joined stays intact.
            writer.close()
            return
        except (WorldError, TimeoutError, OSError) as error:
            world.fail(f"rendezvous: {error}")
            writer.close()
            return
        if rank in world.peers:
            world.fail(f"rendezvous: rank {rank} connected twice")
            return
        world.peers[rank] = writer
        writer.write(b"WELCOME\n")
        log(f"rank {rank} joined ({len(world.peers) + 1}/{world.nnodes})")
        if len(world.peers) == world.nnodes - 1:
            world.formed.set()
        await _watch_peer(world, rank, reader)

    return handle


async def _resolve(host: str, deadline: float) -> str:
    loop = asyncio.get_running_loop()
    while True:
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            return str(infos[0][4][0])
        except OSError as error:
            if loop.time() > deadline:
                raise WorldError(f"cannot resolve --master-addr {host}: {error}") from None
        await asyncio.sleep(RETRY_SECONDS)


async def _heartbeat(world: World) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        for rank, writer in list(world.peers.items()):
            try:
                writer.write(b"PING\n")
                await writer.drain()
            except OSError:
                world.fail(f"lost rank {rank}: send failed")


async def _serve_http(args: argparse.Namespace) -> None:
    from llmsvc.router.server import serve_forever
    from llmsvc.sim.app import create_app
    from llmsvc.sim.engine import SimConfig

    names = args.served_model_name or [args.model]
    config = SimConfig(
        model=names[0],
        max_model_len=args.max_model_len or 8192,
        max_num_seqs=args.max_num_seqs,
        seed=args.seed,
        load_seconds=float(os.environ.get("LLMSVC_SIM_LOAD_SECONDS", "0")),
    )
    log(f"serving {config.model} on {args.host}:{args.port}")
    await serve_forever(create_app(config), args.host, args.port)


async def _until_broken(world: World, *tasks: asyncio.Task[None]) -> str:
    """Wait for the world to break (or a task to end), then cancel the tasks."""
    waiters: list[asyncio.Future[Any]] = [world.broken, *tasks]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    return world.broken.result() if world.broken.done() else "a rank task ended"


async def leader(args: argparse.Namespace, stopping: asyncio.Event) -> str:
    """Rank 0: listen on the master address, wait for every rank, then serve HTTP."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ready_timeout()
    address = await _resolve(args.master_addr, deadline)
    world = World(args.nnodes, {}, asyncio.Event(), loop.create_future())
    try:
        server = await asyncio.start_server(on_connect(world), args.master_addr, args.master_port)
    except OSError as error:
        raise WorldError(f"cannot listen on {args.master_addr} ({address}): {error}") from None
    log(f"rank 0 waiting for {args.nnodes - 1} ranks on {address}:{args.master_port}")
    stop = asyncio.ensure_future(stopping.wait())
    formed = asyncio.ensure_future(world.formed.wait())
    waiters: list[asyncio.Future[Any]] = [formed, world.broken, stop]
    timeout = max(0, deadline - loop.time())
    done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    formed.cancel()  # no-ops once done; neither is awaited again
    if world.broken.done():
        return world.broken.result()
    if stop in done and formed not in done:
        server.close()
        raise StoppedError("SIGTERM before every rank joined")
    if not done:
        return f"only {len(world.peers) + 1} of {args.nnodes} ranks joined in {ready_timeout()} s"
    log("world formed")
    async with server:
        heartbeat = asyncio.ensure_future(_heartbeat(world))
        http = asyncio.ensure_future(_serve_http(args))
        try:
            return await _until_broken(world, heartbeat, http)
        finally:
            for writer in world.peers.values():
                writer.close()


async def _connect(args: argparse.Namespace, deadline: float, stopping: asyncio.Event) -> Any:
    loop = asyncio.get_running_loop()
    while not stopping.is_set():
        try:
            return await asyncio.open_connection(args.master_addr, args.master_port)
        except OSError as error:
            if loop.time() > deadline:
                raise WorldError(f"cannot reach rank 0 at {args.master_addr}: {error}") from None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), RETRY_SECONDS)
    raise StoppedError("SIGTERM before rank 0 was reached")


async def worker(args: argparse.Namespace, stopping: asyncio.Event) -> str:
    """A ``--headless`` rank: join rank 0, then follow its heartbeat until the world breaks."""
    deadline = asyncio.get_running_loop().time() + ready_timeout()
    log(f"rank {args.node_rank} looking for rank 0 at {args.master_addr}:{args.master_port}")
    reader, writer = await _connect(args, deadline, stopping)
    writer.write(f"HELLO {args.node_rank} {args.nnodes}\n".encode())
    await writer.drain()
    log(f"rank {args.node_rank} connected to {args.master_addr}:{args.master_port}")
    try:
        return await _follow(reader)
    finally:
        writer.close()


async def _follow(reader: asyncio.StreamReader) -> str:
    """Read rank 0's heartbeats until they stop; the reason they stopped."""
    while True:
        try:
            line = await asyncio.wait_for(reader.readline(), PEER_TIMEOUT_SECONDS)
        except TimeoutError:
            return f"no heartbeat from rank 0 for {PEER_TIMEOUT_SECONDS} s"
        except OSError as error:
            return f"lost rank 0: {error}"
        if not line:
            return "lost rank 0: its connection closed"


def stop_delay(rank: int) -> float:
    """Seconds rank ``rank`` takes to exit after SIGTERM (``LLMSVC_SIM_STOP_SECONDS``)."""
    delays = [float(d) for d in os.environ.get("LLMSVC_SIM_STOP_SECONDS", "0").split(",")]
    return delays[min(rank, len(delays) - 1)]


def _on_sigterm(rank: int, stopping: asyncio.Event) -> None:
    """SIGTERM: set ``stopping``; end the main task after this rank's stop delay (status 0)."""
    loop, task, delay = asyncio.get_running_loop(), asyncio.current_task(), stop_delay(rank)

    def stop() -> None:
        log(f"rank {rank}: SIGTERM, exiting in {delay:g} s")
        stopping.set()
        if task is not None:
            loop.call_later(delay, task.cancel)

    loop.add_signal_handler(signal.SIGTERM, stop)


async def serve(
    args: argparse.Namespace, handle_sigterm: bool = False, stopping: asyncio.Event | None = None
) -> int:
    """Run one rank; returns the exit status (1 when the world broke, as NCCL aborts).

    ``stopping`` is set on SIGTERM (with ``handle_sigterm``; tests may pass their own)."""
    stopping = stopping or asyncio.Event()
    if handle_sigterm:
        _on_sigterm(args.node_rank, stopping)
    try:
        if args.nnodes == 1:
            await _serve_http(args)
            return 0
        reason = await (worker(args, stopping) if args.headless else leader(args, stopping))
    except WorldError as error:
        reason = str(error)
    except StoppedError as error:
        log(f"rank {args.node_rank}: {error}; exiting without joining")
        return 0
    except asyncio.CancelledError:
        if not handle_sigterm:
            raise
        return 0
    log(f"rank {args.node_rank}: {reason}; exiting")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """``vllm serve ...``: exit 2 on flags vLLM rejects, 1 when the world breaks."""
    args = build_parser().parse_args(argv)
    check(args)
    try:
        return asyncio.run(serve(args, handle_sigterm=True))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
