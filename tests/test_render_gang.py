"""Rendering of gang scheduling (PodGroups), topology placement and the per-group budgets.

Rendering takes what the cluster serves as an input (:class:`Capabilities`), so each case is a
plain function call: no cluster, no discovery.
"""

from __future__ import annotations

from typing import Any

from llmsvc.render import Capabilities, group, render, surge_extras
from llmsvc.render.podgroup import NONE
from tests.invalid_cases import setter
from tests.render_helpers import by_key, kinds, load, svc_with

V1BETA1 = Capabilities(podgroup_version="scheduling.k8s.io/v1beta1")
TOPOLOGY = Capabilities(podgroup_version="scheduling.k8s.io/v1beta1", podgroup_topology=True)
RACK = "example.com/rack"
TWO_NODES = setter("spec.parallelism", {"tensor": 8, "gpusPerNode": 4})  # groups of two pods


def _pod(sts: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = sts["spec"]["template"]["spec"]
    return pod


def test_without_the_api_no_podgroup_and_no_scheduling_group() -> None:
    children = render(load("03-two-nodes.yaml"))
    assert kinds(children, "PodGroup") == []
    assert "schedulingGroup" not in _pod(kinds(children, "StatefulSet")[0])


def test_each_group_gets_a_gang_podgroup_with_min_count_nodes() -> None:
    svc = svc_with(TWO_NODES, setter("spec.replicas", 3))
    children = by_key(render(svc, caps=V1BETA1))
    for g in range(3):
        pg = children[("PodGroup", f"{svc.name}-{g}")]
        assert pg["apiVersion"] == "scheduling.k8s.io/v1beta1"
        assert pg["spec"] == {
            "schedulingPolicy": {"gang": {"minCount": svc.spec.parallelism.nodes}}
        }
        assert pg["metadata"]["labels"]["llmsvc.io/group"] == str(g)
        sts = children[("StatefulSet", f"{svc.name}-{g}")]
        assert _pod(sts)["schedulingGroup"] == {"podGroupName": f"{svc.name}-{g}"}


def test_min_count_is_the_nodes_per_replica_of_a_tp_across_nodes_layout() -> None:
    svc = svc_with(setter("spec.parallelism", {"tensor": 8, "gpusPerNode": 4}))
    (pg,) = kinds(render(svc, caps=V1BETA1), "PodGroup")
    assert pg["spec"]["schedulingPolicy"]["gang"]["minCount"] == 2


def test_a_group_of_one_pod_gets_no_podgroup_and_no_topology_affinity() -> None:
    # A gang of one binds alone anyway, and one pod is always in one domain: a PodGroup or a
    # pod affinity would only cost the API server and the scheduler work.
    scheduling = setter("spec.scheduling", {"topologyKey": RACK})
    svc = svc_with(setter("spec.parallelism", {"tensor": 8, "gpusPerNode": 8}), scheduling)
    assert svc.spec.parallelism.nodes == 1
    for caps in (NONE, V1BETA1, TOPOLOGY):
        children = render(svc, caps=caps)
        assert kinds(children, "PodGroup") == []
        (sts,) = kinds(children, "StatefulSet")
        assert "schedulingGroup" not in _pod(sts)
        assert "affinity" not in _pod(sts)
        assert surge_extras(svc, caps=caps) == []
    two_nodes = svc_with(TWO_NODES, scheduling)
    assert len(kinds(render(two_nodes, caps=V1BETA1), "PodGroup")) == 1  # the contrast


def test_gang_off_opts_out_even_where_the_api_is_served() -> None:
    svc = svc_with(TWO_NODES, setter("spec.scheduling", {"gang": "off"}))
    children = render(svc, caps=TOPOLOGY)
    assert kinds(children, "PodGroup") == []
    assert render(svc, caps=TOPOLOGY) == render(svc, caps=NONE)


def test_native_topology_constraint_replaces_the_pod_affinity() -> None:
    svc = svc_with(TWO_NODES, setter("spec.scheduling", {"topologyKey": RACK}))
    (pg,) = kinds(render(svc, caps=TOPOLOGY), "PodGroup")
    assert pg["spec"]["schedulingConstraints"] == {"topology": [{"key": RACK}]}
    assert pg["metadata"]["name"].startswith(f"{svc.name}-0-")  # immutable constraint: own name
    (sts,) = kinds(render(svc, caps=TOPOLOGY), "StatefulSet")
    assert "affinity" not in _pod(sts)
    assert _pod(sts)["schedulingGroup"] == {"podGroupName": pg["metadata"]["name"]}


def test_topology_falls_back_to_required_pod_affinity() -> None:
    svc = svc_with(TWO_NODES, setter("spec.scheduling", {"topologyKey": RACK}))
    for caps in (NONE, V1BETA1):  # no API, or the API without topology-aware placement
        (sts,) = kinds(render(svc, caps=caps), "StatefulSet")
        (term,) = _pod(sts)["affinity"]["podAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]
        assert term["topologyKey"] == RACK
        for pg in kinds(render(svc, caps=caps), "PodGroup"):
            assert "schedulingConstraints" not in pg["spec"]


def test_the_surge_group_brings_its_own_podgroup() -> None:
    svc = svc_with(TWO_NODES, setter("spec.replicas", 3))
    (pg,) = surge_extras(svc, caps=V1BETA1)
    assert pg["metadata"]["name"] == f"{svc.name}-3"
    assert _pod(group(svc, 3, caps=V1BETA1))["schedulingGroup"] == {
        "podGroupName": pg["metadata"]["name"]
    }
    assert surge_extras(svc) == []


def test_every_group_has_a_budget_that_refuses_evicting_a_ready_rank() -> None:
    svc = load("04-three-replicas.yaml")
    budgets = kinds(render(svc), "PodDisruptionBudget")
    assert [b["metadata"]["name"] for b in budgets] == [f"{svc.name}-{g}" for g in range(3)]
    spec = budgets[1]["spec"]
    assert spec["maxUnavailable"] == 0
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert spec["selector"]["matchLabels"]["llmsvc.io/group"] == "1"
    assert spec["selector"]["matchLabels"]["llmsvc.io/name"] == svc.name
