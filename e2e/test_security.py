"""Security defaults checked by the real API server: the rendered router and puller pass the
restricted Pod Security Standard (PodSecurity admission, server-side dry run), the engine does
with engine.runAsUser and is refused without it, the NetworkPolicies validate, and the server
refuses the clientsFrom peers that rendering refuses."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.invalid_cases import merge, setter
from tests.peer_cases import INVALID, VALID
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


def _policy_with(peer: Any, namespace: str) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "peer-case", "namespace": namespace},
        "spec": {"podSelector": {}, "ingress": [{"from": [peer]}]},
    }


def test_the_api_server_agrees_with_the_peer_checks(namespace: str) -> None:
    """tests/peer_cases.py: what rendering refuses, kube-apiserver refuses too (so a refused
    NetworkPolicy never leaves pods open), and what it renders, kube-apiserver stores."""
    for peer in VALID:
        proc = _dry_run(_policy_with(peer, namespace))
        assert proc.returncode == 0, (peer, proc.stderr)
    for peer, _ in INVALID:
        proc = _dry_run(_policy_with(peer, namespace))
        assert proc.returncode != 0, f"kube-apiserver stored {peer}"
        assert "NetworkPolicy" in proc.stderr or "unknown field" in proc.stderr, proc.stderr
