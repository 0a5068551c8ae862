"""The pure parts of PodGroup discovery: version choice and the status line.

Discovery against a real API server (gates on and off) runs in e2e/test_gang.py.
"""

from __future__ import annotations

from typing import Any

from llmsvc.controller.discovery import describe, gang_status, probe, served_version
from llmsvc.render import NONE, Capabilities


def _group(*versions: str) -> dict[str, object]:
    return {
        "versions": [{"groupVersion": f"scheduling.k8s.io/{v}", "version": v} for v in versions]
    }


def test_the_most_preferred_known_version_wins() -> None:
    assert served_version(_group("v1", "v1alpha3", "v1beta1")) == "scheduling.k8s.io/v1beta1"
    assert served_version(_group("v1", "v1alpha2")) == "scheduling.k8s.io/v1alpha2"


def test_only_priority_classes_or_nothing_means_no_podgroups() -> None:
    assert served_version(_group("v1")) == ""
    assert served_version(_group("v1alpha1")) == ""  # 1.35's Workload API has another shape
    assert served_version(None) == ""


def test_status_line_says_why_gang_scheduling_is_off() -> None:
    assert "does not serve the PodGroup API" in gang_status("auto", NONE, 2)
    caps = Capabilities("scheduling.k8s.io/v1beta1", podgroup_topology=True)
    assert gang_status("auto", caps, 2) == describe(caps)
    assert "v1beta1, with topology" in describe(caps)
    assert gang_status("off", caps, 2).startswith("off: spec.scheduling.gang is off")


def test_status_line_says_a_group_of_one_pod_needs_no_gang() -> None:
    caps = Capabilities("scheduling.k8s.io/v1beta1")
    assert gang_status("auto", caps, 1) == "not needed: each group is one pod (no PodGroup)"
    assert "does not serve the PodGroup API" in gang_status("auto", NONE, 1)  # what is missing
    assert gang_status("off", caps, 1).startswith("off: spec.scheduling.gang is off")


def test_the_probe_asks_for_a_topology_constraint() -> None:
    spec: Any = probe("scheduling.k8s.io/v1beta1", "ns")["spec"]
    assert spec["schedulingConstraints"] == {"topology": [{"key": "kubernetes.io/hostname"}]}
