"""The Helm chart on the real local control plane: server-side validation, install, upgrade,
uninstall, and least-privilege RBAC proven by running the operator as the chart's ServiceAccount.

KWOK pods run no containers, so the installed operator Deployment never really runs; the RBAC
proof runs ``llmsvc operator`` outside the cluster with a kubeconfig holding a token of the
chart's ServiceAccount, i.e. with exactly the chart's permissions.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.chart_helpers import (
    CHART,
    SCENARIOS,
    OperatorAs,
    can_i,
    helm,
    pinned,
    private_gpu_pool,
    sa_kubeconfig,
    template,
)
from e2e.helpers import (
    REPO,
    apply,
    exists,
    is_ready,
    kubectl,
    kubectl_json,
    pods,
    to_yaml,
    wait_for,
)
from llmsvc.api import parse
from llmsvc.render import render

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
READY_TIMEOUT = 120.0
INSTANCE = "app.kubernetes.io/instance"
COMPLETED = [f'llmsvc_operator_reconciles_total{{result="{r}"}}' for r in ("changed", "unchanged")]


def unique(prefix: str) -> str:
    """A release name unique per test run (cluster-scoped RBAC objects carry it)."""
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.fixture
def watched(namespace: str) -> Iterator[str]:
    """A second fresh namespace: the one a namespaced operator watches."""
    name = f"{namespace[:50]}-w"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "llmsvc.io/e2e=true")
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def release(namespace: str) -> Iterator[str]:
    """A release name; whatever is installed under it is uninstalled afterwards."""
    name = unique("llmop")
    yield name
    try:
        helm("uninstall", name, "-n", namespace, "--ignore-not-found", "--wait")
    finally:  # cluster-scoped leftovers would outlive the namespace
        selector = f"{INSTANCE}={name}"
        kubectl("delete", "clusterroles,clusterrolebindings", "-l", selector, check=False)


def install(release: str, namespace: str, scenario: str, *extra: str) -> None:
    values = str(SCENARIOS / f"{scenario}-values.yaml")
    # The session fixture already applied crds/ (maybe a working-tree CRD newer than the chart's
    # copy, which Helm v4 would server-side apply over it with a conflict): tests/test_chart.py
    # checks that the copy is identical.
    flags = ["-n", namespace, "-f", values, "--skip-crds", "--wait", "--timeout=90s", *extra]
    helm("install", release, str(CHART), *flags)


@pytest.mark.parametrize("scenario", ["default", "namespaced", "metrics"])
def test_scenario_renders_objects_the_api_server_accepts(
    cluster: object, namespace: str, watched: str, scenario: str
) -> None:
    # The namespaced scenario's namespaces must exist for the API server: use the test's own.
    extra = ["--set-json", f'watchNamespaces=["{watched}"]'] if scenario == "namespaced" else []
    docs = template(unique("tmpl"), namespace, scenario, *extra)
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == (1 if scenario == "metrics" else 0)
    # ServiceMonitor's CRD (prometheus-operator) is not installed here: validate the rest.
    rest = [d for d in docs if d["kind"] != "ServiceMonitor"]
    proc = kubectl("apply", "--dry-run=server", "-f", "-", input=to_yaml(rest))
    assert proc.stdout.count("(server dry run)") == len(rest), proc.stdout


def deployment(release: str, namespace: str) -> dict[str, Any]:
    return kubectl_json("get", "deployment", f"{release}-llmservice-operator", "-n", namespace)


def owned(release: str, namespace: str) -> list[str]:
    """Names of every object of this release still in the cluster (namespaced and cluster)."""
    selector = f"{INSTANCE}={release}"
    kinds = "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings"
    here = kubectl("get", kinds, "-n", namespace, "-l", selector, "-o", "name").stdout.split()
    cluster_kinds = "clusterroles,clusterrolebindings"
    there = kubectl("get", cluster_kinds, "-l", selector, "-o", "name").stdout.split()
    return here + there


def test_install_upgrade_uninstall(cluster: object, namespace: str, release: str) -> None:
    # The API server's PodSecurity admission refuses pods that are not "restricted".
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    install(release, namespace, "default")
    operator_pods = pods(namespace, f"{INSTANCE}={release}")
    assert len(operator_pods) == 1, "the operator pod was not admitted under restricted"
    first = deployment(release, namespace)
    container = first["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "llmsvc/llmservice-operator:0.1.0"
    assert {"name": "LLMSVC_IMAGE", "value": container["image"]} in container["env"]
    assert "--verbose" not in container["args"]
    assert (
        first["spec"]["strategy"]["type"] == "RollingUpdate"
    )  # leader election: the new pod waits
    assert f"clusterrole.rbac.authorization.k8s.io/{release}-llmservice-operator" in owned(
        release, namespace
    )

    helm(
        "upgrade", release, str(CHART), "-n", namespace, "--reuse-values", "--wait",
        "--set", "logLevel=debug", "--set", "resyncSeconds=10", "--set", "image.tag=0.1.1",
    )  # fmt: skip
    second = deployment(release, namespace)
    container = second["spec"]["template"]["spec"]["containers"][0]
    assert second["metadata"]["generation"] > first["metadata"]["generation"]
    assert container["image"] == "llmsvc/llmservice-operator:0.1.1"
    assert {"--verbose", "--resync-seconds=10"} <= set(container["args"])
    assert second["spec"]["selector"] == first["spec"]["selector"]

    helm("uninstall", release, "-n", namespace, "--wait")
    wait_for(lambda: not owned(release, namespace), what=f"no objects of release {release}")
    crd = kubectl("get", "crd", "llmservices.llmsvc.io", "-o", "name", check=False)
    assert crd.returncode == 0, "uninstall must keep the CRD (and with it every LLMService)"


@pytest.fixture(params=["namespaced", "cluster-wide"])
def chart_operator(
    request: pytest.FixtureRequest,
    cluster: object,
    namespace: str,
    watched: str,
    release: str,
    tmp_path: Path,
) -> Iterator[OperatorAs]:
    """The chart installed watching ``watched`` (or every namespace); the operator running as its
    ServiceAccount, i.e. with exactly the chart's RBAC and nothing cluster-scoped it lacks."""
    if request.param == "namespaced":
        install(release, namespace, "namespaced", "--set-json", f'watchNamespaces=["{watched}"]')
    else:
        install(release, namespace, "default")
    config = sa_kubeconfig(f"{release}-llmservice-operator", namespace, tmp_path / "sa.kubeconfig")
    process = OperatorAs(config, [watched] if request.param == "namespaced" else [])
    process.start()
    yield process
    process.stop()


