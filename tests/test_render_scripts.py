"""The rank scripts and probe commands, run for real under /bin/sh with stub ``vllm``/``ray``
programs and a real /health server on 127.0.0.1: branching per rank and backend, and quoting."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsvc.probe import source
from llmsvc.render import render
from tests.invalid_cases import merge, setter
from tests.render_helpers import Manifest, engine_of, env_of, kinds, load, svc_with

# --- env and commands -------------------------------------------------------------------------

RANK = {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}


def test_env_on_every_rank() -> None:
    svc = load("03-two-nodes.yaml")
    sts = kinds(render(svc), "StatefulSet")[0]
    master = "llama-405b-0-0.llama-405b-headless.default.svc.cluster.local"
    assert env_of(sts) == {
        "MASTER_ADDR": master,
        "MASTER_PORT": "29501",
        "NODE_RANK": RANK,
        "NNODES": "2",
        "WORLD_SIZE": "16",
        "LWS_LEADER_ADDRESS": master,
        "LWS_GROUP_SIZE": "2",
        "LWS_WORKER_INDEX": RANK,
        "VLLM_ENGINE_READY_TIMEOUT_S": "3600",
        "HF_HUB_OFFLINE": "1",
        "VLLM_HOST_IP": {"fieldRef": {"fieldPath": "status.podIP"}},
        "LLMSVC_RANK_CHECK": source(),
    }


def test_user_env_comes_last_and_groups_have_their_own_master() -> None:
    user = [{"name": "NCCL_DEBUG", "value": "INFO"}]
    svc = svc_with(setter("spec.engine.env", user), setter("spec.replicas", 2))
    second = kinds(render(svc), "StatefulSet")[1]
    assert engine_of(second)["env"][-1] == user[0]
    assert env_of(second)["MASTER_ADDR"].startswith("invalid-case-1-0.invalid-case-headless.")


@pytest.fixture
def stubs(tmp_path: Path) -> Path:
    """A bin dir whose ``vllm`` and ``ray`` append their argv (JSON) to calls.jsonl."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("vllm", "ray"):
        stub = bin_dir / tool
        stub.write_text(
            f"#!{sys.executable}\nimport json, os, sys\n"
            "with open(os.environ['CALLS'], 'a') as f:\n"
            f"    f.write(json.dumps([{tool!r}, *sys.argv[1:]]) + '\\n')\n"
        )
        stub.chmod(0o755)
    (bin_dir / "python3").symlink_to(sys.executable)
    (tmp_path / "ray.py").write_text(  # fake Ray module for the head's wait loop
        "import os\ndef init(**kwargs): pass\n"
        "def nodes(): return [{'Alive': True}] * int(os.environ['NNODES'])\n"
    )
    return tmp_path


def run_rank(sts: Manifest, rank: int, stubs: Path) -> list[list[str]]:
    """Run the engine command of ``sts`` as rank ``rank``; the stub calls it made."""
    env = {e["name"]: e["value"] for e in engine_of(sts)["env"] if "value" in e}
    env |= {"NODE_RANK": str(rank), "CALLS": str(stubs / "calls.jsonl")}
    env |= {"PATH": f"{stubs / 'bin'}:/usr/bin:/bin", "PYTHONPATH": str(stubs)}
    container = engine_of(sts)
    argv = [*container["command"], *container.get("args", [])]  # as the kubelet joins them
    subprocess.run(argv, env=env, check=True, timeout=30, cwd=stubs)
    calls = (stubs / "calls.jsonl").read_text().splitlines()
    (stubs / "calls.jsonl").unlink()
    return [json.loads(line) for line in calls]


MODEL_DIR = "/models/hf/meta-llama/Llama-3.1-405B-Instruct-FP8/main"
COMMON = [
    "--tensor-parallel-size", "8", "--pipeline-parallel-size", "2", "--max-model-len", "8192",
    "--gpu-memory-utilization", "0.9", "--served-model-name", "llama-3.1-405b-instruct",
    "--port", "8000",
]  # fmt: skip
USER_ARGS = ["--kv-cache-dtype", "fp8"]


def test_native_command_per_rank(stubs: Path) -> None:
    sts = kinds(render(load("03-two-nodes.yaml")), "StatefulSet")[0]
    master = env_of(sts)["MASTER_ADDR"]
    multi = ["--nnodes", "2", "--master-addr", master, "--master-port", "29501"]
    leader = run_rank(sts, 0, stubs)
    assert leader == [
        ["vllm", "serve", MODEL_DIR, *COMMON, *multi[:2], "--node-rank", "0", *multi[2:],
         *USER_ARGS]
    ]  # fmt: skip
    worker = run_rank(sts, 1, stubs)
    assert worker == [
        ["vllm", "serve", MODEL_DIR, *COMMON, *multi[:2], "--node-rank", "1", *multi[2:],
         "--headless", *USER_ARGS]
    ]  # fmt: skip


