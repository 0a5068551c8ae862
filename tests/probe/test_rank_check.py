"""The rank check (every rank's probe) against real HTTP and TCP on 127.0.0.1: a simulator for a
healthy leader, a stuck engine that answers /health but never progresses, real rendezvous sockets.
Real vLLM with a killed rank is in tests/vllm/test_rank_death.py."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from llmsvc.probe import rank_check, source
from llmsvc.probe.rank_check import RankCheckError, metric_sums, progress
from llmsvc.render import render
from tests.render_helpers import engine_of, kinds, load
from tests.sim.conftest import SimFactory

METRICS = """# HELP vllm:num_requests_running x
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 2.0
vllm:num_requests_waiting{engine="0",model_name="m"} 1.0
vllm:generation_tokens_total{engine="0",model_name="m"} 40.0
vllm:generation_tokens_total{engine="1",model_name="m"} 2.0
vllm:iteration_tokens_total_count{engine="0",model_name="m"} 7.0
"""
IDLE = "vllm:num_requests_running 0\nvllm:generation_tokens_total 5\n"


def test_metric_sums_add_every_labelled_series() -> None:
    sums = metric_sums(METRICS, ("vllm:generation_tokens_total", "vllm:num_requests_running"))
    assert sums == {"vllm:generation_tokens_total": 42.0, "vllm:num_requests_running": 2.0}
    assert metric_sums(METRICS, ("vllm:absent",)) == {"vllm:absent": 0.0}


def test_busy_engine_fails_only_after_the_stall(tmp_path: Path) -> None:
    state = str(tmp_path / "state.json")
    assert progress(METRICS, state, stall=15, now=100.0) is False  # first look: remembered
    assert progress(METRICS, state, stall=15, now=110.0) is False  # no progress, 10 s < 15 s
    with pytest.raises(RankCheckError, match=r"no progress for 16 s with 2 requests running and 1"):
        progress(METRICS, state, stall=15, now=116.0)
    moved = METRICS.replace("40.0", "41.0")
    assert progress(moved, state, stall=15, now=117.0) is False  # progress resets the clock
    assert progress(moved, state, stall=15, now=131.0) is False


def test_idle_engine_asks_for_a_canary(tmp_path: Path) -> None:
    state = str(tmp_path / "state.json")
    assert progress(IDLE, state, stall=15, now=100.0) is True
    assert progress(IDLE, state, stall=15, now=1000.0) is True


def test_no_writable_state_never_fails(tmp_path: Path) -> None:
    state = str(tmp_path / "missing-dir" / "state.json")
    for now in (100.0, 200.0, 300.0):
        assert progress(METRICS, state, stall=15, now=now) is False


# --- the leader against real HTTP -------------------------------------------------------------


async def check(*argv: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> int:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return await asyncio.to_thread(rank_check.main, list(argv))


async def test_leader_passes_on_a_healthy_idle_engine(
    sim_factory: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = await sim_factory()
    port = sim.url.rsplit(":", 1)[1]
    state = str(tmp_path / "s.json")
    for kind in ("startup", "ready", "live"):
        assert await check(kind, "--port", port, "--state", state, env={"NODE_RANK": "0"},
                           monkeypatch=monkeypatch) == 0  # fmt: skip
    assert sim.engine.stats.finished == 1  # the idle liveness check sent one canary


class _Stuck(BaseHTTPRequestHandler):
    """An engine whose world broke: /health 200, one request running forever."""

    metrics = METRICS

    def do_GET(self) -> None:
        body = {"/health": "", "/metrics": self.metrics}.get(self.path)
        if body is None:
            body = json.dumps({"data": [{"id": "m"}]})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())

    def do_POST(self) -> None:
        threading.Event().wait(3)  # longer than the canary's timeout
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        del args


@pytest.fixture
def stuck() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stuck)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_leader_fails_when_busy_without_progress(stuck: int, tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    argv = ["live", "--port", str(stuck), "--state", str(state), "--stall-seconds", "0"]
    assert rank_check.main(argv) == 0  # first observation
    assert rank_check.main(argv) == 1
    assert rank_check.main(["ready", "--port", str(stuck)]) == 0  # /health alone says fine


def test_leader_fails_when_the_idle_canary_hangs(
    stuck: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Stuck, "metrics", IDLE)
    argv = ["live", "--port", str(stuck), "--state", str(tmp_path / "s.json")]
    assert rank_check.main([*argv, "--canary-seconds", "0.5"]) == 1


def test_leader_fails_when_nothing_answers(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert rank_check.main(["live", "--port", str(port), "--state", str(tmp_path / "s")]) == 1


# --- workers against real sockets -------------------------------------------------------------


@pytest.fixture
def rendezvous() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


def worker_env(monkeypatch: pytest.MonkeyPatch, port: int, host: str = "localhost") -> None:
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", host)
    monkeypatch.setenv("MASTER_PORT", str(port))


def test_worker_lives_while_joined_and_fails_when_the_leader_goes(
    rendezvous: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = rendezvous.getsockname()[1]
    worker_env(monkeypatch, port)
    assert rank_check.main(["startup"]) == 1  # not joined yet
    assert rank_check.main(["ready"]) == 0  # workers serve nothing: always ready
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = rendezvous.accept()
    assert rank_check.main(["startup"]) == 0
    assert rank_check.main(["live"]) == 0
    accepted.close()  # the leader dies: its end of the world closes
    rendezvous.close()
    assert rank_check.main(["live"]) == 1
    client.close()


def test_worker_fails_when_the_rendezvous_stops_listening(
    rendezvous: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = rendezvous.getsockname()[1]
    worker_env(monkeypatch, port, host="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = rendezvous.accept()
    rendezvous.close()  # a vanished leader node: no FIN reaches us, but nothing listens either
    assert rank_check.main(["live"]) == 1
    assert rank_check.main(["startup"]) == 0  # the connection itself still looks established
    client.close()
    accepted.close()


def test_unresolvable_leader_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    worker_env(monkeypatch, 1, host="no-such-leader.invalid")
    assert rank_check.main(["live"]) == 1


# --- the rendered probe: the source travels in the env, python3 -c runs it ---------------------


async def test_rendered_probes_run_the_shipped_source(
    sim_factory: SimFactory, tmp_path: Path
) -> None:
    container = engine_of(kinds(render(load("01-single-gpu.yaml")), "StatefulSet")[0])
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["LLMSVC_RANK_CHECK"] == source()
    sim = await sim_factory()
    port = sim.url.rsplit(":", 1)[1]
    for kind in ("startup", "readiness", "liveness"):
        command = container[f"{kind}Probe"]["exec"]["command"]
        script = command[2].replace("--port 8000", f"--port {port}")
        command = [*command[:2], f"{script} --state {tmp_path / 'state.json'}"]
        pod_env = env | {"NODE_RANK": "0", "PATH": "/usr/bin:/bin"}  # system python3, no llmsvc
        done = await asyncio.to_thread(subprocess.run, command, env=pod_env, capture_output=True)
        assert done.returncode == 0, done.stderr
