"""The fake ``vllm`` CLI: it accepts the rendered command lines and forms (and breaks) a world."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from llmsvc.probe import rank_check as probe
from llmsvc.render import render
from llmsvc.router.server import free_port
from llmsvc.sim import vllm_cli
from tests.render_helpers import EXAMPLES, engine_of, kinds, load


def rendered_argv(example: Path, rank: int, tmp_path: Path) -> list[str]:
    """Run the engine script of ``example`` as ``rank`` with a ``vllm`` that records its argv."""
    sts = kinds(render(load(example.name)), "StatefulSet")[0]
    stub = tmp_path / "vllm"
    stub.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    stub.chmod(0o755)
    env = {e["name"]: e["value"] for e in engine_of(sts)["env"] if "value" in e}
    env |= {"NODE_RANK": str(rank), "PATH": f"{tmp_path}:/usr/bin:/bin"}
    out = subprocess.run(
        engine_of(sts)["command"], env=env, check=True, timeout=30, capture_output=True, text=True
    )
    argv: list[str] = json.loads(out.stdout)
    return argv


NATIVE = [e for e in EXAMPLES if "backend: ray" not in e.read_text()]


@pytest.mark.parametrize("example", NATIVE, ids=lambda p: p.stem)
def test_every_rendered_command_line_parses(example: Path, tmp_path: Path) -> None:
    nodes = kinds(render(load(example.name)), "StatefulSet")[0]["spec"]["replicas"]
    for rank in range(nodes):
        args = vllm_cli.build_parser().parse_args(rendered_argv(example, rank, tmp_path))
        assert args.command == "serve"
        assert args.headless == (rank > 0)
        assert args.nnodes == nodes


def test_unknown_flags_are_rejected_like_vllm(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        vllm_cli.build_parser().parse_args(["serve", "/m", "--no-such-flag"])
    assert exit_info.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


def test_missing_model_directory_fails(tmp_path: Path) -> None:
    args = vllm_cli.build_parser().parse_args(["serve", str(tmp_path / "absent")])
    with pytest.raises(SystemExit, match="does not exist"):
        vllm_cli.check(args)


def rank_args(model: Path, rank: int, port: int, http: int) -> list[str]:
    words = ["serve", str(model), "--nnodes", "2", "--node-rank", str(rank)]
    words += ["--master-addr", "localhost", "--master-port", str(port), "--port", str(http)]
    words += ["--host", "127.0.0.1", "--served-model-name", "m"]
    return [*words, "--headless"] if rank else words


async def health(url: str) -> int | None:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return None


async def eventually(url: str, want: int | None, seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.1)):
        if await health(url) == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered {want}")


async def test_leader_serves_only_after_the_worker_joins_and_dies_with_it(tmp_path: Path) -> None:
    port, http = free_port(), free_port()
    url = f"http://127.0.0.1:{http}/health"
    parse = vllm_cli.build_parser().parse_args
    leader = asyncio.ensure_future(vllm_cli.serve(parse(rank_args(tmp_path, 0, port, http))))
    await asyncio.sleep(0.5)
    assert await health(url) is None  # nothing listens before the world is formed
    worker = asyncio.ensure_future(vllm_cli.serve(parse(rank_args(tmp_path, 1, port, http))))
    await eventually(url, 200)
    worker.cancel()  # the worker process dies: its connection closes
    assert await asyncio.wait_for(leader, 10) == 1
    assert await health(url) is None


async def test_worker_exits_when_rank_zero_dies(tmp_path: Path) -> None:
    port, http = free_port(), free_port()
    parse = vllm_cli.build_parser().parse_args
    leader = asyncio.ensure_future(vllm_cli.serve(parse(rank_args(tmp_path, 0, port, http))))
    worker = asyncio.ensure_future(vllm_cli.serve(parse(rank_args(tmp_path, 1, port, http))))
    await eventually(f"http://127.0.0.1:{http}/health", 200)
    leader.cancel()
    assert await asyncio.wait_for(worker, 15) == 1


async def test_a_rank_from_another_world_breaks_the_rendezvous(tmp_path: Path) -> None:
    port, http = free_port(), free_port()
    args = vllm_cli.build_parser().parse_args(rank_args(tmp_path, 0, port, http))
    leader = asyncio.ensure_future(vllm_cli.serve(args))
    await asyncio.sleep(0.5)
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"HELLO 3 4\n")
    await writer.drain()
    assert await asyncio.wait_for(leader, 10) == 1
    writer.close()


async def test_a_port_check_does_not_break_a_formed_world(tmp_path: Path) -> None:
    """The workers' liveness check connects to the rendezvous and leaves without a hello (as
    rank_check.reachable does); on the real node that broke every group a few seconds after it
    turned Ready, which the operator then restarted again."""
    port, http = free_port(), free_port()
    url = f"http://127.0.0.1:{http}/health"
    parse = vllm_cli.build_parser().parse_args
    leader = asyncio.ensure_future(vllm_cli.serve(parse(rank_args(tmp_path, 0, port, http))))
    await asyncio.sleep(0.5)
    probe.reachable("127.0.0.1", port, 2.0)  # before the world formed
    worker = asyncio.ensure_future(vllm_cli.serve(parse(rank_args(tmp_path, 1, port, http))))
    await eventually(url, 200)
    for _ in range(3):
        probe.reachable("127.0.0.1", port, 2.0)
    await asyncio.sleep(vllm_cli.HEARTBEAT_SECONDS * 2)
    assert not leader.done()
    assert not worker.done()
    assert await health(url) == 200
    worker.cancel()
    assert await asyncio.wait_for(leader, 10) == 1


def test_ranks_stop_after_their_own_delay_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "LLMSVC_SIM_STOP_SECONDS": "0,1.5"}
    http = free_port()
    command = [sys.executable, "-m", "llmsvc.sim.vllm_cli", "serve", str(tmp_path)]
    command += ["--host", "127.0.0.1", "--port", str(http), "--node-rank", "0"]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    asyncio.run(eventually(f"http://127.0.0.1:{http}/health", 200))
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 1.0  # rank 0: no delay
    assert vllm_cli.stop_delay(1) == 0  # without the variable
    os.environ["LLMSVC_SIM_STOP_SECONDS"] = "0,1.5"
    try:
        assert [vllm_cli.stop_delay(r) for r in range(3)] == [0, 1.5, 1.5]
    finally:
        del os.environ["LLMSVC_SIM_STOP_SECONDS"]


async def test_a_stopping_worker_joins_no_world(tmp_path: Path) -> None:
    """A worker told to stop while rank 0 is not reachable yet leaves: it must never join the
    next world of its group (a new rank 0 listening under the same name a moment later)."""
    port, http = free_port(), free_port()
    parse = vllm_cli.build_parser().parse_args
    stopping = asyncio.Event()
    worker = asyncio.ensure_future(
        vllm_cli.serve(parse(rank_args(tmp_path, 1, port, http)), stopping=stopping)
    )
    await asyncio.sleep(vllm_cli.RETRY_SECONDS / 2)
    stopping.set()
    assert await asyncio.wait_for(worker, 5) == 0
    leader = asyncio.ensure_future(vllm_cli.serve(parse(rank_args(tmp_path, 0, port, http))))
    await asyncio.sleep(2 * vllm_cli.RETRY_SECONDS)
    assert await health(f"http://127.0.0.1:{http}/health") is None  # no world formed
    leader.cancel()


async def test_a_stopping_leader_stops_listening_before_its_world_forms(tmp_path: Path) -> None:
    port, http = free_port(), free_port()
    parse = vllm_cli.build_parser().parse_args
    stopping = asyncio.Event()
    leader = asyncio.ensure_future(
        vllm_cli.serve(parse(rank_args(tmp_path, 0, port, http)), stopping=stopping)
    )
    await asyncio.sleep(0.5)
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)  # it listens
    writer.close()
    stopping.set()
    assert await asyncio.wait_for(leader, 5) == 0
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


def test_sigterm_ends_a_waiting_rank_at_once_whatever_its_stop_delay(tmp_path: Path) -> None:
    """Only a formed world is slow to tear down: a worker still looking for rank 0 exits on
    SIGTERM at once, though its ``LLMSVC_SIM_STOP_SECONDS`` is 30 s."""
    env = {**os.environ, "LLMSVC_SIM_STOP_SECONDS": "30"}
    command = [sys.executable, "-m", "llmsvc.sim.vllm_cli", *rank_args(tmp_path, 1, free_port(), 0)]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    assert "looking for rank 0" in proc.stderr.readline()  # SIGTERM is handled from here on
    time.sleep(vllm_cli.RETRY_SECONDS)  # refused at least once: retrying
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert "exiting without joining" in proc.stderr.read()
