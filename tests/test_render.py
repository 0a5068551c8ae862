"""The renderer: targeted asserts on the wiring of every child, the rank scripts run for real under
/bin/sh with stub ``vllm``/``ray`` programs, golden files for every example, and purity."""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsvc.api import InvalidSpecError, LLMService, parse
from llmsvc.api.rules import MAX_NAME_LENGTH, MAX_REPLICAS
from llmsvc.render import DEFAULT_IMAGE, names, render
from llmsvc.render.main import format_output
from tests.invalid_cases import base_manifest, merge, setter

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GOLDEN = Path(__file__).parent / "golden"
Manifest = dict[str, Any]


def load(example: str) -> LLMService:
    return parse(yaml.safe_load((ROOT / "examples" / example).read_text()))


def svc_with(*mutations: Callable[[Manifest], None]) -> LLMService:
    manifest = base_manifest()
    for mutate in mutations:
        mutate(manifest)
    return parse(manifest)


def by_key(children: list[Manifest]) -> dict[tuple[str, str], Manifest]:
    return {(c["kind"], c["metadata"]["name"]): c for c in children}


def kinds(children: list[Manifest], kind: str) -> list[Manifest]:
    return [c for c in children if c["kind"] == kind]


def engine_of(sts: Manifest) -> Manifest:
    container: Manifest = sts["spec"]["template"]["spec"]["containers"][0]
    return container


def env_of(sts: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in engine_of(sts)["env"]}


# --- structure --------------------------------------------------------------------------------


def test_two_nodes_example_is_one_group_of_two_ranks() -> None:
    children = by_key(render(load("03-two-nodes.yaml")))
    sts = children[("StatefulSet", "llama-405b-0")]
    spec = sts["spec"]
    assert [c for c in children if c[0] == "StatefulSet"] == [("StatefulSet", "llama-405b-0")]
    assert spec["replicas"] == 2
    assert spec["serviceName"] == "llama-405b-headless"
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {"type": "OnDelete"}
    assert spec["selector"]["matchLabels"] == names.group_selector("llama-405b", 0)
    pod = spec["template"]["spec"]
    assert pod["enableServiceLinks"] is False
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
    resources = engine_of(sts)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == 8
    assert resources["limits"]["nvidia.com/gpu"] == 8


def test_children_sorted_without_owner_references() -> None:
    children = render(load("04-three-replicas.yaml"))
    keys = [(c["kind"], c["metadata"]["name"]) for c in children]
    assert keys == sorted(keys)
    assert len(kinds(children, "StatefulSet")) == 3
    assert {kind for kind, _ in keys} == {
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    }
    assert all("ownerReferences" not in c["metadata"] for c in children)
    assert all(c["metadata"]["namespace"] == "default" for c in children)


def test_render_is_deterministic_and_json_clean() -> None:
    svc = load("05-autoscaling.yaml")
    assert render(svc) == render(svc)
    assert json.loads(json.dumps(render(svc))) == render(svc)


def test_labels_and_selectors_line_up() -> None:
    svc = load("04-three-replicas.yaml")
    children = render(svc)
    for child in children:
        assert child["metadata"]["labels"].items() >= names.common_labels(svc.name, "x").items() - {
            (names.LABEL_COMPONENT, "x")
        }
    for sts in kinds(children, "StatefulSet"):
        labels = sts["spec"]["template"]["metadata"]["labels"]
        assert labels.items() >= sts["spec"]["selector"]["matchLabels"].items()
        assert labels[names.LABEL_COMPONENT] == "engine"
    services = {s["metadata"]["name"]: s["spec"] for s in kinds(children, "Service")}
    assert services["llama-70b-dp-headless"]["publishNotReadyAddresses"] is True
    assert services["llama-70b-dp-headless"]["clusterIP"] == "None"
    assert services["llama-70b-dp-leaders"]["selector"] == names.leader_selector(svc.name)
    router_pods = kinds(children, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    assert router_pods.items() >= services["llama-70b-dp"]["selector"].items()
    assert names.selector_string(names.leader_selector("x")) == (
        "app.kubernetes.io/component=engine,apps.kubernetes.io/pod-index=0,llmsvc.io/name=x"
    )


def test_router_disabled_points_the_client_service_at_leaders() -> None:
    children = render(svc_with(setter("spec.router.enabled", False)))
    assert not kinds(children, "Deployment")
    assert not kinds(children, "Role")
    client = by_key(children)[("Service", "invalid-case")]
    assert client["spec"]["selector"] == names.leader_selector("invalid-case")
    assert client["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": 8000, "protocol": "TCP"}
    ]


