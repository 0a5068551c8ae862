"""Private fake GPU nodes for the gang, topology and drain tests: capacity the test controls.

Each test creates its own KWOK nodes, labelled ``llmsvc.io/pool=<pool>`` and tainted so that no
other pod lands on them; its LLMServices select and tolerate exactly that pool. Nodes go away
when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from e2e.helpers import kubectl, kubectl_json, to_yaml

TAINT = "llmsvc.io/test-pool"


def node(
    name: str, pool: str, gpus: int = 8, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A fake GPU node of ``pool`` (KWOK marks it Ready)."""
    resources = {"cpu": "96", "memory": "1000Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "type": "kwok", "llmsvc.io/pool": pool}
            | (labels or {}),
        },
        "spec": {"taints": [{"key": TAINT, "value": pool, "effect": "NoSchedule"}]},
        "status": {"allocatable": resources, "capacity": resources},
    }


def add_nodes(*nodes: dict[str, Any]) -> None:
    """Create ``nodes`` with their capacity (status subresource) and wait until they are Ready."""
    manifests = to_yaml(nodes)
    apply = ("apply", "--server-side", "--field-manager=llmsvc-e2e", "-f", "-")
    kubectl(*apply, input=manifests)
    # The node TTL controller rewrites node.alpha.kubernetes.io/ttl once a cluster has over 100
    # nodes (e.g. during a benchmark); the status apply re-sends the manifest's metadata, and
    # like a kubelet, what it reports wins.
    kubectl(*apply, "--subresource=status", "--force-conflicts", input=manifests)
    names = [f"node/{n['metadata']['name']}" for n in nodes]
    kubectl("wait", "--for=condition=Ready", *names, "--timeout=60s", timeout=70)


@contextmanager
def pool(name: str) -> Iterator[str]:
    """A node pool named ``name`` whose nodes are deleted afterwards."""
    try:
        yield name
    finally:
        kubectl("delete", "nodes", "-l", f"llmsvc.io/pool={name}", "--wait=false", check=False)


def placement(pool_name: str) -> dict[str, Any]:
    """spec.scheduling that puts every rank on ``pool_name`` and nowhere else."""
    return {
        "nodeSelector": {"llmsvc.io/pool": pool_name},
        "tolerations": [{"key": TAINT, "operator": "Equal", "value": pool_name,
                         "effect": "NoSchedule"}],
    }  # fmt: skip


def gang_served() -> bool:
    """Whether the cluster serves the PodGroup API (LLMSVC_GANG=1, the default)."""
    proc = kubectl("get", "--raw", "/apis/scheduling.k8s.io/v1beta1", check=False)
    return proc.returncode == 0 and '"podgroups"' in proc.stdout


def podgroups(namespace: str) -> list[dict[str, Any]]:
    """The PodGroups of ``namespace``."""
    items: list[dict[str, Any]] = kubectl_json("get", "podgroups.scheduling.k8s.io", "-n",
                                               namespace)["items"]  # fmt: skip
    return items
