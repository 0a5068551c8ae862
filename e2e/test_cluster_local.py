"""Checks of the local control plane (only when this session started it): the configured fake
nodes, pinned versions, local binaries, loopback-only listeners, and the fast HPA sync flag."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from e2e.conftest import Cluster
from e2e.helpers import cluster_setting, is_ready, kubectl_json

K8S_VERSION = cluster_setting("K8S_VERSION")
LOOPBACK = {"127.0.0.1", "::1"}


@pytest.fixture
def local(bare_cluster: Cluster) -> Path:
    """The kwokctl cluster folder (pids/, logs/); skipped for a cluster given by KUBECONFIG."""
    if not bare_cluster.started_here:
        pytest.skip("process checks need the local cluster (LLMSVC_USE_KUBECONFIG is set)")
    return Path(cluster_setting("cluster_dir"))


def component_pids(cluster_dir: Path) -> dict[str, int]:
    """Component name -> pid, from kwokctl's pid files."""
    return {
        p.stem: int(p.read_text().strip()) for p in sorted((cluster_dir / "pids").glob("*.pid"))
    }


def listening_sockets() -> dict[str, tuple[str, int]]:
    """Socket inode -> (address, port) of every listening TCP socket, from /proc/net/tcp{,6}."""
    found: dict[str, tuple[str, int]] = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_addr, hex_port = fields[1].split(":")
            found[fields[9]] = (decode_address(hex_addr, width), int(hex_port, 16))
    return found


def decode_address(hex_addr: str, width: int) -> str:
    """The kernel's little-endian hex address as text (127.0.0.1, ::1, 0.0.0.0, ::)."""
    raw = bytes.fromhex(hex_addr)
    if width == 8:
        return ".".join(str(b) for b in reversed(raw))
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    joined = b"".join(words)
    if joined == bytes(15) + b"\x01":
        return "::1"
    if joined[:12] == bytes(10) + b"\xff\xff":
        return ".".join(str(b) for b in joined[12:])
    return joined.hex()


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets a process holds open."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def test_fake_nodes_match_the_settings(local: Path) -> None:
    wanted_gpu_nodes = int(os.environ.get("LLMSVC_GPU_NODES", "4"))
    gpus = os.environ.get("LLMSVC_GPUS_PER_NODE", "8")
    nodes = kubectl_json("get", "nodes", "-l", "llmsvc.io/pool=gpu")["items"]
    assert len(nodes) == wanted_gpu_nodes
    for node in nodes:
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert node["status"]["capacity"]["nvidia.com/gpu"] == gpus
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == gpus
        assert is_ready(node), f"node {node['metadata']['name']} is not Ready"
    cpu_nodes = kubectl_json("get", "nodes", "-l", "llmsvc.io/pool=cpu")["items"]
    assert len(cpu_nodes) == int(os.environ.get("LLMSVC_CPU_NODES", "1"))
    assert all("nvidia.com/gpu" not in n["status"]["capacity"] for n in cpu_nodes)
    assert all(is_ready(n) for n in cpu_nodes)


def test_server_reports_the_pinned_version(local: Path) -> None:
    version = kubectl_json("version")
    assert version["serverVersion"]["gitVersion"] == K8S_VERSION


def test_every_component_listens_on_loopback_only(local: Path) -> None:
    pids = component_pids(local)
    assert {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} <= set(pids)
    sockets = listening_sockets()
    seen = []
    for name, pid in pids.items():
        for inode in socket_inodes(pid) & sockets.keys():
            address, port = sockets[inode]
            seen.append(f"{name} {address}:{port}")
            assert address in LOOPBACK, f"{name} listens on {address}:{port}"
    assert any(s.startswith("kube-apiserver ") for s in seen), f"no apiserver socket in {seen}"


def test_components_run_the_locally_built_binaries(local: Path) -> None:
    bin_dir = Path(cluster_setting("LLMSVC_BIN")).resolve()
    links = sorted((local / "bin").iterdir())
    assert {p.name for p in links} >= {"etcd", "kube-apiserver", "kwok-controller"}
    for link in links:
        assert link.resolve().parent == bin_dir, f"{link} -> {link.resolve()} (downloaded?)"
    for name, pid in component_pids(local).items():
        exe = Path(f"/proc/{pid}/exe").resolve()
        assert exe.parent == bin_dir, f"{name} runs {exe}"


def test_hpa_syncs_every_second(local: Path) -> None:
    pid = component_pids(local)["kube-controller-manager"]
    args = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    assert "--horizontal-pod-autoscaler-sync-period=1s" in args
