"""Helpers for the e2e tests on the real kubelet node (e2e/cluster/node/): placement, images,
LLMService manifests that run the sim engine, a model server on the pod bridge, pod state.

The real node is tainted and labelled, so only the objects built here land on it. Its pods reach
this machine only through the pod bridge's gateway address, where the model server listens.
"""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from e2e.helpers import cluster_setting, exists, kubectl, kubectl_json, pods, wait_for

Manifest = dict[str, Any]

OPERATOR_IMAGE = "localhost/llmsvc/llmservice-operator:dev"
ENGINE_IMAGE = "localhost/llmsvc/vllm-sim:dev"
IMAGES = (OPERATOR_IMAGE, ENGINE_IMAGE)
POOL_LABEL = "llmsvc.io/pool"
TAINT_KEY = "llmsvc.io/real-node"
TOLERATIONS = [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
NODE_SELECTOR = {POOL_LABEL: "real"}


@functools.cache
def node_name() -> str:
    """The real node's name (REAL_NODE_NAME in e2e/cluster/common.sh)."""
    return cluster_setting("REAL_NODE_NAME")


@functools.cache
def gateway() -> str:
    """The pod bridge's address on this machine: pods reach local servers only there."""
    return cluster_setting("POD_GATEWAY")


def placement() -> Manifest:
    """Pod-spec fields that put a pod on the real node (and only there)."""
    return {"nodeSelector": dict(NODE_SELECTOR), "tolerations": [dict(t) for t in TOLERATIONS]}


def node_problem() -> str | None:
    """Why the real node cannot run the tests, or None when it is Ready with our images."""
    found = kubectl("get", "node", node_name(), "-o", "json", check=False)
    if found.returncode != 0:
        return f"no node {node_name()}: {found.stderr.strip()}"
    node = kubectl_json("get", "node", node_name())
    ready = [c for c in node["status"].get("conditions", []) if c["type"] == "Ready"]
    if not ready or ready[0]["status"] != "True":
        return f"node {node_name()} is not Ready: {ready}"
    images = node["status"].get("images") or []
    names = {n for image in images for n in image.get("names") or []}
    missing = [i for i in IMAGES if not any(n.endswith(i) for n in names)]
    if missing:
        return f"node {node_name()} lacks the images {missing} (e2e/cluster/node/images.sh)"
    return None


def busy_pods() -> list[str]:
    """Pods (namespace/name) on the real node that still hold resources."""
    items = kubectl_json("get", "pods", "-A", "--field-selector", f"spec.nodeName={node_name()}")
    return [
        f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        for p in items["items"]
        if p["status"].get("phase") not in ("Succeeded", "Failed")
    ]


def wait_idle(timeout: float = 120) -> None:
    """Wait until earlier tests' pods have left the node (it has only two CPUs to share)."""
    wait_for(lambda: not busy_pods(), timeout=timeout, what=f"{node_name()} to be idle")


def llmservice(
    name: str,
    uri: str,
    nodes: int = 1,
    env: dict[str, str] | None = None,
    **spec: Any,
) -> Manifest:
    """An LLMService on the real node running the sim engine image (``nodes`` ranks per group)."""
    body: Manifest = {
        "model": {"uri": uri, "servedName": name},
        "engine": {
            "image": ENGINE_IMAGE,
            "maxModelLen": 2048,
            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
            # the real node has this machine's 2 cores: far below the default model-server requests
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        },
        "parallelism": {"tensor": 1, "pipeline": nodes, "gpusPerNode": 1},
        "startup": {"timeoutSeconds": 120},
        "scheduling": {"nodeSelector": dict(NODE_SELECTOR), "tolerations": TOLERATIONS},
    }
    body.update(spec)
    return {
        "apiVersion": "llmsvc.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name},
        "spec": body,
    }


def pod(namespace: str, name: str) -> Manifest:
    """The pod ``name`` as JSON."""
    return kubectl_json("get", "pod", name, "-n", namespace)


def container_status(pod_obj: Manifest, container: str, init: bool = False) -> Manifest:
    """The status of one (init) container of a pod, ``{}`` before the kubelet reports it."""
    key = "initContainerStatuses" if init else "containerStatuses"
    for status in pod_obj.get("status", {}).get(key) or []:
        if status["name"] == container:
            return dict(status)
    return {}


def condition(obj: Manifest, kind: str) -> Manifest:
    """The condition ``kind`` of an object's status, ``{}`` when absent."""
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}


