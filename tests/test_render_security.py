"""Security defaults of the rendered children: who can reach what (NetworkPolicies, evaluated
with the API's own semantics), container security contexts, and the Pod Security Standards'
restricted profile for the router, the puller and (with engine.runAsUser) the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from llmsvc.api.rules import RESERVED_ENV
from llmsvc.render import names, render
from llmsvc.render.network import OPERATOR_POD_LABELS
from tests.invalid_cases import merge, setter
from tests.render_helpers import Manifest, by_key, engine_of, kinds, load, svc_with

# --- NetworkPolicy semantics (ingress only, the parts we render) -------------------------------


@dataclass(frozen=True)
class Pod:
    """A pod as a NetworkPolicy sees it: namespace, labels."""

    namespace: str
    labels: dict[str, str]


def _matches(selector: Manifest, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # we render matchLabels only
    wanted: dict[str, str] = selector.get("matchLabels", {})
    return labels.items() >= wanted.items()


def _peer_admits(peer: Manifest, source: Pod, policy_ns: str) -> bool:
    assert set(peer) <= {"namespaceSelector", "podSelector"}, peer
    if "namespaceSelector" in peer:  # {} = every namespace (labels of namespaces: none needed)
        assert peer["namespaceSelector"] == {}, peer
        return "podSelector" not in peer or _matches(peer["podSelector"], source.labels)
    return source.namespace == policy_ns and _matches(peer["podSelector"], source.labels)


def _rule_admits(rule: Manifest, source: Pod, port: int, policy_ns: str) -> bool:
    ports = rule.get("ports")
    if ports is not None and not any(p["port"] == port for p in ports):
        return False
    return any(_peer_admits(peer, source, policy_ns) for peer in rule["from"])


def reachable(policies: list[Manifest], source: Pod, target: Pod, port: int) -> bool:
    """Whether ``source`` may open ``target:port`` under ``policies`` (Kubernetes' union rule)."""
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == target.namespace
        and _matches(p["spec"]["podSelector"], target.labels)
    ]
    if not selecting:
        return True  # a pod no policy selects is not isolated
    return any(
        _rule_admits(rule, source, port, p["metadata"]["namespace"])
        for p in selecting
        for rule in p["spec"]["ingress"]
    )


def _rank(svc_name: str, g: int, rank: int) -> Pod:
    labels = names.common_labels(svc_name, names.ENGINE) | {
        names.LABEL_GROUP: str(g),
        names.POD_INDEX: str(rank),
    }
    return Pod("default", labels)


def _router(svc_name: str) -> Pod:
    return Pod("default", names.common_labels(svc_name, names.ROUTER))


ELSEWHERE = Pod("other-team", {"app": "client"})
NEIGHBOUR = Pod("default", {"app": "client"})
HTTP, RENDEZVOUS = names.HTTP_PORT, names.RENDEZVOUS_PORT


def test_ranks_accept_their_own_group_and_the_router_only() -> None:
    svc = svc_with(
        setter("spec.replicas", 2), merge("spec.parallelism", {"tensor": 1, "pipeline": 2})
    )
    policies = kinds(render(svc), "NetworkPolicy")
    name = svc.name
    leader0, worker0, leader1 = _rank(name, 0, 0), _rank(name, 0, 1), _rank(name, 1, 0)
    assert reachable(policies, worker0, leader0, RENDEZVOUS)
    assert reachable(policies, leader0, worker0, 12345)  # NCCL/Gloo pick ports freely
    assert not reachable(policies, leader1, worker0, RENDEZVOUS)  # another group
    assert not reachable(policies, leader1, leader0, HTTP)
    assert reachable(policies, _router(name), leader0, HTTP)
    assert not reachable(policies, _router(name), leader0, RENDEZVOUS)
    for stranger in (ELSEWHERE, NEIGHBOUR, _router("other-model")):
        assert not reachable(policies, stranger, leader0, HTTP)
        assert not reachable(policies, stranger, worker0, RENDEZVOUS)
    # the router takes clients from anywhere in the cluster, on its HTTP port only
    assert reachable(policies, ELSEWHERE, _router(name), HTTP)
    assert not reachable(policies, ELSEWHERE, _router(name), 9090)


OPERATOR = Pod("llmsvc-system", dict(OPERATOR_POD_LABELS))


