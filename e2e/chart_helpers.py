"""Helpers for the Helm chart e2e tests: helm, service-account kubeconfigs, private fake GPU nodes.

Other tests share the cluster (and its GPUs), so the chart tests bring their own tainted fake GPU
nodes and pin their LLMServices to them; every name here carries a per-test suffix.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from e2e.helpers import CLUSTER_DIR, REPO, apply, kubectl
from e2e.operator_process import OperatorProcess

CHART = REPO / "charts" / "llmservice-operator"
SCENARIOS = REPO / "e2e" / "chart"
POOL_LABEL = "llmsvc.io/e2e-pool"


def helm(*args: str, timeout: float = 120) -> str:
    """Run `helm ARGS` against the test cluster; fail with helm's stderr when it exits non-zero."""
    proc = subprocess.run(
        ["helm", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


def template(release: str, namespace: str, scenario: str, *extra: str) -> list[dict[str, Any]]:
    """The chart rendered with e2e/chart/SCENARIO-values.yaml (plus ``extra`` helm flags)."""
    values = str(SCENARIOS / f"{scenario}-values.yaml")
    out = helm("template", release, str(CHART), "-n", namespace, "-f", values, *extra)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def sa_kubeconfig(service_account: str, namespace: str, path: Path) -> Path:
    """Write a kubeconfig at ``path`` whose user is a fresh token of the ServiceAccount."""
    token = kubectl("create", "token", service_account, "-n", namespace, "--duration=1h").stdout
    current = json.loads(kubectl("config", "view", "--minify", "--raw", "-o", "json").stdout)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": current["clusters"][0]["cluster"]}],
        "users": [{"name": service_account, "user": {"token": token.strip()}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": service_account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def fake_gpu_node(name: str, pool: str, gpus: int) -> dict[str, Any]:
    """A KWOK-managed GPU node (the cluster's own template) labelled and tainted for ``pool``."""
    text = (CLUSTER_DIR / "nodes" / "gpu-node.yaml").read_text()
    node: dict[str, Any] = yaml.safe_load(text.replace("GPU_COUNT", str(gpus)))
    node["metadata"]["name"] = name
    node["metadata"]["labels"].update({"kubernetes.io/hostname": name, POOL_LABEL: pool})
    node["spec"] = {"taints": [{"key": POOL_LABEL, "value": pool, "effect": "NoSchedule"}]}
    return node


@contextmanager
def private_gpu_pool(pool: str, nodes: int, gpus: int = 8) -> Iterator[str]:
    """Fake GPU nodes only pods tolerating ``pool`` can use; deleted afterwards."""
    names = [f"{pool}-gpu-{i}" for i in range(nodes)]
    apply([fake_gpu_node(name, pool, gpus) for name in names])
    try:
        kubectl("wait", "--for=condition=Ready", "--timeout=60s", *(f"node/{n}" for n in names))
        yield pool
    finally:
        kubectl("delete", "node", *names, "--ignore-not-found", "--wait=false", check=False)


def pinned(manifest: dict[str, Any], pool: str) -> dict[str, Any]:
    """``manifest`` (an LLMService) scheduled onto the private pool only."""
    out = copy.deepcopy(manifest)
    scheduling = out["spec"].setdefault("scheduling", {})
    scheduling.setdefault("nodeSelector", {})[POOL_LABEL] = pool
    toleration = {"key": POOL_LABEL, "operator": "Equal", "value": pool, "effect": "NoSchedule"}
    scheduling.setdefault("tolerations", []).append(toleration)
    return out


def can_i(user: str, verb: str, resource: str, namespace: str | None) -> bool:
    """`kubectl auth can-i VERB RESOURCE[/SUB] --as USER` in ``namespace`` (None: everywhere)."""
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    kind, _, sub = resource.partition("/")
    subresource = [f"--subresource={sub}"] if sub else []
    proc = kubectl("auth", "can-i", verb, kind, *subresource, "--as", user, *scope, check=False)
    answer = proc.stdout.strip()
    if answer not in {"yes", "no"}:
        raise AssertionError(f"kubectl auth can-i {verb} {resource}: {proc.stderr.strip()}")
    return answer == "yes"


class OperatorAs(OperatorProcess):
    """``llmsvc operator`` as a process that authenticates with its own kubeconfig."""

    def __init__(self, kubeconfig: Path, namespaces: Sequence[str]) -> None:
        super().__init__(namespaces=tuple(namespaces))
        self.kubeconfig = kubeconfig

    def start(self) -> None:
        """Start the operator as the kubeconfig's user; this process keeps its own KUBECONFIG."""
        saved = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(self.kubeconfig)  # the child copies the environment
        try:
            super().start()
        finally:
            if saved is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = saved