def test_single_node_has_no_multi_node_flags(stubs: Path) -> None:
    sts = kinds(render(load("01-single-gpu.yaml")), "StatefulSet")[0]
    (call,) = run_rank(sts, 0, stubs)
    assert call[:3] == ["vllm", "serve", "/models/hf/Qwen/Qwen2.5-1.5B-Instruct/main"]
    assert not {"--nnodes", "--headless", "--master-addr"} & set(call)


def test_ray_command_per_rank(stubs: Path) -> None:
    sts = kinds(render(load("06-ray.yaml")), "StatefulSet")[0]
    head = run_rank(sts, 0, stubs)
    assert head[0] == ["ray", "start", "--head", "--port=6379"]
    assert head[1][:2] == ["vllm", "serve"]
    assert head[1][-2:] == ["--distributed-executor-backend", "ray"]
    assert "--nnodes" not in head[1]
    assert "--headless" not in head[1]
    script = engine_of(sts)["command"][2]
    assert 'exec ray start --address="$MASTER_ADDR:6379" --block' in script
    assert script.count("vllm serve") == 1  # workers only join the Ray cluster


HOSTILE = ["--chat-template", "$(touch {m}); `touch {m}`", "it's; touch {m}", "a\nb", "*"]


def test_user_strings_are_shell_quoted(stubs: Path) -> None:
    marker = stubs / "pwned"
    args = [a.format(m=marker) for a in HOSTILE]
    svc = svc_with(
        setter("spec.engine.args", args),
        setter("spec.model.servedName", f"x $(touch {marker})"),
        merge("spec.parallelism", {"tensor": 1, "pipeline": 2, "gpusPerNode": 1}),
    )
    sts = kinds(render(svc), "StatefulSet")[0]
    assert engine_of(sts)["args"] == args  # never inside the script
    assert "it's; touch" not in engine_of(sts)["command"][2]
    for rank in (0, 1):
        (call,) = run_rank(sts, rank, stubs)
        assert call[-len(args) :] == args
        assert call[call.index("--served-model-name") + 1] == f"x $(touch {marker})"
    assert not marker.exists()


# --- probes -----------------------------------------------------------------------------------


@given(st.integers(min_value=60, max_value=86_400))
@settings(max_examples=50)
def test_startup_window_covers_the_timeout(timeout: int) -> None:
    sts = kinds(render(svc_with(setter("spec.startup.timeoutSeconds", timeout))), "StatefulSet")
    container = engine_of(sts[0])
    startup = container["startupProbe"]
    assert startup["failureThreshold"] * startup["periodSeconds"] >= timeout
    assert startup["failureThreshold"] == math.ceil(timeout / startup["periodSeconds"])
    assert env_of(sts[0])["VLLM_ENGINE_READY_TIMEOUT_S"] == str(timeout)


def test_probes_run_the_rank_check_shipped_in_the_env() -> None:
    """The engine image lacks our package: each probe runs the check's source from the env."""
    container = engine_of(kinds(render(load("03-two-nodes.yaml")), "StatefulSet")[0])
    for kind, check in (("startup", "startup"), ("readiness", "ready"), ("liveness", "live")):
        probe = container[f"{kind}Probe"]
        assert set(probe) & {"httpGet", "tcpSocket", "grpc"} == set()
        command = probe["exec"]["command"]
        assert command[:2] == ["/bin/sh", "-c"]
        assert command[2].startswith(f'exec python3 -c "$LLMSVC_RANK_CHECK" {check} --port 8000')
    assert container["readinessProbe"]["periodSeconds"] == 5
    live = container["livenessProbe"]
    assert live["timeoutSeconds"] > 8  # the idle canary may take --canary-seconds 8
    assert "--stall-seconds 15 --canary-seconds 8" in live["exec"]["command"][2]


def test_a_ready_worker_runs_nothing() -> None:
    container = engine_of(kinds(render(load("03-two-nodes.yaml")), "StatefulSet")[0])
    env = {"NODE_RANK": "1", "PATH": "/usr/bin:/bin", "LLMSVC_RANK_CHECK": source()}
    result = subprocess.run(container["readinessProbe"]["exec"]["command"], env=env, check=False)
    assert result.returncode == 0


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        del args


