"""``helm install`` runs the operator as a real pod on the real node, in a namespace that enforces
the restricted Pod Security Standard, and that pod reconciles an example to Ready.

The example's ranks land on the KWOK GPU nodes (they need eight GPUs each); the operator itself is
the project image built by e2e/cluster/node/images.sh, started by the real kubelet.
"""

from __future__ import annotations

import json
import secrets

from e2e import realnode
from e2e.chart_helpers import CHART, helm
from e2e.helpers import REPO, is_ready, kubectl, kubectl_json, pods, wait_for

READY_TIMEOUT = 180.0


def pod_writes(namespace: str, pod: str, target: str) -> float:
    """API writes into namespace ``target`` counted by the operator pod's own /metrics."""
    url = f"/api/v1/namespaces/{namespace}/pods/{pod}:9090/proxy/metrics"
    samples = kubectl("get", "--raw", url).stdout.splitlines()
    prefix, label = "llmsvc_operator_api_writes_total{", f'namespace="{target}"'
    return sum(float(s.rsplit(" ", 1)[1]) for s in samples if s.startswith(prefix) and label in s)


def test_helm_installed_operator_pod_reconciles_an_example(
    real_node: str, real_namespace: str, namespace: str
) -> None:
    operator_ns, workload_ns = real_namespace, namespace
    kubectl("label", "namespace", operator_ns, "pod-security.kubernetes.io/enforce=restricted")
    release = f"rn-{secrets.token_hex(3)}"
    repository, tag = realnode.OPERATOR_IMAGE.rsplit(":", 1)
    placement = realnode.placement()
    values = [
        f"image.repository={repository}",
        f"image.tag={tag}",
        "image.pullPolicy=IfNotPresent",
        f"watchNamespaces={{{workload_ns}}}",
        "resyncSeconds=5",
        # the metrics API's APIService is cluster-wide: not with watchNamespaces (the chart says so)
        "metricsApi.enabled=false",
    ]
    flags = [arg for value in values for arg in ("--set", value)]
    for key in ("nodeSelector", "tolerations"):
        flags += ["--set-json", f"{key}={json.dumps(placement[key])}"]
    try:
        helm("install", release, str(CHART), "-n", operator_ns, *flags,
             "--wait", "--timeout", "3m", timeout=240)  # fmt: skip
        (pod,) = pods(operator_ns, f"app.kubernetes.io/instance={release}")
        assert pod["spec"]["nodeName"] == real_node
        assert is_ready(pod)
        kubectl("apply", "-n", workload_ns, "-f", str(REPO / "examples" / "01-single-gpu.yaml"))
        name = kubectl("get", "llmservice", "-n", workload_ns, "-o", "name").stdout.strip()

        def ready() -> bool:
            return is_ready(kubectl_json("get", name, "-n", workload_ns))

        wait_for(ready, timeout=READY_TIMEOUT, interval=1, what=f"{name} Ready")
        log = kubectl("logs", "-n", operator_ns, pod["metadata"]["name"]).stdout
        # the pod (not some other operator) did it: it holds the Lease, and its own metrics
        # (read through the API server's pod proxy) count its writes into the workload namespace
        assert "became leader" in log
        assert pod_writes(operator_ns, pod["metadata"]["name"], workload_ns) > 0
    finally:
        kubectl("delete", "llmservices", "--all", "-n", workload_ns, "--wait=false", check=False)
        helm("uninstall", release, "-n", operator_ns, "--wait", timeout=120)