@pytest.mark.parametrize("router", [True, False])
def test_the_operator_scrapes_http_only_even_with_narrow_clients(router: bool) -> None:
    peer = {"podSelector": {"matchLabels": {"app": "client"}}}
    svc = svc_with(
        setter("spec.router.enabled", router), setter("spec.networkPolicy.clientsFrom", [peer])
    )
    policies = kinds(render(svc), "NetworkPolicy")
    leader = _rank(svc.name, 0, 0)
    assert reachable(policies, OPERATOR, leader, HTTP)  # the queue metric for the HPA
    assert not reachable(policies, OPERATOR, leader, RENDEZVOUS)
    assert reachable(policies, OPERATOR, _router(svc.name), HTTP)
    impostor = Pod("x", {"app.kubernetes.io/component": "operator"})
    assert not reachable(policies, impostor, leader, HTTP)


TWO_PODS = merge("spec.parallelism", {"tensor": 1, "pipeline": 2})


def test_the_surge_group_is_covered_before_it_exists() -> None:
    svc = svc_with(setter("spec.replicas", 2), TWO_PODS)
    children = render(svc)
    assert {("NetworkPolicy", f"{svc.name}-{g}") for g in range(3)} <= set(by_key(children))
    surge = _rank(svc.name, 2, 0)
    policies = kinds(children, "NetworkPolicy")
    assert not reachable(policies, _rank(svc.name, 0, 0), surge, RENDEZVOUS)


@pytest.mark.parametrize("router", [True, False])
def test_groups_of_one_pod_share_one_policy_for_any_replica_count(router: bool) -> None:
    """No rank of a one-pod group talks to another: the leaders' policy covers them all (the
    surge group's too), instead of one policy per group."""
    svc = svc_with(setter("spec.replicas", 3), setter("spec.router.enabled", router))
    policies = kinds(render(svc), "NetworkPolicy")
    names_ = {p["metadata"]["name"] for p in policies}
    assert names_ == {f"{svc.name}-leaders", *([f"{svc.name}-router"] if router else [])}
    front = _router(svc.name) if router else ELSEWHERE
    for g in range(4):  # the surge group is 3
        rank = _rank(svc.name, g, 0)
        assert reachable(policies, front, rank, HTTP)
        assert reachable(policies, OPERATOR, rank, HTTP)
        assert not reachable(policies, front, rank, RENDEZVOUS)
        other = _rank(svc.name, (g + 1) % 4, 0)  # another group: a client like any other
        assert reachable(policies, other, rank, HTTP) == (not router)
    if router:  # clients go through the router, never straight to a rank
        assert not reachable(policies, ELSEWHERE, _rank(svc.name, 0, 0), HTTP)
        assert reachable(policies, ELSEWHERE, _router(svc.name), HTTP)


def test_ranks_left_by_a_shrinking_group_stay_closed() -> None:
    """parallelism goes from two pods per group to one: the groups' own policies are pruned at
    once, while rank 1 of each old group still runs until its StatefulSet scales down."""
    svc = svc_with(setter("spec.replicas", 2))
    policies = kinds(render(svc), "NetworkPolicy")
    leftover = _rank(svc.name, 0, 1)
    assert reachable(policies, _router(svc.name), leftover, HTTP)
    for stranger in (ELSEWHERE, NEIGHBOUR, _rank(svc.name, 1, 0)):
        assert not reachable(policies, stranger, leftover, RENDEZVOUS)


def test_without_a_router_clients_reach_the_leaders_http_only() -> None:
    svc = svc_with(setter("spec.router.enabled", False), TWO_PODS)
    policies = kinds(render(svc), "NetworkPolicy")
    assert {p["metadata"]["name"] for p in policies} == {
        f"{svc.name}-0",
        f"{svc.name}-1",
        f"{svc.name}-leaders",
    }
    leader = _rank(svc.name, 0, 0)
    assert reachable(policies, ELSEWHERE, leader, HTTP)
    assert not reachable(policies, ELSEWHERE, leader, RENDEZVOUS)
    assert reachable(policies, _rank(svc.name, 0, 1), leader, RENDEZVOUS)


def test_clients_from_narrows_who_reaches_the_router() -> None:
    peer = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}}
    svc = svc_with(setter("spec.networkPolicy.clientsFrom", [peer]))
    policies = kinds(render(svc), "NetworkPolicy")
    assert reachable(policies, ELSEWHERE, _router(svc.name), HTTP)
    assert not reachable(policies, Pod("other-team", {"app": "x"}), _router(svc.name), HTTP)


