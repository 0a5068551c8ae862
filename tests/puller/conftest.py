"""Fixtures for the puller tests: servers on 127.0.0.1, a synthetic model, the CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from tests.puller.servers import Repo, Server, State, hub_server


def synthetic_model(shards: int = 2, shard_size: int = 300_000, seed: int = 1) -> dict[str, bytes]:
    """config, tokenizer, N safetensors shards (pseudo-random bytes) and their index."""
    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    files = {n: _bytes(seed + i, shard_size) for i, n in enumerate(names)}
    weight_map = {f"layer.{i}.weight": n for i, n in enumerate(names)}
    files["model.safetensors.index.json"] = json.dumps({"weight_map": weight_map}).encode()
    files["config.json"] = json.dumps({"architectures": ["LlamaForCausalLM"]}).encode()
    files["tokenizer.json"] = b'{"version": "1.0"}'
    return files


def _bytes(seed: int, size: int) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


def run_pull(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``llmsvc pull ARGS`` in a fresh process (fast progress, quick retries)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HF_"))}
    full_env |= {"LLMSVC_PULL_PROGRESS_INTERVAL": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    full_env |= env or {}
    cmd = [sys.executable, "-m", "llmsvc.cli", "pull", *args, "--backoff", "0.05"]
    return subprocess.run(
        cmd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def http_server() -> Iterator[Server]:
    """A ranged file server; put files in ``server.state.files['/path']``."""
    from tests.puller.servers import Handler

    with Server(Handler, State()) as server:
        yield server


@pytest.fixture
def hub_repo() -> Repo:
    files = synthetic_model()
    files["consolidated.safetensors"] = b"x" * 1000  # a duplicate the index does not list
    files["pytorch_model.bin"] = b"y" * 1000  # the other weight format
    files["original/params.json"] = b"{}"  # a subfolder vLLM does not read
    files["README.md"] = b"# model card"
    lfs = {n for n in files if n.endswith((".safetensors", ".bin"))}
    return Repo(files=files, lfs=lfs, refs={"v1.0": "0123456789abcdef0123456789abcdef01234567"})


@pytest.fixture
def hub(hub_repo: Repo) -> Iterator[tuple[Server, Server]]:
    """(hub, cdn) servers; the hub serves ``org/model`` and the private ``org/secret``."""
    secret = Repo(
        files=synthetic_model(1, 1000, seed=7), lfs=set(), private_token="hf_secret_token_abcd"
    )
    gated = Repo(files=synthetic_model(1, 1000, seed=8), lfs=set(), gated=True)
    repos = {"org/model": hub_repo, "org/secret": secret, "org/gated": gated}
    with Server(_handler(), State()) as cdn, hub_server(repos, State(), cdn) as hub_srv:
        yield hub_srv, cdn


def _handler() -> type:
    from tests.puller.servers import Handler

    return Handler


@pytest.fixture(scope="session")
def moto() -> Iterator[str]:
    """A real S3-compatible server (moto in server mode) on 127.0.0.1; yields its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing-AKIDWXYZ", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


@pytest.fixture
def s3(moto: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Env for ``llmsvc pull`` against moto; the same env is set in this process."""
    env = S3_ENV | {"AWS_ENDPOINT_URL": moto, "AWS_REGION": "us-east-1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def s3_client(env: dict[str, str]):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")


def listing(root: Path) -> dict[str, bytes]:
    """Every visible file under ``root`` (hidden bookkeeping excluded) -> bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".llmsvc") for part in p.relative_to(root).parts)
    }
