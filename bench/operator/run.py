"""`make bench-operator N=100`: how fast and how quietly the operator brings N LLMServices to Ready.

On the local control plane (KWOK fake GPU nodes, sized for the run, up to N=1000), it measures in
ONE run:

* baseline: the same pods as N plain StatefulSets applied directly (no operator) until all are
  ready: the floor the control plane itself sets (every time is counted from the start of the
  `kubectl apply`);
* `kubectl apply` of the N LLMServices with no operator running (then deleted again);
* the operator: N LLMServices (two in three single-GPU, one in three two-node TP=8 PP=2) applied
  at once while it runs (how long the apply takes), time until each reports Ready (p50/p99 per
  object, total), API writes per LLMService, its CPU time until Ready; then a steady-state window
  (no client polls meanwhile): writes, and GET/LIST requests on the operator's resources as
  kube-apiserver counts them (apiserver_request_total, goal 0 for both), its CPU time at rest,
  and its peak RSS (with the RSS right after start, for a figure per 1,000 objects); then the
  time from a pod failure (a deleted worker rank) to its group's restart, 5 times.

Routers are disabled so that N pods of routers do not need CPU nodes; everything else is real.
The load average of the machine is printed with the figures (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.operator import lws  # noqa: E402
from e2e.helpers import (  # noqa: E402
    apiserver_requests,
    apply,
    kubectl,
    reads_between,
)
from e2e.operator_process import Measured, OperatorProcess  # noqa: E402

MULTI_EVERY = 3  # every third LLMService spans two 8-GPU nodes


def spec(i: int) -> tuple[dict[str, Any], int, int]:
    """(LLMService, pods, GPUs per pod) of object ``i``."""
    multi = i % MULTI_EVERY == 0
    parallelism = (
        {"tensor": 8, "pipeline": 2, "gpusPerNode": 8} if multi else {"tensor": 1, "gpusPerNode": 1}
    )
    pool = {"llmsvc.io/bench-pool": "whole" if multi else "shared"}
    obj = {
        "apiVersion": "llmsvc.io/v1alpha1", "kind": "LLMService",
        "metadata": {"name": f"bench-{i}"},
        "spec": {"model": {"uri": "hf://org/m", "servedName": f"m{i}"},
                 "engine": {"maxModelLen": 4096}, "parallelism": parallelism,
                 "router": {"enabled": False}, "scheduling": {"nodeSelector": pool}},
    }  # fmt: skip
    return obj, (2 if multi else 1), (8 if multi else 1)


def plain_statefulset(i: int, pods: int, gpus: int) -> dict[str, Any]:
    """The baseline: a bare StatefulSet with the same pods and GPU requests."""
    labels = {"bench": "baseline", "app": f"base-{i}"}
    container = {
        "name": "c",
        "image": "registry.local/none:1",
        "resources": {"limits": {"nvidia.com/gpu": gpus}},
    }
    pool = {"llmsvc.io/bench-pool": "whole" if gpus == 8 else "shared"}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": f"base-{i}", "labels": labels},
        "spec": {"replicas": pods, "serviceName": "base", "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [container], "nodeSelector": pool}}},
    }  # fmt: skip


def up() -> Path:
    """Start (or reuse) the local control plane; without the real kubelet node unless
    LLMSVC_REAL_NODES=1 asks for it: its CoreDNS and kube-proxy watch every Service and
    EndpointSlice, load the bench does not need."""
    env = {**os.environ, "LLMSVC_REAL_NODES": os.environ.get("LLMSVC_REAL_NODES", "0")}
    subprocess.run([str(REPO / "e2e/cluster/build.sh")], check=True, env=env)
    out = subprocess.run(
        [str(REPO / "e2e/cluster/up.sh")], check=True, capture_output=True, text=True, env=env
    ).stdout
    return Path(out.strip().splitlines()[-1])


def bench_nodes(whole: int, shared: int) -> list[dict[str, Any]]:
    """Extra fake 8-GPU nodes in their own pool (up.sh manages, and prunes, only its pools).

    Whole-node ranks get their own nodes, as GPU clusters keep them: the default scheduler
    spreads one-GPU pods over every node and would leave no node with eight free GPUs.
    """
    template = (REPO / "e2e/cluster/nodes/gpu-node.yaml").read_text().replace("GPU_COUNT", "8")
    nodes = []
    for i in range(whole + shared):
        node = yaml.safe_load(template.replace("NODE_NAME", f"bench-gpu-{i}"))
        node["metadata"]["labels"]["llmsvc.io/pool"] = "bench"
        node["metadata"]["labels"]["llmsvc.io/bench-pool"] = "whole" if i < whole else "shared"
        nodes.append(node)
    return nodes


COLLECTIONS = {  # what the bench waits on -> its REST collection in a namespace
    "statefulsets": "/apis/apps/v1/namespaces/{ns}/statefulsets",
    "llmservices": "/apis/llmsvc.io/v1alpha1/namespaces/{ns}/llmservices",
    "leaderworkersets": "/apis/leaderworkerset.x-k8s.io/v1/namespaces/{ns}/leaderworkersets",
}


def wait_all(
    ns: str, kind: str, done: Any, n: int, timeout: float, *, start: float | None = None
) -> dict[str, float]:
    """Watch ``kind`` in ``ns``; returns name -> seconds from ``start`` (the start of the apply;
    default: now) until ``done(obj)`` first held.

    One watch (``kubectl get --raw ...?watch=1``: the objects that exist, then every change, one
    JSON line each), not a LIST of all N objects every half second: polling 1,000 LLMServices
    kept a core busy in kubectl and kube-apiserver, load that slowed the very thing measured."""
    start, seen = start or time.monotonic(), dict[str, float]()
    url = COLLECTIONS[kind].format(ns=ns) + "?watch=1&allowWatchBookmarks=false"
    while len(seen) < n and (left := start + timeout - time.monotonic()) > 0:
        watch = subprocess.Popen(
            ["kubectl", "get", "--raw", url], stdout=subprocess.PIPE, text=True
        )  # a watch the server closes (its timeout) is opened again: it lists again
        stop = threading.Timer(left, watch.kill)
        stop.start()
        try:
            for line in watch.stdout or ():
                obj = json.loads(line)["object"]
                name = obj.get("metadata", {}).get("name")
                if name and name not in seen and done(obj):
                    seen[name] = time.monotonic() - start
                    if len(seen) == n:
                        break
        finally:
            stop.cancel()
            watch.kill()
            watch.wait()
        time.sleep(0.5 if len(seen) < n else 0)  # a watch refused at once is not hammered
    if len(seen) < n:
        raise SystemExit(f"only {len(seen)} of {n} {kind} became ready within {timeout:.0f} s")
    return seen


def sts_ready(obj: dict[str, Any]) -> bool:
    return bool(obj.get("status", {}).get("readyReplicas", 0) == obj["spec"]["replicas"])


def llm_ready(obj: dict[str, Any]) -> bool:
    conds = obj.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def fresh_namespace(name: str) -> None:
    kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", timeout=600)
    kubectl("create", "namespace", name)


def baseline(n: int, ns: str, timeout: float) -> float:
    fresh_namespace(ns)
    objs = [plain_statefulset(i, *spec(i)[1:]) for i in range(n)]
    start = time.monotonic()
    apply(objs, ns)
    total = max(wait_all(ns, "statefulsets", sts_ready, n, timeout, start=start).values())
    kubectl("delete", "namespace", ns, "--wait=true", timeout=600)
    return total


def timed_apply(objs: list[dict[str, Any]], ns: str) -> float:
    """Seconds `kubectl apply` of ``objs`` takes."""
    start = time.monotonic()
    apply(objs, ns)
    return time.monotonic() - start


def apply_alone(n: int, ns: str) -> float:
    """`kubectl apply` of the N LLMServices with no operator running (then deleted)."""
    fresh_namespace(ns)
    seconds = timed_apply([spec(i)[0] for i in range(n)], ns)
    kubectl("delete", "namespace", ns, "--wait=true", timeout=900)
    return seconds


def measure(proc: Measured, writes: Callable[[], float], objs: list[dict[str, Any]], ns: str,
            *, kind: str, ready: Callable[[dict[str, Any]], bool], timeout: float,
            steady: float) -> dict[str, float]:  # fmt: skip
    """Apply ``objs`` while ``proc`` runs; time to Ready, writes, CPU, reads and writes at rest."""
    n = len(objs)
    time.sleep(2)
    idle_rss, before, cpu0 = proc.memory_mib("VmRSS"), writes(), proc.cpu_seconds()
    start = time.monotonic()
    apply_s = timed_apply(objs, ns)
    times = sorted(wait_all(ns, kind, ready, n, timeout, start=start).values())
    to_ready, cpu_ready = writes() - before, proc.cpu_seconds() - cpu0
    time.sleep(10)  # let the last status writes land before the quiet window
    quiet_start, requests, cpu1 = writes(), apiserver_requests(), proc.cpu_seconds()
    time.sleep(steady)
    cpu_rest = proc.cpu_seconds() - cpu1  # read first: the bench's scrape below is not at rest
    reads = reads_between(requests, apiserver_requests())
    steady_writes = writes() - quiet_start
    gets = sum(v for (verb, _), v in reads.items() if verb == "GET")
    lists = sum(v for (verb, _), v in reads.items() if verb == "LIST")
    return {"p50": statistics.median(times), "p99": times[max(0, math.ceil(0.99 * n) - 1)],
            "total": times[-1], "writes_per_object": to_ready / n, "apply_s": apply_s,
            "steady_writes": steady_writes, "steady_gets": gets, "steady_lists": lists,
            "cpu_ready_s": cpu_ready, "cpu_rest_s": cpu_rest, "rss_mib": proc.memory_mib(),
            "idle_rss_mib": idle_rss}  # fmt: skip


RESTARTS = 5  # pod failures timed, one at a time, on different two-node LLMServices


def restart_seconds(op: OperatorProcess, ns: str, n: int) -> list[float]:
    """Seconds from deleting a worker rank of a two-node LLMService (a pod failure, as KWOK
    pods cannot crash) until the operator has restarted its group (its restart counter moved),
    with every other LLMService at rest."""
    multi = list(range(0, n, MULTI_EVERY))[:RESTARTS]
    seconds = []
    for i in multi:
        before = op.metric("llmsvc_operator_group_restarts_total")
        start = time.monotonic()
        kubectl("delete", "pod", f"bench-{i}-0-1", "-n", ns, "--wait=false")
        while op.metric("llmsvc_operator_group_restarts_total") == before:
            if time.monotonic() - start > 120:
                raise SystemExit(f"bench-{i}: no group restart 120 s after its rank was deleted")
            time.sleep(0.05)
        seconds.append(time.monotonic() - start)
    return seconds


def operator_run(n: int, ns: str, timeout: float, steady: float) -> dict[str, float]:
    fresh_namespace(ns)
    op = OperatorProcess(resync=30, namespaces=(ns,))  # alone, even on a shared cluster
    op.start()
    try:
        objs = [spec(i)[0] for i in range(n)]
        result = measure(op, op.writes, objs, ns, kind="llmservices", ready=llm_ready,
                         timeout=timeout, steady=steady)  # fmt: skip
        restarts = restart_seconds(op, ns, n)
        return result | {"restart_p50_s": statistics.median(restarts),
                         "restart_max_s": max(restarts)}  # fmt: skip
    finally:
        op.stop()
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def lws_run(n: int, ns: str, timeout: float, steady: float) -> dict[str, float]:
    """The same pods as LeaderWorkerSets, made by the LWS controller (bench/operator/lws.py)."""
    fresh_namespace(ns)
    proc = lws.LwsProcess(ns)
    try:
        proc.start()
        objs = [lws.leaderworkerset(i, *spec(i)[1:]) for i in range(n)]
        writes = lambda: lws.client_writes(proc)  # noqa: E731
        return measure(proc, writes, objs, ns, kind="leaderworkersets", ready=lws.lws_ready,
                       timeout=timeout, steady=steady)  # fmt: skip
    finally:
        proc.stop()
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def report(n: int, base: float, alone: float, r: dict[str, float], steady: float) -> str:
    per_1000 = (r["rss_mib"] - r["idle_rss_mib"]) / n * 1000
    rows = [
        ("LLMServices (1/3 two-node, 2/3 one-GPU)", f"{n}"),
        ("baseline: plain StatefulSets all ready", f"{base:.1f} s"),
        ("operator: all Ready (total)", f"{r['total']:.1f} s  ({r['total'] / base:.2f}x baseline)"),
        ("operator: per object p50 / p99", f"{r['p50']:.1f} s / {r['p99']:.1f} s"),
        ("API writes per LLMService to Ready", f"{r['writes_per_object']:.1f}"),
        ("operator CPU until Ready", f"{r['cpu_ready_s']:.1f} s"),
        (f"steady state ({steady:.0f} s): writes / GET / LIST (goal 0)",
         f"{r['steady_writes']:.0f} / {r['steady_gets']:.0f} / {r['steady_lists']:.0f}"),
        (f"operator CPU in {steady:.0f} s at rest", f"{r['cpu_rest_s']:.2f} s"),
        ("operator peak RSS (right after start)",
         f"{r['rss_mib']:.0f} MiB ({r['idle_rss_mib']:.0f} MiB)"),
        ("  growth per 1,000 LLMServices", f"{per_1000:.0f} MiB"),
        (f"pod failure to group restart, {RESTARTS} at rest: p50 / max",
         f"{r['restart_p50_s']:.2f} s / {r['restart_max_s']:.2f} s"),
        ("kubectl apply of all: without / with operator",
         f"{alone:.1f} s / {r['apply_s']:.1f} s  ({r['apply_s'] / alone:.2f}x)"),
        ("load average (1/5/15 min) at the end", " / ".join(f"{x:.1f}" for x in os.getloadavg())),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


COMPARED = [  # (figure, key): the operator against LeaderWorkerSet
    ("all Ready (s)", "total"), ("writes per object to Ready", "writes_per_object"),
    ("CPU until Ready (s)", "cpu_ready_s"), ("writes at rest", "steady_writes"),
    ("GET + LIST at rest", "steady_reads"), ("CPU at rest (s)", "cpu_rest_s"),
    ("peak RSS (MiB)", "rss_mib"), ("kubectl apply while running (s)", "apply_s"),
]  # fmt: skip


def compare(ours: dict[str, float], theirs: dict[str, float]) -> str:
    """A Markdown table: ours, LeaderWorkerSet's, and the ratio."""
    rows = ["| | ours | LWS | ours / LWS |", "| --- | --- | --- | --- |"]
    for label, name in COMPARED:
        a, b = (r.get(name, r["steady_gets"] + r["steady_lists"]) for r in (ours, theirs))
        ratio = f"{a / b:.2f}" if b else ("-" if not a else "inf")
        rows.append(f"| {label} | {a:.2f} | {b:.2f} | {ratio} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="LLMServices (up to 1000)")
    parser.add_argument("--steady-seconds", type=float, default=120.0)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument(
        "--lws",
        action="store_true",
        help=f"also run LeaderWorkerSet {lws.VERSION} (built from its Go module)",
    )
    args = parser.parse_args()
    if not 1 <= args.n <= 1000:
        parser.error("--n must be between 1 and 1000")
    multi = math.ceil(args.n / MULTI_EVERY)
    gpus = multi * 16 + (args.n - multi)
    whole, shared = multi * 2, math.ceil((args.n - multi) / 8)
    os.environ["KUBECONFIG"] = str(up())
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    apply(bench_nodes(whole, shared))
    kubectl("wait", "--for=condition=Ready", "nodes", "-l", "llmsvc.io/pool=bench",
            "--timeout=300s", timeout=320)  # fmt: skip
    print(f"cluster: {whole + shared} extra fake 8-GPU nodes for {gpus} GPUs", flush=True)
    try:
        base = baseline(args.n, "llmsvc-bench-base", args.timeout)
        alone = apply_alone(args.n, "llmsvc-bench-alone")
        result = operator_run(args.n, "llmsvc-bench", args.timeout, args.steady_seconds)
        print(report(args.n, base, alone, result, args.steady_seconds), flush=True)
        theirs = None
        if args.lws:  # the operator's namespace is gone first: its deletion reads a lot
            kubectl("wait", "--for=delete", "namespace/llmsvc-bench", "--timeout=1800s",
                    timeout=1810, check=False)  # fmt: skip
            theirs = lws_run(args.n, "llmsvc-bench-lws", args.timeout, args.steady_seconds)
            print(compare(result, theirs))
    finally:
        kubectl("delete", "nodes", "-l", "llmsvc.io/pool=bench", "--wait=false", check=False)
    load = os.getloadavg()
    print(json.dumps({"n": args.n, "baseline_s": base, "apply_alone_s": alone, **result,
                      "lws": theirs, "load": load}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
