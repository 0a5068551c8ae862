"""A loopback data plane for KWOK pods, and the metrics API registered with the API server.

KWOK pods run nothing. :func:`loopback_node` adds a fake node whose ``podCIDR`` is a loopback
/24, so KWOK gives the pods placed there loopback IPs from the start, and cordons the other nodes
meanwhile: no address outside 127.0.0.0/8 is ever published for these pods, scraped or dialled.
:class:`Fleet` starts the real process of every Ready router pod and leader pod on its pod IP:
``llmsvc router`` with the arguments the operator rendered, ``llmsvc sim`` for leaders.
EndpointSlice validation refuses loopback IPs, so the endpointslice controller publishes nothing
for these pods; the Fleet publishes the leaders itself in an ``FQDN`` EndpointSlice of
``NAME-leaders`` (a dotted quad is a valid DNS name), which the router's discovery reads like any
other slice. Used by e2e/test_autoscaling.py and by ``make bench-autoscale``.

:func:`register_metrics_api` points the APIService ``v1beta1.external.metrics.k8s.io`` at an
operator running as a local process (an ExternalName Service: the aggregator dials that host and
the APIService's port directly, no kube-proxy needed).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from e2e.helpers import apply, kubectl, kubectl_json

APISERVICE = "v1beta1.external.metrics.k8s.io"
METRICS_SERVICE = "llmsvc-metrics-api"
PORT = 8000
PROBE_FAILURES = 3  # the leader readinessProbe's failureThreshold (llmsvc/render/engine.py)


def register_metrics_api(namespace: str, port: int) -> None:
    """APIService -> ExternalName Service ``llmsvc-metrics-api`` in ``namespace`` -> 127.0.0.1."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": METRICS_SERVICE},
        "spec": {"type": "ExternalName", "externalName": "localhost"},
    }
    apply(service, namespace)
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": APISERVICE},
        "spec": {
            "group": "external.metrics.k8s.io",
            "version": "v1beta1",
            "service": {"name": METRICS_SERVICE, "namespace": namespace, "port": port},
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }
    apply(api_service)


def unregister_metrics_api() -> None:
    """Remove the APIService (an unavailable one would stall discovery for everyone)."""
    kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)


def raw(path: str) -> tuple[int, dict[str, Any]]:
    """``kubectl get --raw PATH``: (0, body) or (exit code, {"error": stderr})."""
    proc = kubectl("get", "--raw", path, check=False, timeout=30)
    if proc.returncode != 0:
        return proc.returncode, {"error": proc.stderr.strip()}
    return 0, json.loads(proc.stdout)


def queue_path(namespace: str, name: str) -> str:
    """The metrics API path of one LLMService's queue."""
    base = "/apis/external.metrics.k8s.io/v1beta1"
    return (
        f"{base}/namespaces/{namespace}/llmsvc_queue_length?labelSelector=llmsvc.io%2Fname%3D{name}"
    )


@dataclass
class Process:
    """One loopback process standing in for a pod."""

    pod: str
    ip: str
    proc: subprocess.Popen[bytes]


