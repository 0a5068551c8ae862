"""The operator against the real local control plane: Ready, scaling, restarts, crashes, drift.

Every behaviour is observed through the API server (kubectl), with the operator running as a real
process. KWOK's fake kubelet marks scheduled pods Ready; the scheduler really counts GPUs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.helpers import (
    REPO,
    apply,
    created,
    events_of,
    is_ready,
    kubectl,
    kubectl_json,
    pods,
    wait_for,
)
from e2e.operator_process import RESYNC_SECONDS, OperatorProcess
from llmsvc.api import parse
from llmsvc.plan.diff import satisfies
from llmsvc.render import DEFAULT_IMAGE, render

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CHILD_KINDS = (
    "statefulsets,services,deployments,serviceaccounts,roles,rolebindings,hpa,networkpolicies,pdb"
)
READY_TIMEOUT = 120.0


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def llmservice(name: str, **spec: Any) -> dict[str, Any]:
    """A small single-node LLMService (two GPUs per replica unless ``spec`` says otherwise)."""
    body: dict[str, Any] = {
        "model": {"uri": "hf://org/tiny", "servedName": name},
        "engine": {"maxModelLen": 4096},
        "parallelism": {"tensor": 2, "gpusPerNode": 2},
    }
    body.update(spec)
    return {
        "apiVersion": "llmsvc.io/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name},
        "spec": body,
    }


def get(name: str, ns: str) -> dict[str, Any]:
    return kubectl_json("get", "llmservice", name, "-n", ns)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def wait_ready(name: str, ns: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    kubectl(
        "wait",
        "--for=condition=Ready",
        f"llmservice/{name}",
        "-n",
        ns,
        f"--timeout={int(timeout)}s",
        timeout=timeout + 10,
    )
    return get(name, ns)


def children(name: str, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json(
        "get", CHILD_KINDS, "-n", ns, "-l", f"llmsvc.io/name={name}"
    )["items"]
    return items


def group_pods(ns: str, name: str, group: int) -> list[dict[str, Any]]:
    return pods(ns, f"llmsvc.io/name={name},llmsvc.io/group={group}")


def uids(items: list[dict[str, Any]]) -> set[str]:
    return {p["metadata"]["uid"] for p in items}


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_reaches_ready_with_rendered_children(
    operator: OperatorProcess, namespace: str, example: Path
) -> None:
    manifest = load(example)
    name = manifest["metadata"]["name"]
    kubectl("apply", "-n", namespace, "-f", str(example))
    live = wait_ready(name, namespace)
    assert not live["metadata"].get("finalizers"), "deleting an LLMService must not wait for us"
    manifest["metadata"]["namespace"] = namespace
    svc = parse(manifest)
    assert live["status"]["readyReplicas"] == svc.spec.replicas
    assert live["status"]["nodesPerReplica"] == svc.spec.parallelism.nodes
    by_key = {(c["kind"], c["metadata"]["name"]): c for c in children(name, namespace)}
    for want in render(svc, image=DEFAULT_IMAGE):
        got = by_key.get((want["kind"], want["metadata"]["name"]))
        assert got is not None, f"missing {want['kind']}/{want['metadata']['name']}"
        assert satisfies(got, want), f"{want['kind']}/{want['metadata']['name']} differs"
    table = kubectl("get", "llmservices", "-n", namespace).stdout
    row = table.splitlines()[1].split()
    assert row[0] == name
    assert str(svc.spec.replicas) in row
    assert "Ready" in row


def test_scale_through_subresource_and_spec(operator: OperatorProcess, namespace: str) -> None:
    apply(llmservice("scaler", parallelism={"tensor": 1, "gpusPerNode": 1}), namespace)
    wait_ready("scaler", namespace)
    kubectl("scale", "llmservice/scaler", "--replicas=3", "-n", namespace)
    wait_for(
        lambda: get("scaler", namespace)["status"].get("readyReplicas") == 3,
        timeout=READY_TIMEOUT,
        what="three ready replicas",
    )
    assert len(pods(namespace, "llmsvc.io/name=scaler,app.kubernetes.io/component=engine")) == 3
    kubectl(
        "patch",
        "llmservice/scaler",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"replicas":1}}',
    )
    wait_for(
        lambda: (
            not kubectl(
                "get",
                "sts",
                "scaler-1",
                "scaler-2",
                "-n",
                namespace,
                "--ignore-not-found",
                "-o",
                "name",
            ).stdout.strip()
        ),
        timeout=60,
        what="groups 1 and 2 removed",
    )
    status = wait_for(
        lambda: (s := get("scaler", namespace)["status"])["replicas"] == 1 and s,
        timeout=60,
        what="status.replicas 1",
    )
    assert status["readyReplicas"] == 1


def test_deleting_a_worker_restarts_only_its_group(
    operator: OperatorProcess, namespace: str
) -> None:
    two_nodes = {"tensor": 2, "pipeline": 2, "gpusPerNode": 2}
    apply(llmservice("grp", replicas=2, parallelism=two_nodes), namespace)
    wait_ready("grp", namespace)
    before0, before1 = uids(group_pods(namespace, "grp", 0)), uids(group_pods(namespace, "grp", 1))
    kubectl("delete", "pod", "grp-1-1", "-n", namespace, "--wait=false")

    def group1_replaced() -> bool:
        now = group_pods(namespace, "grp", 1)
        fresh = uids(now).isdisjoint(before1) and len(now) == 2
        return fresh and all(is_ready(p) for p in now)

    wait_for(group1_replaced, timeout=60, what="both ranks of group 1 recreated")
    assert uids(group_pods(namespace, "grp", 0)) == before0
    status = wait_ready("grp", namespace)["status"]
    restarts = {g["index"]: g["restarts"] for g in status["groups"]}
    assert restarts[1] >= 1
    assert restarts[0] == 0

    def restart_event() -> bool:  # kopf posts Events from a background queue
        events = kubectl_json(
            "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=grp"
        )["items"]
        return any(e["reason"] == "GroupRestarted" and "group 1" in e["message"] for e in events)

    wait_for(restart_event, timeout=30, what="a GroupRestarted event for group 1")


def test_steady_state_makes_no_writes(operator: OperatorProcess, namespace: str) -> None:
    apply(llmservice("quiet", router={"enabled": True, "replicas": 1}), namespace)
    wait_ready("quiet", namespace)
    operator.settle(2 * RESYNC_SECONDS)
    versions = {
        c["metadata"]["name"] + c["kind"]: c["metadata"]["resourceVersion"]
        for c in children("quiet", namespace)
    }
    own = get("quiet", namespace)["metadata"]["resourceVersion"]
    writes = operator.writes(namespace)
    operator.settle(4 * RESYNC_SECONDS)
    assert operator.writes(namespace) == writes
    assert get("quiet", namespace)["metadata"]["resourceVersion"] == own
    assert {
        c["metadata"]["name"] + c["kind"]: c["metadata"]["resourceVersion"]
        for c in children("quiet", namespace)
    } == versions


def test_drift_is_repaired_within_a_resync(operator: OperatorProcess, namespace: str) -> None:
    apply(llmservice("drift"), namespace)
    wait_ready("drift", namespace)
    kubectl("scale", "statefulset/drift-0", "--replicas=3", "-n", namespace)
    kubectl("delete", "service", "drift-leaders", "-n", namespace)
    deadline = 3 * RESYNC_SECONDS + 5
    wait_for(
        lambda: kubectl_json("get", "sts", "drift-0", "-n", namespace)["spec"]["replicas"] == 1,
        timeout=deadline,
        what="StatefulSet replicas restored",
    )
    wait_for(
        lambda: (
            kubectl("get", "service", "drift-leaders", "-n", namespace, check=False).returncode == 0
        ),
        timeout=deadline,
        what="leaders Service recreated",
    )


def test_unschedulable_group_waits_for_nodes_with_scheduler_reason(
    operator: OperatorProcess, namespace: str
) -> None:
    """Degraded only after a grace period (a node autoscaler may add nodes): first it progresses."""
    apply(llmservice("huge", parallelism={"tensor": 16, "gpusPerNode": 16}), namespace)

    def waiting() -> dict[str, Any]:
        cond = condition(get("huge", namespace), "Progressing")
        return cond if cond.get("reason") == "WaitingForNodes" else {}

    cond = wait_for(waiting, timeout=60, what="Progressing=WaitingForNodes")
    assert cond["status"] == "True"
    assert "nvidia.com/gpu" in cond["message"]
    obj = get("huge", namespace)
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Degraded")["status"] == "False"
    assert condition(obj, "Reconciling")["status"] == "True"


def revisions_of(ns: str, name: str, g: int) -> set[str]:
    return {p["metadata"]["labels"].get("controller-revision-hash", "")
            for p in group_pods(ns, name, g)}  # fmt: skip


def update_revisions(ns: str, name: str) -> list[str]:
    return [str(kubectl_json("get", "sts", f"{name}-{g}", "-n", ns)["status"]
                .get("updateRevision")) for g in (0, 1)]  # fmt: skip


def test_template_change_rolls_group_by_group(operator: OperatorProcess, namespace: str) -> None:
    apply(llmservice("roll", replicas=2), namespace)
    wait_ready("roll", namespace)
    before = update_revisions(namespace, "roll")
    kubectl("patch", "llmservice/roll", "-n", namespace, "--type=merge",
            "-p", '{"spec":{"engine":{"args":["--enable-prefix-caching"]}}}')  # fmt: skip
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        for g in (0, 1):
            assert len(revisions_of(namespace, "roll", g)) <= 1, f"group {g} mixes templates"
        current = update_revisions(namespace, "roll")
        members = [group_pods(namespace, "roll", g) for g in (0, 1)]
        if all(
            rev != old and pods_ and all(
                p["metadata"]["labels"].get("controller-revision-hash") == rev and is_ready(p)
                for p in pods_)
            for pods_, rev, old in zip(members, current, before, strict=True)
        ):  # fmt: skip
            break
        time.sleep(0.2)
    else:
        pytest.fail("rollout did not finish")
    new = created(events_of(namespace, "roll"))
    assert "StatefulSet roll-2" in new, f"no surge group came up first: {new}"
    wait_for(lambda: not group_pods(namespace, "roll", 2), timeout=30, what="surge group removed")
    wait_ready("roll", namespace)


def test_operator_never_writes_spec_replicas(operator: OperatorProcess, namespace: str) -> None:
    apply(
        llmservice("auto", autoscaling={"enabled": True, "minReplicas": 1, "maxReplicas": 2}),
        namespace,
    )
    wait_ready("auto", namespace)
    assert kubectl("get", "hpa", "auto", "-n", namespace, check=False).returncode == 0
    managed = get("auto", namespace)["metadata"].get("managedFields", [])
    for entry in managed:
        if entry.get("manager", "").startswith(("llmsvc", "kopf", "python")):
            assert "f:replicas" not in str(entry.get("fieldsV1", {}).get("f:spec", {}))


def test_delete_removes_all_children(operator: OperatorProcess, namespace: str) -> None:
    apply(llmservice("gone"), namespace)
    wait_ready("gone", namespace)
    assert children("gone", namespace)
    kubectl("delete", "llmservice", "gone", "-n", namespace)
    wait_for(lambda: not children("gone", namespace), timeout=60, what="children collected")


def test_sigkill_mid_reconcile_converges_without_duplicates(
    operator: OperatorProcess, namespace: str
) -> None:
    names = [f"crash-{i}" for i in range(5)]
    apply([llmservice(n, parallelism={"tensor": 1, "gpusPerNode": 1}) for n in names], namespace)

    def started() -> str:
        return kubectl("get", "sts", "-n", namespace, "-o", "name").stdout.strip()

    wait_for(
        started,
        timeout=30,
        interval=0.05,
        what="the operator to start creating children",
    )
    operator.kill()
    operator.start()
    for n in names:
        wait_ready(n, namespace)
    owners = {get(n, namespace)["metadata"]["uid"] for n in names}
    for n in names:
        kids = children(n, namespace)
        keys = [(c["kind"], c["metadata"]["name"]) for c in kids]
        assert len(keys) == len(set(keys))
        want = {
            (o["kind"], o["metadata"]["name"])
            for o in render(
                parse({**llmservice(n), "metadata": {"name": n, "namespace": namespace}})
            )
        }
        assert set(keys) == want
        for c in kids:
            refs = c["metadata"]["ownerReferences"]
            assert len(refs) == 1
            assert refs[0]["uid"] in owners


def test_invalid_object_is_rejected_before_the_operator_sees_it(namespace: str) -> None:
    bad = llmservice("bad", parallelism={"tensor": 3, "gpusPerNode": 8})
    result = apply(bad, namespace, check=False)
    assert result.returncode != 0
    assert "gpusPerNode" in result.stderr
