"""Gang scheduling against the real 1.37 scheduler: a group binds whole or not at all.

The local control plane turns workload-aware scheduling on by default (LLMSVC_GANG=1); each test
gives its LLMService a private pool of fake GPU nodes, so capacity is exactly what the test says.
Run this file on a cluster started with LLMSVC_GANG=0 for the negative control of the gates:
discovery then finds no PodGroup API, the status says gang scheduling is off, and a group that
does not fit binds partially (as with ``scheduling.gang: off`` below, on any cluster).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from kubernetes_asyncio import config

from e2e.gang_helpers import add_nodes, gang_served, node, placement, podgroups, pool
from e2e.helpers import apply, kubectl, pods, wait_for
from e2e.operator_process import OperatorProcess
from e2e.test_operator import condition, get, llmservice, wait_ready
from llmsvc.controller.discovery import Discovery
from llmsvc.controller.kube import Kube

TWO_NODES = {"tensor": 8, "pipeline": 2, "gpusPerNode": 8}  # one group = two 8-GPU pods
RACK = "example.com/rack"


def bound(namespace: str, name: str) -> list[str]:
    """Nodes of the ranks of ``name`` that the scheduler has bound."""
    ranks = pods(namespace, f"llmsvc.io/name={name},llmsvc.io/group")
    return [p["spec"]["nodeName"] for p in ranks if p["spec"].get("nodeName")]


def stays_unbound(namespace: str, name: str, seconds: float) -> None:
    """No rank of ``name`` binds for ``seconds`` (several scheduling attempts)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert bound(namespace, name) == [], "a rank of a group that cannot fit was bound"
        time.sleep(0.5)


def gang_status(namespace: str, name: str) -> str:
    return str(get(name, namespace).get("status", {}).get("gangScheduling", ""))


def test_a_group_that_cannot_fit_binds_no_pod_until_it_fits_whole(
    operator: OperatorProcess, namespace: str
) -> None:
    with pool(f"gang-{namespace}") as name:
        add_nodes(node(f"{name}-0", name))
        svc = llmservice("gang", parallelism=TWO_NODES, scheduling=placement(name))
        apply(svc, namespace)
        wait_for(lambda: len(pods(namespace, "llmsvc.io/name=gang,llmsvc.io/group")) == 2,
                 what="both ranks created")  # fmt: skip
        if not gang_served():  # LLMSVC_GANG=0: the negative control of the feature gates
            wait_for(lambda: len(bound(namespace, "gang")) == 1, what="one rank bound alone")
            assert gang_status(namespace, "gang").startswith("off: the cluster does not serve")
            return
        (pg,) = podgroups(namespace)
        assert pg["spec"]["schedulingPolicy"] == {"gang": {"minCount": 2}}
        assert pg["metadata"]["ownerReferences"][0]["name"] == "gang"
        for rank in pods(namespace, "llmsvc.io/name=gang,llmsvc.io/group"):
            assert rank["spec"]["schedulingGroup"] == {"podGroupName": pg["metadata"]["name"]}
        assert "PodGroup scheduling.k8s.io/v1beta1" in gang_status(namespace, "gang")

        # The status says why: waiting for nodes (a node autoscaler may add some), which turns
        # into Degraded=Unschedulable only after the grace period (plan/status.py).
        def waiting() -> bool:
            return (
                condition(get("gang", namespace), "Progressing").get("reason") == "WaitingForNodes"
            )

        wait_for(waiting, what="Progressing=WaitingForNodes")
        stays_unbound(namespace, "gang", 10)
        progressing = condition(get("gang", namespace), "Progressing")
        assert progressing["reason"] == "WaitingForNodes", progressing
        assert condition(get("gang", namespace), "Degraded")["status"] == "False"
        add_nodes(node(f"{name}-1", name))
        wait_for(lambda: len(bound(namespace, "gang")) == 2, timeout=60, what="whole group bound")
        assert sorted(bound(namespace, "gang")) == [f"{name}-0", f"{name}-1"]
        wait_ready("gang", namespace)


def test_negative_control_without_a_podgroup_one_rank_binds_alone(
    operator: OperatorProcess, namespace: str
) -> None:
    """scheduling.gang: off (what clusters without the API get): the partial binding we avoid."""
    with pool(f"solo-{namespace}") as name:
        add_nodes(node(f"{name}-0", name))
        spec = placement(name) | {"gang": "off"}
        apply(llmservice("solo", parallelism=TWO_NODES, scheduling=spec), namespace)
        wait_for(lambda: len(bound(namespace, "solo")) == 1, what="one rank bound alone")
        time.sleep(3)
        assert len(bound(namespace, "solo")) == 1  # 8 GPUs held by a rank that cannot serve
        assert podgroups(namespace) == [] if gang_served() else True
        assert gang_status(namespace, "solo").startswith("off:")


