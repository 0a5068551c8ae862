"""`make bench-autoscale`: a step load on the local cluster, from queue to new replica and back.

One LLMService (one GPU per replica, router on, built-in queue metric, target 2 waiting requests
per replica, 1..3 replicas) whose router and engines are real processes on loopback (``llmsvc
router`` and ``llmsvc sim``, see e2e/autoscale_harness.py), the operator serving the metrics API,
and the real HPA of kube-controller-manager (1 s sync). A step of concurrent clients starts at
t=0; the run prints when the queue crossed the target, when the HPA decided (spec.replicas went
up through /scale), when the new group was Ready, when the queue was back at or below the target,
and how many requests failed (goal 0). Fake GPU pods become Ready at once (KWOK), so "group
Ready" measures the control plane and the operator, not a model load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from e2e.autoscale_checks import Answer, load, lost, metrics_api, queue_value  # noqa: E402
from e2e.autoscale_harness import Fleet, loopback_node, router_backends  # noqa: E402
from e2e.helpers import apply, cluster_setting, kubectl, kubectl_json, wait_for  # noqa: E402
from e2e.test_autoscaling import SIM_ARGS, llmservice  # noqa: E402

NAME = "step"
TARGET = 2


@dataclass
class Timeline:
    """First times (seconds after the step) of each milestone."""

    start: float
    marks: dict[str, float] = field(default_factory=dict)
    samples: int = 0

    def mark(self, what: str) -> None:
        if what not in self.marks:
            self.marks[what] = time.monotonic() - self.start
            print(f"  {self.marks[what]:6.1f} s  {what}", flush=True)


def up() -> None:
    os.environ["PATH"] = f"{cluster_setting('LLMSVC_BIN')}{os.pathsep}{os.environ['PATH']}"
    subprocess.run([str(REPO / "e2e/cluster/build.sh")], check=True)
    out = subprocess.run(
        [str(REPO / "e2e/cluster/up.sh")], check=True, capture_output=True, text=True
    ).stdout
    os.environ["KUBECONFIG"] = out.strip().splitlines()[-1]
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))


async def watch(namespace: str, timeline: Timeline, done: asyncio.Event) -> None:
    """Sample queue, spec.replicas and ready groups until ``done``; record the milestones."""
    while not done.is_set():
        svc = await asyncio.to_thread(kubectl_json, "get", "llmservice", NAME, "-n", namespace)
        value = await asyncio.to_thread(queue_value, namespace, NAME)
        wanted = int(svc["spec"]["replicas"])
        ready = int(svc.get("status", {}).get("readyReplicas") or 0)
        timeline.samples += 1
        if value is not None and value / max(wanted, 1) > TARGET:
            timeline.mark("queue crossed the target")
        if wanted > 1:
            timeline.mark(f"HPA decided (spec.replicas {wanted})")
        if ready > 1:
            timeline.mark("new group Ready")
        late = "new group Ready" in timeline.marks
        if late and value is not None and value / max(ready, 1) <= TARGET:
            timeline.mark("queue drained (at or below target)")
        await asyncio.sleep(0.2)


async def step(
    url: str, namespace: str, clients: int, seconds: float
) -> tuple[Timeline, list[Answer]]:
    timeline = Timeline(time.monotonic())
    done = asyncio.Event()
    watcher = asyncio.create_task(watch(namespace, timeline, done))
    answers = await load(url, clients, seconds)
    done.set()
    await watcher
    return timeline, answers


def run(args: argparse.Namespace) -> int:
    namespace = f"llmsvc-bench-autoscale-{int(time.time())}"
    kubectl("create", "namespace", namespace)
    fleet = Fleet(namespace, NAME, sim_args=SIM_ARGS, router_args=("--max-concurrency", "2"))
    undo = loopback_node(96)
    try:
        with metrics_api(namespace):
            return measure(args, namespace, fleet)
    finally:
        fleet.stop()
        undo()
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def measure(args: argparse.Namespace, namespace: str, fleet: Fleet) -> int:
    """The step against a running fleet and metrics API; 0 when no request was lost."""
    apply(llmservice(NAME, scaleDownStabilizationSeconds=120), namespace)
    fleet.start()
    url = wait_for(fleet.router_url, timeout=60, what="the router process")
    wait_for(lambda: queue_value(namespace, NAME) == 0, timeout=60, what="the queue metric served")
    wait_for(lambda: router_backends(url), timeout=60, what="the router knowing the leader")
    print(f"step: {args.clients} clients for {args.seconds:.0f} s, target {TARGET}/replica")
    timeline, answers = asyncio.run(step(url, namespace, args.clients, args.seconds))
    failed = lost(answers)
    print(f"requests: {len(answers)} answered, {failed.total()} lost; {timeline.samples} samples")
    for answer, count in failed.most_common(5):
        print(f"  {count} x {answer.status} {answer.error}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=12, help="concurrent clients in the step")
    parser.add_argument("--seconds", type=float, default=40.0, help="length of the step")
    args = parser.parse_args()
    up()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