@pytest.fixture
def health_server() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_rank_zero_probe_follows_health(health_server: HTTPServer) -> None:
    container = engine_of(kinds(render(load("01-single-gpu.yaml")), "StatefulSet")[0])
    port = health_server.server_address[1]
    script = container["readinessProbe"]["exec"]["command"][2]
    command = ["/bin/sh", "-c", script.replace("--port 8000", f"--port {port}")]
    env = {"NODE_RANK": "0", "PATH": "/usr/bin:/bin", "LLMSVC_RANK_CHECK": source()}
    _Health.status = 200
    assert subprocess.run(command, env=env, capture_output=True, check=False).returncode == 0
    _Health.status = 503
    assert subprocess.run(command, env=env, capture_output=True, check=False).returncode != 0


# --- what execve can run (issue 13.14) --------------------------------------------------------

MAX_ARG_STRLEN = 32 * 4096  # Linux: one argv/envp string, with its NUL
ARG_MAX_FLOOR = 128 * 1024  # Linux: all strings, whatever RLIMIT_STACK (max(rlimit/4, 128 KiB))


def test_execve_limits_on_this_machine() -> None:
    """The two kernel limits the engine's command line is sized against, measured here."""
    subprocess.run(["/bin/true", "a" * (MAX_ARG_STRLEN - 1)], check=True)
    with pytest.raises(OSError, match="Argument list too long"):
        subprocess.run(["/bin/true", "a" * MAX_ARG_STRLEN], check=True)
    small_stack = _limit_stack(ARG_MAX_FLOOR * 2)  # rlimit/4 = 64 KiB: the 128 KiB floor applies
    many = ["b" * 1000] * 140  # 140 KiB in total, each string small
    with pytest.raises(OSError, match="Argument list too long"):
        subprocess.run(["/bin/true", *many], check=True, env={}, preexec_fn=small_stack)


def _limit_stack(size: int) -> Any:
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_STACK, (size, size))

    return apply


def _largest_allowed() -> Any:
    """A spec at every limit at once, in the shapes that cost most: quotes (5 bytes once shell-
    quoted), multi-byte characters, two nodes (the script holds the serve line twice)."""
    from llmsvc.api.rules import ARGS_BYTES_MAX, ENV_BYTES_MAX, MAX_ARGS

    per_arg = ARGS_BYTES_MAX // MAX_ARGS - 1  # bytes of each, without its NUL
    head = "--chat-template="
    args = [head + "'" * (per_arg - len(head) - 2) + "é" for _ in range(MAX_ARGS)]
    env = [{"name": f"V{i}", "value": "x" * (ENV_BYTES_MAX // 4 - 4)} for i in range(4)]
    return svc_with(
        setter("spec.engine.args", args),
        setter("spec.engine.env", env),
        setter("spec.model.servedName", "'" * 256),
        setter("spec.model.uri", "s3://b" + "c" * 60 + "d/" + "/".join(["p" * 60] * 15)),
        setter("spec.model.revision", "r" * 256),
        merge("spec.parallelism", {"tensor": 1, "pipeline": 2, "gpusPerNode": 1}),
    )


def test_the_largest_allowed_spec_really_execs_at_the_smallest_stack(stubs: Path) -> None:
    from llmsvc.api.rules import ARGS_BYTES_MAX, ENV_BYTES_MAX, args_bytes, env_bytes

    svc = _largest_allowed()
    assert args_bytes(svc.spec.engine.args) == ARGS_BYTES_MAX
    assert env_bytes(svc.spec.engine.env) == ENV_BYTES_MAX
    sts = kinds(render(svc), "StatefulSet")[0]
    container = engine_of(sts)
    script = container["command"][2]
    assert len(script.encode()) < 8 * 1024, "docs/security.md and rules.py count on < 8 KiB"
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env |= {"CALLS": str(stubs / "calls.jsonl"), "PATH": f"{stubs / 'bin'}:/usr/bin:/bin"}
    env |= {"IMAGE_ENV": "i" * 4096}  # room for the image's own environment
    argv = [*container["command"], *container.get("args", [])]
    for rank in (0, 1):
        subprocess.run(
            argv,
            env=env | {"NODE_RANK": str(rank)},
            check=True,
            timeout=30,
            cwd=stubs,
            preexec_fn=_limit_stack(ARG_MAX_FLOOR * 2),
        )
    calls = [json.loads(line) for line in (stubs / "calls.jsonl").read_text().splitlines()]
    assert [c[-len(svc.spec.engine.args) :] for c in calls] == [svc.spec.engine.args] * 2