@dataclass
class Fleet:
    """Real routers and sims for the KWOK pods of one LLMService (a background thread)."""

    namespace: str
    name: str
    sim_args: tuple[str, ...] = ()
    router_args: tuple[str, ...] = ()
    processes: dict[str, Process] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    log: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="llmsvc-fleet-")))
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _published: list[str] | None = None
    _misses: dict[str, int] = field(default_factory=dict)
    published_log: list[str] = field(default_factory=list)

    def start(self) -> None:
        """Follow the pods in the background until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following and end every process."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for name in list(self.processes):
            self.end(name)

    def end(self, pod: str, dead: bool = False) -> None:
        """Stop the process of ``pod``; ``dead``: never restart it (its pod stays Ready)."""
        if dead:
            self.dead.add(pod)
        process = self.processes.pop(pod, None)
        if process is not None and process.proc.poll() is None:
            process.proc.send_signal(signal.SIGTERM)
            try:
                process.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.proc.kill()

    def router_url(self) -> str | None:
        """Base URL of a running router process."""
        for pod, process in self.processes.items():
            if "-router-" in pod and process.proc.poll() is None:
                return f"http://{process.ip}:{PORT}"
        return None

    def router_logs(self, lines: int = 40) -> str:
        """What the fleet published, and the last ``lines`` of every router process's output
        (for failure messages)."""
        tails = [
            f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            for path in sorted(self.log.glob("*-router-*.log"))
        ]
        return "\n".join(["--- leaders published by the fleet", *self.published_log, *tails])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as error:  # the next round retries
                print(f"fleet: {error}", file=sys.stderr)
            self._stop.wait(0.3)

    def sync(self) -> None:
        """Start processes for new Ready pods; stop those whose pods are gone."""
        found = kubectl_json(
            "get", "pods", "-n", self.namespace, "-l", f"llmsvc.io/name={self.name}"
        )
        live = {p["metadata"]["name"]: p for p in found["items"]}
        for name, pod in live.items():
            fresh = name not in self.processes and name not in self.dead
            if fresh and _ready(pod) and _serving(pod) and not _terminating(pod):
                self._launch(name, pod)
        self._publish(live)
        for pod in [p for p in self.processes if p not in live]:
            self.end(pod)

    def _publish(self, live: dict[str, dict[str, Any]]) -> None:
        """Publish the leaders that serve, as the endpointslice controller would: a pod leaves
        the slice once it is being deleted, before its process is stopped."""
        leaders, left_out = [], []
        for name, process in list(self.processes.items()):  # the test thread may end one
            if "-router-" in name:
                continue
            why = self._unpublishable(name, process.ip, live)
            if why:
                left_out.append(f"{name} ({why})")
            else:
                leaders.append(process.ip)
        leaders.sort()
        if leaders != self._published:
            apply(self._leaders_slice(leaders), self.namespace)
            self._published = leaders
            stamp = time.strftime("%H:%M:%S")
            self.published_log.append(f"{stamp} {leaders}; left out: {left_out or 'none'}")

    def _unpublishable(self, name: str, ip: str, live: dict[str, dict[str, Any]]) -> str:
        """Why the leader ``name`` is not published now ("" when it is)."""
        pod = live.get(name)
        if pod is None or not _ready(pod):
            return "pod gone or not Ready"
        if _terminating(pod):
            return "pod terminating"
        if not self._probe_ready(ip):
            return f"/health unanswered {self._misses[ip]} times in a row"
        return ""

    def _probe_ready(self, ip: str) -> bool:
        """The leader's readiness as its probe would see it: ready after one answered /health,
        unready after ``PROBE_FAILURES`` unanswered ones in a row (the rendered readinessProbe's
        failureThreshold). One slow answer on a busy machine does not unpublish a leader."""
        if _answers(ip):
            self._misses[ip] = 0
            return True
        self._misses[ip] = self._misses.get(ip, 0) + 1
        published = ip in (self._published or [])
        return published and self._misses[ip] < PROBE_FAILURES

    def router_backends(self) -> set[str] | None:
        """The backends the running router knows, or None while no router answers."""
        url = self.router_url()
        return None if url is None else router_backends(url)

    def _leaders_slice(self, ips: list[str]) -> dict[str, Any]:
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{self.name}-leaders-loopback",
                "labels": {
                    "kubernetes.io/service-name": f"{self.name}-leaders",
                    "endpointslice.kubernetes.io/managed-by": "llmsvc-e2e",
                },
            },
            "addressType": "FQDN",
            "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        }

    def _launch(self, name: str, pod: dict[str, Any]) -> None:
        ip = pod["status"].get("podIP", "")
        if not ipaddress.ip_address(ip).is_loopback:
            raise AssertionError(f"pod {name} has IP {ip!r}, not on the loopback node: never dial")
        router = pod["metadata"]["labels"].get("app.kubernetes.io/component") == "router"
        command = self._router(ip, pod) if router else self._sim(ip)
        with (self.log / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ)
            )
        self.processes[name] = Process(name, ip, proc)

    def _router(self, ip: str, pod: dict[str, Any]) -> list[str]:
        """The router exactly as the operator rendered it, on this loopback address."""
        rendered = pod["spec"]["containers"][0]["args"]
        return [
            sys.executable, "-m", "llmsvc.cli", *rendered, "--host", ip,
            "--health-interval", "0.5", *self.router_args,
        ]  # fmt: skip

    def _sim(self, ip: str) -> list[str]:
        return [
            sys.executable, "-m", "llmsvc.cli", "sim", "--host", ip, "--port", str(PORT),
            "--model", "demo", *self.sim_args,
        ]  # fmt: skip


def router_backends(url: str) -> set[str] | None:
    """The backends the router at ``url`` knows (its ``llmsvc_router_backend_healthy`` series),
    or None when it does not answer. Load sent before it knows one gets 503 "no healthy
    backend": a router's readiness does not wait for its backends (a service scaled to zero
    has none)."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    families = text_string_to_metric_families(text)
    healthy = (f for f in families if f.name == "llmsvc_router_backend_healthy")
    return {s.labels["backend"] for f in healthy for s in f.samples}