def test_podgroups_follow_the_groups(operator: OperatorProcess, namespace: str) -> None:
    if not gang_served():
        assert "podgroups" not in kubectl("api-resources", "-o", "name").stdout.split()
        return
    with pool(f"pg-{namespace}") as name:
        add_nodes(*(node(f"{name}-{i}", name) for i in range(5)))
        spec = placement(name)
        apply(llmservice("pgs", replicas=2, parallelism=TWO_NODES, scheduling=spec), namespace)
        one_node = {"tensor": 8, "gpusPerNode": 8}  # a group of one pod: a gang of one
        apply(llmservice("single", parallelism=one_node, scheduling=spec), namespace)
        wait_ready("pgs", namespace)
        wait_ready("single", namespace)
        assert sorted(p["metadata"]["name"] for p in podgroups(namespace)) == ["pgs-0", "pgs-1"]
        assert gang_status(namespace, "single") == "not needed: each group is one pod (no PodGroup)"
        (rank,) = pods(namespace, "llmsvc.io/name=single,llmsvc.io/group")
        assert "schedulingGroup" not in rank["spec"]
        kubectl("patch", "llmservice/pgs", "-n", namespace, "--type=merge",
                "-p", '{"spec":{"replicas":1}}')  # fmt: skip
        wait_for(lambda: [p["metadata"]["name"] for p in podgroups(namespace)] == ["pgs-0"],
                 timeout=60, what="PodGroup pgs-1 deleted with its group")  # fmt: skip
        kubectl("patch", "llmservice/pgs", "-n", namespace, "--type=merge",
                "-p", '{"spec":{"scheduling":{"gang":"off"}}}')  # fmt: skip
        wait_for(lambda: podgroups(namespace) == [], timeout=120, what="PodGroups pruned")


def racks(namespace: str, name: str) -> set[str]:
    by_node = {n["metadata"]["name"]: n["metadata"]["labels"].get(RACK, "")
               for n in kubectl_nodes()}  # fmt: skip
    return {by_node[n] for n in bound(namespace, name)}


def kubectl_nodes() -> list[dict[str, Any]]:
    from e2e.helpers import kubectl_json

    items: list[dict[str, Any]] = kubectl_json("get", "nodes")["items"]
    return items


def test_topology_key_keeps_a_group_in_one_rack_and_it_waits_whole(
    operator: OperatorProcess, namespace: str
) -> None:
    with pool(f"rack-{namespace}") as name:
        add_nodes(node(f"{name}-a0", name, labels={RACK: "a"}),
                  node(f"{name}-b0", name, labels={RACK: "b"}))  # fmt: skip
        spec = placement(name) | {"topologyKey": RACK}
        apply(llmservice("racked", parallelism=TWO_NODES, scheduling=spec), namespace)
        wait_for(lambda: len(pods(namespace, "llmsvc.io/name=racked,llmsvc.io/group")) == 2,
                 what="both ranks created")  # fmt: skip
        if gang_served():  # two free nodes, but in two racks: nothing binds
            (pg,) = podgroups(namespace)  # the scheduler places the group in one rack itself
            assert pg["spec"].get("schedulingConstraints") == {"topology": [{"key": RACK}]}, pg
            stays_unbound(namespace, "racked", 10)
        add_nodes(node(f"{name}-b1", name, labels={RACK: "b"}))
        # the scheduler retries the gang on the node event; in a loaded full run 60 s was not enough
        wait_for(lambda: len(bound(namespace, "racked")) == 2, timeout=180, what="group bound")
        assert racks(namespace, "racked") == {"b"}
        wait_ready("racked", namespace)


@contextmanager
def terminating_namespace() -> Iterator[str]:
    """A namespace held in Terminating by a finalizer on a ConfigMap: creates in it are refused."""
    name = f"e2e-doomed-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    meta = {"name": "hold", "namespace": name, "finalizers": ["e2e.llmsvc.io/hold"]}
    held = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
    kubectl("create", "-f", "-", input=json.dumps(held))
    kubectl("delete", "namespace", name, "--wait=false")
    try:
        wait_for(lambda: kubectl("get", "namespace", name, "-o", "jsonpath={.status.phase}").stdout
                 == "Terminating", what=f"namespace {name} terminating")  # fmt: skip
        yield name
    finally:
        patch = json.dumps({"metadata": {"finalizers": None}})
        kubectl("patch", "configmap", "hold", "-n", name, "--type=merge", "-p", patch, check=False)


@asynccontextmanager
async def cluster_kube() -> AsyncIterator[Kube]:
    """The operator's API client on the e2e cluster."""
    api = await config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    try:
        yield Kube(api)
    finally:
        await api.close()


async def test_a_probe_refused_in_a_terminating_namespace_is_asked_again_from_another(
    namespace: str,
) -> None:
    """CI once rendered a group without topology-aware placement for 5 minutes: the operator's
    first probe ran in a namespace being deleted (the server refuses creates there), and the
    refusal was cached as "no topology support"."""
    async with cluster_kube() as kube:
        discovery = Discovery(kube, clock=lambda: 0.0)  # time stands still: no ttl or retry ends
        with terminating_namespace() as doomed:
            refused = await discovery.capabilities(doomed)
            if not gang_served():  # LLMSVC_GANG=0: no PodGroup API, nothing is probed
                assert not refused.podgroups
                return
            assert refused.podgroups
            assert not refused.podgroup_topology  # refused: nothing known yet
            answered = await discovery.capabilities(namespace)  # same instant, another namespace
        assert answered.podgroup_topology, "a refused probe was cached for the whole ttl"