def wait_gone(namespace: str) -> None:
    wait_for(lambda: not pods(namespace), timeout=60, what=f"pods in {namespace} to go")


def expected_children(manifest: dict[str, Any], namespace: str) -> list[tuple[str, str]]:
    """(kind, name) of every child ``llmsvc render`` produces for ``manifest``."""
    body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
    return [(c["kind"], c["metadata"]["name"]) for c in render(parse(body))]


def wait_ready(name: str, namespace: str) -> None:
    kubectl(
        "wait", "--for=condition=Ready", f"llmservice/{name}", "-n", namespace,
        f"--timeout={int(READY_TIMEOUT)}s", timeout=READY_TIMEOUT + 10,
    )  # fmt: skip
    assert is_ready(kubectl_json("get", "llmservice", name, "-n", namespace))


def restart_group(name: str, namespace: str) -> None:
    """Delete one rank of group 0; the operator must delete and recreate the whole group."""
    selector = f"llmsvc.io/name={name},llmsvc.io/group=0"
    before = {p["metadata"]["uid"] for p in pods(namespace, selector)}
    assert len(before) > 1, "pick an example with more than one rank per group"
    time.sleep(6)  # ranks older than the operator's wave window, as in a long-running group
    kubectl("delete", "pod", f"{name}-0-1", "-n", namespace, "--wait=false")

    def replaced() -> bool:
        now = pods(namespace, selector)
        fresh = {p["metadata"]["uid"] for p in now}.isdisjoint(before)
        return fresh and len(now) == len(before) and all(is_ready(p) for p in now)

    wait_for(replaced, timeout=60, what=f"every rank of {name} group 0 recreated")
    events = kubectl("get", "events", "-n", namespace, "-o", "name",
                     "--field-selector", "reason=GroupRestarted").stdout  # fmt: skip
    assert events.strip(), "the operator posted no GroupRestarted Event"


def completed(operator: OperatorAs) -> float:
    """Reconciles this operator finished without an exception."""
    return sum(operator.metric(name) for name in COMPLETED)


def wait_completed(operator: OperatorAs, since: float, what: str) -> None:
    """Wait until ``operator`` finished a reconcile after its count was ``since``."""
    wait_for(lambda: completed(operator) > since, timeout=30, what=f"our reconcile of {what}")


# RBAC's refusal, as kopf and kubernetes_asyncio log it: `pods is forbidden: User "system:..."
# cannot list resource "pods" ...`. Other 403s are no RBAC gap (a cluster-wide operator may meet
# another session's namespace being terminated: "forbidden: unable to create new content").
RBAC_DENIED = re.compile(r'forbidden: User \\?"[^"\\]+\\?" cannot', re.IGNORECASE)


def assert_no_permission_errors(operator: OperatorAs) -> None:
    """The operator's log shows no request RBAC refused and no Event kopf failed to post."""
    log = operator.log.read_text()
    denied = RBAC_DENIED.search(log)
    assert denied is None, f"the operator lacks a permission: {log[denied.start() - 300 :][:1500]}"
    assert "Failed to post an event" not in log, f"an Event was lost:\n{log[-3000:]}"


