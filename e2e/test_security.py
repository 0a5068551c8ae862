"""Security defaults checked by the real API server: the rendered router and puller pass the
restricted Pod Security Standard (PodSecurity admission, server-side dry run), the engine does
with engine.runAsUser and is refused without it, and the NetworkPolicies validate."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.invalid_cases import merge, setter
from tests.render_helpers import kinds, svc_with

from e2e.helpers import kubectl, to_yaml
from llmsvc.render import render

pytestmark = pytest.mark.usefixtures("cluster")

Manifest = dict[str, Any]


def _restricted(namespace: str) -> None:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")


def _pod(name: str, namespace: str, spec: Manifest) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": copy.deepcopy(spec),
    }


def _dry_run(obj: Manifest) -> Any:
    return kubectl("create", "--dry-run=server", "-f", "-", input=to_yaml(obj), check=False)


def _children(*mutations: Any) -> list[Manifest]:
    two_ranks = merge("spec.parallelism", {"tensor": 1, "pipeline": 2, "gpusPerNode": 1})
    return render(svc_with(two_ranks, *mutations))


def test_router_and_puller_pass_restricted_pod_security(namespace: str) -> None:
    _restricted(namespace)
    children = _children()
    router = dict(kinds(children, "Deployment")[0]["spec"]["template"]["spec"])
    router.pop("serviceAccountName")  # its own ServiceAccount is not what is judged here
    proc = _dry_run(_pod("router", namespace, router))
    assert proc.returncode == 0, proc.stderr
    engine_pod = kinds(children, "StatefulSet")[0]["spec"]["template"]["spec"]
    puller = {**engine_pod, "initContainers": [], "containers": engine_pod["initContainers"]}
    proc = _dry_run(_pod("puller", namespace, puller))
    assert proc.returncode == 0, proc.stderr


def test_engine_passes_restricted_only_with_run_as_user(namespace: str) -> None:
    _restricted(namespace)
    root = kinds(_children(), "StatefulSet")[0]["spec"]["template"]["spec"]
    refused = _dry_run(_pod("engine-root", namespace, root))
    assert refused.returncode != 0
    assert "runAsNonRoot" in refused.stderr, refused.stderr
    non_root = kinds(_children(setter("spec.engine.runAsUser", 1000)), "StatefulSet")[0]
    proc = _dry_run(_pod("engine", namespace, non_root["spec"]["template"]["spec"]))
    assert proc.returncode == 0, proc.stderr


def test_network_policies_are_valid_objects(namespace: str) -> None:
    peer = {"namespaceSelector": {"matchLabels": {"team": "a"}}}
    for mutations in ((), (setter("spec.router.enabled", False),)):
        children = _children(setter("spec.networkPolicy.clientsFrom", [peer]), *mutations)
        for policy in kinds(children, "NetworkPolicy"):
            policy["metadata"]["namespace"] = namespace
            proc = _dry_run(policy)
            assert proc.returncode == 0, proc.stderr