def test_names_fit_dns_labels_at_max_name_and_replicas() -> None:
    name = "a" * MAX_NAME_LENGTH
    svc = svc_with(
        setter("metadata.name", name),
        setter("spec.replicas", MAX_REPLICAS - 1),
        merge("spec.parallelism", {"tensor": 8, "pipeline": 64, "gpusPerNode": 8}),
        setter("spec.autoscaling.enabled", True),
    )
    children = render(svc)
    assert len(kinds(children, "StatefulSet")) == MAX_REPLICAS - 1
    for child in children:
        assert len(child["metadata"]["name"]) <= 63
        assert all(len(v) <= 63 for v in child["metadata"]["labels"].values())
    last = kinds(children, "StatefulSet")[-1]
    # pods are NAME-g-<ordinal>; the controller-revision-hash label is NAME-g-<10-char hash>
    assert len(f"{last['metadata']['name']}-{last['spec']['replicas'] - 1}") <= 63
    assert len(last["metadata"]["name"]) + 11 <= 63
    assert all(len(part) <= 63 for part in env_of(last)["MASTER_ADDR"].split("."))


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
    subprocess.run(engine_of(sts)["command"], env=env, check=True, timeout=30, cwd=stubs)
    calls = (stubs / "calls.jsonl").read_text().splitlines()
    (stubs / "calls.jsonl").unlink()
    return [json.loads(line) for line in calls]


MODEL_DIR = "/models/hf/meta-llama/Llama-3.1-405B-Instruct-FP8/main"
COMMON = [
    "--tensor-parallel-size", "8", "--pipeline-parallel-size", "2", "--max-model-len", "8192",
    "--gpu-memory-utilization", "0.9", "--served-model-name", "llama-3.1-405b-instruct",
    "--port", "8000",
]  # fmt: skip


def test_native_command_per_rank(stubs: Path) -> None:
    sts = kinds(render(load("03-two-nodes.yaml")), "StatefulSet")[0]
    master = env_of(sts)["MASTER_ADDR"]
    multi = ["--nnodes", "2", "--master-addr", master, "--master-port", "29501"]
    leader = run_rank(sts, 0, stubs)
    assert leader == [
        ["vllm", "serve", MODEL_DIR, *COMMON, *multi[:2], "--node-rank", "0", *multi[2:],
         "--enable-prefix-caching"]
    ]  # fmt: skip
    worker = run_rank(sts, 1, stubs)
    assert worker == [
        ["vllm", "serve", MODEL_DIR, *COMMON, *multi[:2], "--node-rank", "1", *multi[2:],
         "--headless", "--enable-prefix-caching"]
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


def test_probes_are_exec_and_only_rank_zero_does_http() -> None:
    container = engine_of(kinds(render(load("03-two-nodes.yaml")), "StatefulSet")[0])
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[kind]
        assert set(probe) & {"httpGet", "tcpSocket", "grpc"} == set()
        command = probe["exec"]["command"]
        assert command[:2] == ["/bin/sh", "-c"]
        assert "http://127.0.0.1:8000/health" in command[2]
        result = subprocess.run(command, env={"NODE_RANK": "1", "PATH": "/nonexistent"})
        assert result.returncode == 0, "workers pass without running anything"
    assert container["readinessProbe"]["periodSeconds"] == 5
    assert container["livenessProbe"]["failureThreshold"] == 3


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
    command = ["/bin/sh", "-c", script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")]
    env = {"NODE_RANK": "0", "PATH": os.environ["PATH"]}
    _Health.status = 200
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    _Health.status = 503
    assert subprocess.run(command, env=env, capture_output=True).returncode != 0
