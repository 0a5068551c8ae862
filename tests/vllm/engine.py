"""Real vLLM (CPU build) for the tests marked ``vllm``: its venv, a tiny model, rendered ranks.

vLLM lives in its own venv (``make vllm-env``, cached under ~/.cache/llmsvc/vllm-<version>/);
everything that imports vLLM runs there, in a subprocess, never in the test venv. Engines are
started from what the operator renders: the rank script and env of an LLMService's StatefulSet,
with only what a pod would provide filled in (the rank, the pod IP, the model directory, the
port: loopback has one network namespace, so each engine needs its own HTTP port).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmsvc.api import LLMService, parse
from llmsvc.render import render
from llmsvc.render.names import HTTP_PORT
from llmsvc.render.volumes import MOUNT_PATH
from llmsvc.router.server import free_port

ROOT = Path(__file__).resolve().parents[2]
ENV_SCRIPT = ROOT / "scripts" / "vllm-env.sh"
MODEL_NAME = "tiny-llama"
MAX_MODEL_LEN = 1024
START_TIMEOUT = 900.0  # 70-120 s when alone on 2 cores; 3-7 min seen at load average 17
Manifest = dict[str, Any]
# Keeps each engine small on a shared 2-core machine (KV cache GiB, one OpenMP thread each).
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}


def pinned_version() -> str:
    """The vLLM version scripts/vllm-env.sh installs."""
    for line in ENV_SCRIPT.read_text().splitlines():
        if line.startswith("VLLM_VERSION="):
            return line.split(":-", 1)[1].rstrip("}")
    raise AssertionError("scripts/vllm-env.sh pins no VLLM_VERSION")


def vllm_python() -> Path:
    """The vLLM venv's python, installing it when missing (`make vllm-env`)."""
    done = subprocess.run(
        [str(ENV_SCRIPT)], capture_output=True, text=True, timeout=3600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/vllm-env.sh failed:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def run_in_vllm(python: Path, args: list[str], payload: object = None, timeout: float = 600) -> Any:
    """Run ``python ARGS`` in the vLLM venv, ``payload`` as JSON on stdin; its last stdout line
    parsed as JSON."""
    done = subprocess.run(
        [str(python), *args],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=os.environ | {"VLLM_LOGGING_LEVEL": "ERROR", "PYTHONWARNINGS": "ignore"},
    )
    if done.returncode != 0:
        raise AssertionError(f"vLLM venv code failed:\n{done.stderr[-6000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tiny_model(python: Path) -> Path:
    """The tiny random Llama + tokenizer, made once per vLLM venv and recipe (no hub)."""
    recipe = Path(__file__).with_name("make_model.py")
    out = python.parents[2] / f"tiny-llama-{hashlib.sha256(recipe.read_bytes()).hexdigest()[:8]}"
    stamp = out / "llmsvc-made"
    if not stamp.exists():
        subprocess.run(
            [str(python), str(recipe), str(out)],
            check=True,
            timeout=600,
            capture_output=True,
        )
        stamp.write_text("ok\n")
    return out


def tiny_service(name: str, pipeline: int = 1) -> LLMService:
    """An LLMService serving the tiny model from a volume (pvc://), tensor 1 x ``pipeline``."""
    return parse(
        {
            "apiVersion": "llmsvc.io/v1alpha1",
            "kind": "LLMService",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "model": {"uri": f"pvc://models/{MODEL_NAME}", "servedName": MODEL_NAME},
                "engine": {
                    "maxModelLen": MAX_MODEL_LEN,
                    "env": [{"name": k, "value": v} for k, v in CPU_ENV.items()],
                },
                "parallelism": {"tensor": 1, "pipeline": pipeline, "gpusPerNode": 1},
                "router": {"enabled": False},
                "startup": {"timeoutSeconds": 600},
            },
        }
    )


def engine_container(svc: LLMService) -> Manifest:
    """The engine container of group 0 as the operator renders it."""
    (sts,) = [c for c in render(svc) if c["kind"] == "StatefulSet"][:1]
    container: Manifest = sts["spec"]["template"]["spec"]["containers"][0]
    return container


@dataclass
class Rank:
    """One rank's process, started from the rendered script and env."""

    rank: int
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the rank's whole process group: every process of its 'container' dies."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def rank_env(container: Manifest, rank: int, venv_bin: Path, master_port: int) -> dict[str, str]:
    """The rendered env of ``rank``, with what the pod would provide filled in for loopback."""
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env |= {"NODE_RANK": str(rank), "LWS_WORKER_INDEX": str(rank), "VLLM_HOST_IP": "127.0.0.1"}
    env |= {"MASTER_ADDR": "127.0.0.1", "LWS_LEADER_ADDRESS": "127.0.0.1"}
    env |= {"MASTER_PORT": str(master_port), "VLLM_PORT": str(free_port())}
    env |= {"PATH": f"{venv_bin}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    return env


def loopback_script(container: Manifest, model_dir: Path, port: int) -> str:
    """The rendered rank script, with the model directory and HTTP port of this machine."""
    script: str = container["command"][2]
    assert f"{MOUNT_PATH}/{MODEL_NAME}" in script
    assert f"--port {HTTP_PORT}" in script
    script = script.replace(f"{MOUNT_PATH}/{MODEL_NAME}", str(model_dir))
    return script.replace(f"--port {HTTP_PORT}", f"--port {port}")


def start_rank(
    container: Manifest, rank: int, model_dir: Path, python: Path, logs: Path, master_port: int
) -> Rank:
    """Start rank ``rank`` of the rendered group in its own process group."""
    port = free_port()
    env = rank_env(container, rank, python.parent, master_port)
    log = logs / f"rank-{rank}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*container["command"][:2], loopback_script(container, model_dir, port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Rank(rank, port, env, log, proc)


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError:
        return 0, ""


def wait_healthy(leader: Rank, others: list[Rank], timeout: float = START_TIMEOUT) -> None:
    """Until the leader's /health is 200; fails early (with the log) when a rank exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for rank in [leader, *others]:
            if not rank.alive():
                tail = rank.log.read_text(errors="replace")[-5000:]
                raise AssertionError(f"rank {rank.rank} exited while starting:\n{tail}")
        if get(f"{leader.url}/health")[0] == 200:
            return
        time.sleep(2)
    raise AssertionError(f"not healthy in {timeout} s:\n{leader.log.read_text()[-5000:]}")


def run_probe(container: Manifest, kind: str, rank: Rank, state: Path) -> tuple[int, str]:
    """Run the rendered ``kind`` probe as the kubelet would, inside ``rank``'s environment."""
    probe = container[f"{kind}Probe"]
    command = [*probe["exec"]["command"][:2], probe["exec"]["command"][2]]
    command[2] = command[2].replace(f"--port {HTTP_PORT}", f"--port {rank.port}")
    command[2] += f" --state {state}"
    env: Mapping[str, str] = rank.env
    try:
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=probe["timeoutSeconds"],
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 1, f"probe timed out after {probe['timeoutSeconds']} s"
    return done.returncode, done.stderr.strip()
