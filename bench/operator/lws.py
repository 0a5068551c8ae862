"""The optional LeaderWorkerSet row of `make bench-operator` (``--lws``): the same pods as the
LLMServices, made by the LWS controller built from its Go module (sigs.k8s.io/lws, through the Go
module proxy) and run on loopback against the same local control plane.

The binary and its serving certificate live under ~/.cache/llmsvc/lws, never in the repository.
Its webhooks (LWS needs its pod webhook to label the ranks) are registered by URL on 127.0.0.1
and only for the benchmark's namespace, and are removed again afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from e2e.helpers import kubectl, to_yaml, wait_established, wait_for
from e2e.operator_process import Measured, answers, terminate

from llmsvc.router.server import free_port

VERSION = "v0.9.0"
MODULE = "sigs.k8s.io/lws"
CACHE = Path(os.environ.get("LLMSVC_CACHE", Path.home() / ".cache/llmsvc")) / "lws"
BINARY = CACHE / f"lws-manager-{VERSION}"
IMAGE = "registry.local/none:1"


def module_dir() -> Path:
    """The module's source in the Go module cache (downloaded through the proxy if missing)."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{VERSION}"],
        capture_output=True, text=True, check=True, timeout=600,
        env=dict(os.environ) | {"GOTOOLCHAIN": "local"},
    ).stdout  # fmt: skip
    return Path(json.loads(out)["Dir"])


def build() -> Path:
    """The LWS manager binary, built once into the cache."""
    if not BINARY.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ) | {"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
        subprocess.run(["go", "build", "-o", str(BINARY), "./cmd"], cwd=module_dir(), env=env,
                       check=True, timeout=3600)  # fmt: skip
    return BINARY


def certificates(directory: Path) -> bytes:
    """A CA and a serving certificate for 127.0.0.1 in ``directory`` (tls.crt, tls.key); the CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    run = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    subprocess.run([*run, "-keyout", str(ca_key), "-out", str(ca_crt), "-subj", "/CN=lws-bench-ca"],
                   check=True, capture_output=True)  # fmt: skip
    csr = directory / "tls.csr"
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(directory / "tls.key"), "-out", str(csr), "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)  # fmt: skip
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey",
                    str(ca_key), "-CAcreateserial", "-out", str(directory / "tls.crt"), "-days",
                    "2", "-extfile", str(ext)], check=True, capture_output=True)  # fmt: skip
    return ca_crt.read_bytes()


def webhooks(source: Path, port: int, ca: bytes, namespace: str) -> list[dict[str, Any]]:
    """LWS's webhook configurations, pointed at 127.0.0.1:port, for ``namespace`` only."""
    docs = [d for d in yaml.safe_load_all(source.read_text()) if d]
    selector = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    for doc in docs:
        doc["metadata"]["name"] = f"llmsvc-bench-lws-{doc['metadata']['name']}"
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}",
                                    "caBundle": base64.b64encode(ca).decode()}  # fmt: skip
            hook["namespaceSelector"] = selector
    return docs


class LwsProcess(Measured):
    """The LWS manager as a local process: start, stop, CPU time, memory, its client metrics."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.dir = Path(tempfile.mkdtemp(prefix="llmsvc-lws-"))
        self.port, self.health, self.metrics_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.hooks: list[dict[str, Any]] = []
        self.token = ""

    def start(self) -> None:
        source = module_dir()
        ca = certificates(self.dir / "certs")
        self.token = scraper_token()
        kubectl("apply", "--server-side", "--force-conflicts", "-f",
                str(source / "config/crd/bases"))  # fmt: skip
        wait_established(source / "config/crd/bases")
        self.hooks = webhooks(source / "config/webhook/manifests.yaml", self.port, ca,
                              self.namespace)  # fmt: skip
        kubectl("apply", "-f", "-", input=to_yaml(self.hooks))
        config = {
            "apiVersion": "config.lws.x-k8s.io/v1alpha1", "kind": "Configuration",
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "webhook": {"port": self.port, "host": "127.0.0.1",
                        "certDir": str(self.dir / "certs")},
            "metrics": {"bindAddress": f"127.0.0.1:{self.metrics_port}"},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{self.health}"},
        }  # fmt: skip
        (self.dir / "config.yaml").write_text(yaml.safe_dump(config))
        with (self.dir / "lws.log").open("ab") as out:
            self.proc = subprocess.Popen([str(build()), "--config", str(self.dir / "config.yaml")],
                                         stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        wait_for(self._healthy, timeout=60, what=f"LWS manager ready ({self.dir}/lws.log)")

    def _healthy(self) -> bool:
        assert self.proc is not None
        return answers(self.proc, f"http://127.0.0.1:{self.health}/readyz", self.dir / "lws.log")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        for hook in self.hooks:
            kubectl("delete", hook["kind"], hook["metadata"]["name"], "--ignore-not-found",
                    check=False)  # fmt: skip


def leaderworkerset(i: int, size: int, gpus: int) -> dict[str, Any]:
    """The same pods as LLMService ``i``: ``size`` ranks of ``gpus`` GPUs each."""
    pool = {"llmsvc.io/bench-pool": "whole" if gpus == 8 else "shared"}
    container = {"name": "c", "image": IMAGE, "resources": {"limits": {"nvidia.com/gpu": gpus}}}
    template = {"spec": {"containers": [container], "nodeSelector": pool}}
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
        "metadata": {"name": f"lws-{i}"},
        "spec": {"replicas": 1, "startupPolicy": "LeaderCreated",
                 "leaderWorkerTemplate": {"size": size, "workerTemplate": template}},
    }  # fmt: skip


def lws_ready(obj: dict[str, Any]) -> bool:
    return bool(obj.get("status", {}).get("readyReplicas", 0) == obj["spec"]["replicas"])


# A ServiceAccount allowed to read /metrics (the built-in system:monitoring role).
SCRAPER: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "ServiceAccount",
     "metadata": {"name": "llmsvc-bench-scraper", "namespace": "default"}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
     "metadata": {"name": "llmsvc-bench-scraper"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                 "name": "system:monitoring"},
     "subjects": [{"kind": "ServiceAccount", "name": "llmsvc-bench-scraper",
                   "namespace": "default"}]},
]  # fmt: skip


def scraper_token() -> str:
    """A token of the scraper ServiceAccount (LWS's metrics ask the API server who it is)."""
    kubectl("apply", "-f", "-", input=to_yaml(SCRAPER))
    return kubectl("create", "token", "llmsvc-bench-scraper", "-n", "default").stdout.strip()


def client_writes(lws: LwsProcess) -> float:
    """Write requests the manager made so far (client-go's rest_client_requests_total, served
    behind the API server's authentication and authorization)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    url = f"https://127.0.0.1:{lws.metrics_port}/metrics"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {lws.token}"})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310 - https to 127.0.0.1
            text = response.read().decode()
    except OSError:
        return float("nan")
    total = 0.0
    for line in text.splitlines():
        if line.startswith("rest_client_requests_total{") and any(
            f'method="{m}"' in line for m in ("POST", "PUT", "PATCH", "DELETE")
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total