def _answers(ip: str) -> bool:
    """The process on ``ip`` serves /health (published only then, like a readiness probe)."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{PORT}/health", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _terminating(pod: dict[str, Any]) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _serving(pod: dict[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    component = labels.get("app.kubernetes.io/component")
    return component == "router" or labels.get("apps.kubernetes.io/pod-index") == "0"


LOOPBACK_POOL = "autoscale-loopback"


def loopback_node(subnet: int) -> Callable[[], None]:
    """Add node ``autoscale-loopback`` (pods get 127.SUBNET.0.x) and cordon every other node.

    Returns the undo: uncordon what was cordoned here and delete the node.
    """
    name = LOOPBACK_POOL
    gpus = {"cpu": "96", "memory": "1000Gi", "pods": "110", "nvidia.com/gpu": "8"}
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {
                "type": "kwok",
                "llmsvc.io/pool": LOOPBACK_POOL,
                "kubernetes.io/hostname": name,
            },
        },
        "spec": {"podCIDR": f"127.{subnet}.0.0/24", "podCIDRs": [f"127.{subnet}.0.0/24"]},
        "status": {"allocatable": gpus, "capacity": gpus},
    }
    apply(node)
    others = [
        n["metadata"]["name"]
        for n in kubectl_json("get", "nodes")["items"]
        if n["metadata"]["name"] != name and not n["spec"].get("unschedulable")
    ]
    for other in others:
        kubectl("cordon", other)

    def undo() -> None:
        for other in others:
            kubectl("uncordon", other, check=False)
        kubectl("delete", "node", name, "--ignore-not-found", "--wait=false", check=False)

    return undo


def replicas(namespace: str, name: str) -> int:
    """``spec.replicas`` of the LLMService (what the HPA and the activator write)."""
    obj = kubectl_json("get", "llmservice", name, "-n", namespace)
    return int(obj["spec"].get("replicas", 0))


@dataclass
class ReplicaRecorder:
    """Samples ``spec.replicas`` in the background and keeps the sequence of distinct values."""

    namespace: str
    name: str
    sequence: list[int] = field(default_factory=list)
    changes: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling, with one last sample: the value the caller just waited for is in the
        sequence even when it came after the thread's last sample."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sample()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.2)

    def _sample(self) -> None:
        try:
            value = replicas(self.namespace, self.name)
        except Exception:  # the next sample retries
            return
        if not self.sequence or self.sequence[-1] != value:
            self.sequence.append(value)
            self.changes.append((time.monotonic(), value))
