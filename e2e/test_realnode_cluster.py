"""The real kubelet node itself: registered next to the KWOK nodes, fake GPUs, tainted, not
managed by KWOK (its containers really run), and every process it added listens only on
loopback or the pod bridge."""

from __future__ import annotations

import json
import os
from pathlib import Path

from e2e import realnode
from e2e.helpers import cluster_setting, kubectl, kubectl_json, wait_for
from e2e.test_cluster_local import LOOPBACK, listening_sockets, socket_inodes

KWOK_ANNOTATION = "kwok.x-k8s.io/node"


def test_node_advertises_fake_gpus_and_keeps_others_off(real_node: str) -> None:
    node = kubectl_json("get", "node", real_node)
    gpus = os.environ.get("LLMSVC_GPUS_PER_NODE", "8")
    assert node["status"]["capacity"]["nvidia.com/gpu"] == gpus
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == gpus
    assert node["metadata"]["labels"][realnode.POOL_LABEL] == "real"
    assert {"key": realnode.TAINT_KEY, "value": "true", "effect": "NoSchedule"} in node["spec"][
        "taints"
    ]
    assert KWOK_ANNOTATION not in node["metadata"].get("annotations", {})
    assert (
        node["status"]["nodeInfo"]["kubeletVersion"]
        == kubectl_json("version")["serverVersion"]["gitVersion"]
    )
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")


def test_containers_really_run_there(real_node: str, real_namespace: str) -> None:
    """A container that exits 3 ends Failed with exit code 3: KWOK would have faked Running."""
    overrides = {"spec": {**realnode.placement(), "restartPolicy": "Never"}}
    image, spec = f"--image={realnode.ENGINE_IMAGE}", f"--overrides={json.dumps(overrides)}"
    kubectl("run", "exits", "-n", real_namespace, image, "--restart=Never", spec,
            "--command", "--", "sh", "-c", "echo ran on $(hostname); exit 3")  # fmt: skip

    def finished() -> realnode.Manifest | None:
        status = realnode.container_status(realnode.pod(real_namespace, "exits"), "exits")
        terminated: realnode.Manifest | None = status.get("state", {}).get("terminated")
        return terminated

    terminated = wait_for(finished, timeout=120, interval=1, what="the container to exit")
    assert terminated["exitCode"] == 3
    assert "ran on exits" in kubectl("logs", "exits", "-n", real_namespace).stdout
    # the kubelet may report the container's exit a moment before the pod's phase
    wait_for(lambda: realnode.pod(real_namespace, "exits")["status"]["phase"] == "Failed",
             timeout=30, interval=0.5, what="the pod phase Failed")  # fmt: skip


def test_node_processes_listen_on_loopback_or_the_pod_bridge(real_node: str) -> None:
    pid_dir = Path(cluster_setting("NODE_DIR")) / "pids"
    allowed = LOOPBACK | {realnode.gateway()}
    sockets = listening_sockets()
    seen = []
    for pidfile in sorted(pid_dir.glob("*.pid")):
        pid = int(pidfile.read_text().split()[0])
        for inode in socket_inodes(pid) & sockets.keys():
            address, port = sockets[inode]
            seen.append(f"{pidfile.stem} {address}:{port}")
            assert address in allowed, f"{pidfile.stem} listens on {address}:{port}"
    names = {s.split()[0] for s in seen}
    assert {"kubelet", "kube-proxy", "coredns"} <= names, seen