def test_operator_as_chart_serviceaccount_reconciles_every_example(
    chart_operator: OperatorAs, watched: str, release: str
) -> None:
    with private_gpu_pool(release, nodes=4) as pool:
        for example in EXAMPLES:
            manifest: dict[str, Any] = yaml.safe_load(example.read_text())
            name = manifest["metadata"]["name"]
            before = completed(chart_operator)
            apply(pinned(manifest, pool), watched)
            wait_ready(name, watched)
            # A cluster-wide operator of a concurrent test session may reconcile these too; this
            # one must itself have completed a reconcile (all reads, any writes left) without error.
            wait_completed(chart_operator, since=before, what=name)
            missing = [c for c in expected_children(manifest, watched) if not exists(*c, watched)]
            assert not missing, f"{example.name}: children the operator did not create: {missing}"
            if example.stem == "03-two-nodes":  # group restarts: list, delete pods, post Events
                restart_group(name, watched)
                wait_ready(name, watched)
            kubectl("delete", "llmservice", name, "-n", watched, "--wait=true")
            wait_gone(watched)
    assert_no_permission_errors(chart_operator)


def test_log_check_catches_a_missing_permission(
    cluster: object, namespace: str, watched: str, release: str, tmp_path: Path
) -> None:
    """The namespaced chart's ServiceAccount running a cluster-wide operator: RBAC refuses its
    cluster-scoped watches, and the check above must see it (else it could never fail)."""
    install(release, namespace, "namespaced", "--set-json", f'watchNamespaces=["{watched}"]')
    config = sa_kubeconfig(f"{release}-llmservice-operator", namespace, tmp_path / "sa.kubeconfig")
    operator = OperatorAs(config, [])
    operator.start()
    try:
        wait_for(lambda: RBAC_DENIED.search(operator.log.read_text()), timeout=30, what="a 403")
        with pytest.raises(AssertionError, match="lacks a permission"):
            assert_no_permission_errors(operator)
    finally:
        operator.stop()


# (verb, resource) pairs the operator must never be able to do, anywhere.
NEVER = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("get", "configmaps"),
    ("create", "pods"),
    ("update", "pods"),
    ("create", "pods/exec"),
    ("update", "llmservices.llmsvc.io"),
    ("delete", "llmservices.llmsvc.io"),
    ("create", "llmservices.llmsvc.io"),
    ("update", "statefulsets.apps"),
    ("escalate", "roles.rbac.authorization.k8s.io"),
    ("bind", "roles.rbac.authorization.k8s.io"),
    ("update", "roles.rbac.authorization.k8s.io"),
    ("create", "endpointslices.discovery.k8s.io"),
    ("delete", "events"),
]
# Cluster-scoped kinds it must never touch.
NEVER_CLUSTER = [
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("get", "nodes"),
    ("delete", "namespaces"),
    ("create", "namespaces"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    # kopf's start-up scanning is off: the chart grants no reads of CRDs or namespaces.
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("list", "namespaces"),
    ("get", "namespaces"),
]
# What the code uses (see charts/llmservice-operator/templates/_helpers.tpl).
USED = [
    ("watch", "llmservices.llmsvc.io"),
    ("patch", "llmservices.llmsvc.io/status"),
    ("update", "llmservices.llmsvc.io/finalizers"),
    ("patch", "statefulsets.apps"),
    ("create", "horizontalpodautoscalers.autoscaling"),
    ("patch", "networkpolicies.networking.k8s.io"),
    ("delete", "pods"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("watch", "endpointslices.discovery.k8s.io"),
    ("create", "events"),
]


def test_cluster_wide_serviceaccount_is_least_privilege(
    cluster: object, namespace: str, release: str
) -> None:
    install(release, namespace, "default")
    user = f"system:serviceaccount:{namespace}:{release}-llmservice-operator"
    for verb, resource in USED:
        assert can_i(user, verb, resource, None), f"cannot {verb} {resource} cluster-wide"
    for verb, resource in NEVER + NEVER_CLUSTER:
        assert not can_i(user, verb, resource, None), f"can {verb} {resource}"
        assert not can_i(user, verb, resource, namespace), f"can {verb} {resource} in {namespace}"


def test_namespaced_serviceaccount_is_confined(
    cluster: object, namespace: str, watched: str, release: str
) -> None:
    install(release, namespace, "namespaced", "--set-json", f'watchNamespaces=["{watched}"]')
    user = f"system:serviceaccount:{namespace}:{release}-llmservice-operator"
    for verb, resource in USED:
        assert can_i(user, verb, resource, watched), f"cannot {verb} {resource} in {watched}"
        assert not can_i(user, verb, resource, None), f"can {verb} {resource} cluster-wide"
        assert not can_i(user, verb, resource, namespace), f"can {verb} {resource} in {namespace}"
    for verb, resource in NEVER + NEVER_CLUSTER:
        assert not can_i(user, verb, resource, watched), f"can {verb} {resource} in {watched}"
    cluster_kinds = "clusterroles,clusterrolebindings"
    there = kubectl("get", cluster_kinds, "-l", f"{INSTANCE}={release}", "-o", "name").stdout
    assert not there.split(), "namespaced mode grants nothing cluster-scoped"
    assert owned(release, watched), "the Role and RoleBinding live in the watched namespace"
    helm("uninstall", release, "-n", namespace, "--wait")
    wait_for(
        lambda: not (owned(release, namespace) or owned(release, watched)),
        what=f"no objects of {release} left in {namespace} or {watched}",
    )
