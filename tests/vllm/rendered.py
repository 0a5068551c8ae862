"""What the operator renders for vLLM, collected for the conformance tests.

``serve_argvs`` runs every example's rank script under /bin/sh, once per rank, with a stub
``vllm`` (and ``ray``) that records its argv: the exact words vLLM would receive in the pod.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from llmsvc.api import LLMService, parse
from llmsvc.render import render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
Manifest = dict[str, Any]

_STUB = (
    "import json, os, sys\n"
    "with open(os.environ['CALLS'], 'a') as f:\n"
    "    f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + '\\n')\n"
)
# The Ray head waits until NNODES nodes are alive: a fake `ray` module says they are.
_FAKE_RAY = "import os\ndef init(**kw): pass\ndef nodes(): return [{'Alive': True}] * 64\n"


def services() -> list[LLMService]:
    """Every LLMService in examples/."""
    docs = [doc for path in EXAMPLES for doc in yaml.safe_load_all(path.read_text())]
    return [parse(doc) for doc in docs if doc and doc.get("kind") == "LLMService"]


def statefulsets(svc: LLMService) -> list[Manifest]:
    return [c for c in render(svc) if c["kind"] == "StatefulSet"]


def engine(sts: Manifest) -> Manifest:
    container: Manifest = sts["spec"]["template"]["spec"]["containers"][0]
    return container


def _stubs(tmp: Path) -> Path:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("vllm", "ray"):
        (bin_dir / tool).write_text(f"#!{sys.executable}\n{_STUB}")
        (bin_dir / tool).chmod(0o755)
    if not (bin_dir / "python3").exists():
        (bin_dir / "python3").symlink_to(sys.executable)
    (tmp / "ray.py").write_text(_FAKE_RAY)
    return bin_dir


def rank_calls(sts: Manifest, rank: int, tmp: Path) -> list[list[str]]:
    """The programs (argv) the rank script of ``sts`` runs as ``rank``."""
    container = engine(sts)
    calls = tmp / "calls.jsonl"
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env |= {"NODE_RANK": str(rank), "CALLS": str(calls), "PYTHONPATH": str(tmp)}
    env |= {"PATH": f"{_stubs(tmp)}:/usr/bin:/bin"}
    subprocess.run(container["command"], env=env, check=True, timeout=60, cwd=tmp)
    lines = calls.read_text().splitlines() if calls.exists() else []
    calls.unlink(missing_ok=True)
    return [json.loads(line) for line in lines]


def serve_argvs(tmp: Path) -> dict[str, list[str]]:
    """``{"<service>/rank-<r>": argv after 'vllm'}`` for every rank that runs ``vllm serve``."""
    argvs: dict[str, list[str]] = {}
    for svc in services():
        sts = statefulsets(svc)[0]
        # Ray workers only join the Ray cluster (and wait for the head): no `vllm serve` there.
        ranks = [0] if svc.spec.parallelism.backend == "ray" else range(sts["spec"]["replicas"])
        for rank in ranks:
            for call in rank_calls(sts, rank, tmp):
                if call[0] == "vllm":
                    argvs[f"{svc.name}/rank-{rank}"] = call[1:]
    return argvs


def vllm_env_names() -> set[str]:
    """Every VLLM_* variable the operator sets on any rank of any example."""
    names = set()
    for svc in services():
        for sts in statefulsets(svc):
            names |= {e["name"] for e in engine(sts)["env"] if e["name"].startswith("VLLM_")}
    return names