def test_network_policies_can_be_turned_off() -> None:
    svc = svc_with(setter("spec.networkPolicy.enabled", False))
    assert not kinds(render(svc), "NetworkPolicy")
    assert kinds(render(load("01-single-gpu.yaml")), "NetworkPolicy")  # on by default


def test_policies_are_ingress_only_and_labelled_for_pruning() -> None:
    svc = load("04-three-replicas.yaml")
    for policy in kinds(render(svc), "NetworkPolicy"):
        assert policy["apiVersion"] == "networking.k8s.io/v1"
        assert policy["spec"]["policyTypes"] == ["Ingress"]  # the puller downloads weights
        assert policy["metadata"]["labels"][names.LABEL_NAME] == svc.name


# --- security contexts ------------------------------------------------------------------------


def _pod(children: list[Manifest], kind: str) -> Manifest:
    pod: Manifest = kinds(children, kind)[0]["spec"]["template"]["spec"]
    return pod


def test_engine_drops_privileges_and_runs_as_the_users_uid_when_asked() -> None:
    plain = engine_of(kinds(render(svc_with()), "StatefulSet")[0])["securityContext"]
    assert plain == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    svc = svc_with(setter("spec.engine.runAsUser", 1000))
    security = engine_of(kinds(render(svc), "StatefulSet")[0])["securityContext"]
    assert security == plain | {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000}


def restricted_violations(pod: Manifest) -> list[str]:
    """What the Pod Security Standards' restricted profile (v1.37) refuses in ``pod``."""
    found: list[str] = []
    pod_ctx = pod.get("securityContext", {})
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        found.append("host namespaces")
    allowed_volumes = {"name", "emptyDir", "persistentVolumeClaim", "configMap", "secret"}
    allowed_volumes |= {"projected", "downwardAPI", "ephemeral", "csi"}
    found += [f"volume {v['name']}" for v in pod.get("volumes", []) if set(v) - allowed_volumes]
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        ctx = c.get("securityContext", {})
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(f"{c['name']}: allowPrivilegeEscalation")
        if ctx.get("capabilities", {}).get("drop") != ["ALL"]:
            found.append(f"{c['name']}: capabilities")
        if set(ctx.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{c['name']}: added capabilities")
        if not (ctx.get("runAsNonRoot") or pod_ctx.get("runAsNonRoot")):
            found.append(f"{c['name']}: runAsNonRoot")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            found.append(f"{c['name']}: runAsUser 0")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {}))
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            found.append(f"{c['name']}: seccomp")
        if ctx.get("privileged") or c.get("ports", [{}])[0].get("hostPort"):
            found.append(f"{c['name']}: privileged or hostPort")
    return found


def test_router_and_puller_meet_the_restricted_profile() -> None:
    children = render(load("03-two-nodes.yaml"))
    assert restricted_violations(_pod(children, "Deployment")) == []
    engine_pod = _pod(children, "StatefulSet")
    puller_only = {**engine_pod, "containers": engine_pod["initContainers"]}
    assert restricted_violations({**puller_only, "initContainers": []}) == []


def test_engine_meets_the_restricted_profile_only_with_run_as_user() -> None:
    root = _pod(render(svc_with()), "StatefulSet")
    assert restricted_violations(root) == ["engine: runAsNonRoot"]
    non_root = _pod(render(svc_with(setter("spec.engine.runAsUser", 1000))), "StatefulSet")
    assert restricted_violations(non_root) == []


def test_the_checker_catches_what_restricted_refuses() -> None:
    pod: dict[str, Any] = {
        "containers": [{"name": "c"}],
        "volumes": [{"name": "h", "hostPath": {}}],
    }
    problems = restricted_violations(pod)
    for word in ("hostPath", "allowPrivilegeEscalation", "capabilities", "runAsNonRoot", "seccomp"):
        assert any(word in p or (word == "hostPath" and p == "volume h") for p in problems), word


# --- environment --------------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["03-two-nodes.yaml", "06-ray.yaml"])
def test_every_variable_the_operator_sets_is_reserved(example: str) -> None:
    """engine.env may not override them (admission refuses RESERVED_ENV): keep the two in step."""
    svc = load(example)
    sts = kinds(render(svc), "StatefulSet")[0]
    rendered = {e["name"] for e in engine_of(sts)["env"]} - {e.name for e in svc.spec.engine.env}
    assert rendered == set(RESERVED_ENV)
