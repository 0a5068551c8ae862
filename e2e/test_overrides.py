"""Pull secrets, service accounts and pod-template overlays through a real operator process.

The operator runs with ``--image-pull-secrets chart-default`` (what the chart passes from its
``imagePullSecrets``); LLMServices with and without their own secrets, an overlay, and an
overlay that touches an operator-owned field (reported as Degraded=InvalidSpec) are applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from e2e.helpers import apply, kubectl_json, wait_for
from e2e.operator_process import OperatorProcess
from e2e.test_operator import condition, get, llmservice


@pytest.fixture(scope="module")
def operator(cluster: object) -> Iterator[OperatorProcess]:
    process = OperatorProcess(extra_args=("--image-pull-secrets", "chart-default"))
    process.start()
    yield process
    process.stop()


def pod_spec(name: str, namespace: str) -> dict[str, Any]:
    sts = wait_for(
        lambda: kubectl_json("get", "statefulset", f"{name}-0", "-n", namespace),
        timeout=60,
        what=f"StatefulSet {name}-0",
    )
    spec: dict[str, Any] = sts["spec"]["template"]["spec"]
    return spec


def test_default_and_own_pull_secrets_service_account_and_overlay(
    operator: OperatorProcess, namespace: str
) -> None:
    apply(llmservice("plain"), namespace)
    assert pod_spec("plain", namespace)["imagePullSecrets"] == [{"name": "chart-default"}]
    overlay = {"spec": {"runtimeClassName": "nvidia", "hostIPC": True}}
    own = llmservice(
        "own",
        imagePullSecrets=["regcred"],
        engine={"maxModelLen": 4096, "serviceAccountName": "vllm", "podTemplate": overlay},
    )
    apply(own, namespace)
    spec = pod_spec("own", namespace)
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["serviceAccountName"] == "vllm"
    assert (spec["runtimeClassName"], spec["hostIPC"]) == ("nvidia", True)
    router = kubectl_json("get", "deployment", "own-router", "-n", namespace)
    assert router["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_overlay_on_an_owned_field_is_degraded_invalid_spec(
    operator: OperatorProcess, namespace: str
) -> None:
    bad = {"spec": {"containers": [{"name": "engine", "command": ["sleep", "inf"]}]}}
    apply(llmservice("bad", engine={"maxModelLen": 4096, "podTemplate": bad}), namespace)
    degraded = wait_for(
        lambda: (c := condition(get("bad", namespace), "Degraded")) and c["status"] == "True" and c,
        timeout=60,
        what="Degraded=InvalidSpec",
    )
    assert degraded["reason"] == "InvalidSpec"
    assert "spec.containers[engine].command is owned by the operator" in degraded["message"]
    stalled = condition(get("bad", namespace), "Stalled")
    assert stalled["status"] == "True"