class _Handler(http.server.SimpleHTTPRequestHandler):
    counts: Counter[str]

    def do_GET(self) -> None:
        # A ranged GET is the puller's probe (this server ignores Range): counted apart.
        self.counts[self.path + (" (range)" if self.headers.get("Range") else "")] += 1
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


@contextmanager
def model_server(root: Path) -> Iterator[tuple[str, Counter[str]]]:
    """Serve ``root`` over HTTP on the pod bridge's gateway; yields (base URL, GETs per path;
    ranged GETs under ``PATH (range)``)."""
    counts: Counter[str] = Counter()
    handler = functools.partial(
        type("Handler", (_Handler,), {"counts": counts}), directory=str(root)
    )
    httpd = http.server.ThreadingHTTPServer((gateway(), 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{gateway()}:{httpd.server_address[1]}", counts
    finally:
        httpd.shutdown()
        httpd.server_close()


def write_model(root: Path) -> None:
    """A tiny model directory (the sim engine reads nothing but its existence)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.safetensors").write_bytes(b"\0" * 4096)


def llmservice_status(namespace: str, name: str) -> Manifest:
    """The LLMService as JSON."""
    return kubectl_json("get", "llmservice", name, "-n", namespace)


def wait_condition(
    namespace: str, name: str, kind: str, timeout: float, reason: str = ""
) -> Manifest:
    """Wait until the LLMService's condition ``kind`` is True (and has ``reason`` if given)."""

    def check() -> Manifest | None:
        cond = condition(llmservice_status(namespace, name), kind)
        ok = cond.get("status") == "True" and (not reason or cond.get("reason") == reason)
        return cond if ok else None

    return wait_for(check, timeout=timeout, interval=1, what=f"{name} {kind}={reason or 'True'}")


def elapsed(start: float) -> str:
    """Seconds since ``start`` (monotonic), for messages."""
    return f"{time.monotonic() - start:.1f} s"


def _ctr(*args: str) -> str:
    """``ctr`` against the real node's containerd (namespace ``k8s.io``, the kubelet's)."""
    sock = cluster_setting("CONTAINERD_SOCK")
    return subprocess.run(
        ["ctr", "--address", sock, "--namespace", "k8s.io", *args],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip


def _container_id(pod_obj: Manifest, container: str) -> str:
    return str(container_status(pod_obj, container)["containerID"].split("://", 1)[1])


def engine_pid(pod_obj: Manifest) -> int:
    """The host PID of a pod's engine process (its containerd task), to kill it for real."""
    container_id = _container_id(pod_obj, "engine")
    tasks = _ctr("tasks", "ls")
    for line in tasks.splitlines()[1:]:
        task, pid, *_ = line.split()
        if task == container_id:
            return int(pid)
    raise AssertionError(f"no containerd task {container_id} on {node_name()}:\n{tasks}")


def is_ready_service(namespace: str, name: str) -> bool:
    """Whether the LLMService has condition Ready=True."""
    return condition(llmservice_status(namespace, name), "Ready").get("status") == "True"


@contextmanager
def paused(pod_obj: Manifest, container: str) -> Iterator[None]:
    """Freeze a container's processes (containerd's cgroup freezer) and thaw them afterwards:
    a hung process whose pod stays Ready until its readiness probe has failed enough times."""
    container_id = _container_id(pod_obj, container)
    _ctr("tasks", "pause", container_id)
    try:
        yield
    finally:
        _ctr("tasks", "resume", container_id)


def place_router(namespace: str, name: str) -> None:
    """Put the router Deployment on the real node (a user's own patch, kept by the operator)."""
    deployment = f"{name}-router"
    wait_for(lambda: exists("deployment", deployment, namespace), timeout=60, what=deployment)
    patch = {"spec": {"template": {"spec": placement()}}}
    kubectl("patch", "deployment", deployment, "-n", namespace, "-p", json.dumps(patch))


def router_pod(namespace: str, name: str) -> Manifest | None:
    """The router's Ready pod on the real node, if any."""
    for found in pods(namespace, f"app.kubernetes.io/component=router,llmsvc.io/name={name}"):
        on_node = found["spec"].get("nodeName") == node_name()
        if on_node and condition(found, "Ready").get("status") == "True":
            return found
    return None
