"""The escape hatch: pull secrets, engine service account, extra metadata, pod-template overlays,
and the engine/puller resource defaults."""

from __future__ import annotations

from typing import Any

import pytest

from llmsvc.api import InvalidSpecError
from llmsvc.controller.main import split_names
from llmsvc.render import group, render
from llmsvc.render.overlay import merge
from tests.invalid_cases import setter
from tests.render_helpers import engine_of, kinds, svc_with

Manifest = dict[str, Any]


def _pod_templates(children: list[Manifest]) -> list[Manifest]:
    return [
        c["spec"]["template"]
        for c in kinds(children, "StatefulSet") + kinds(children, "Deployment")
    ]


def test_spec_pull_secrets_reach_every_pod_and_win_over_the_defaults() -> None:
    svc = svc_with(
        setter("spec.imagePullSecrets", ["regcred", "mirror"]), setter("spec.replicas", 2)
    )
    templates = _pod_templates(render(svc, pull_secrets=["operator-default"]))
    assert len(templates) == 3  # two groups and the router
    for template in templates:
        assert template["spec"]["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]


def test_operator_default_pull_secrets_apply_when_the_spec_sets_none() -> None:
    svc = svc_with()
    for template in _pod_templates(render(svc, pull_secrets=["chart-secret"])):
        assert template["spec"]["imagePullSecrets"] == [{"name": "chart-secret"}]
    assert group(svc, 1, pull_secrets=["chart-secret"])["spec"]["template"]["spec"][
        "imagePullSecrets"
    ] == [{"name": "chart-secret"}]
    assert all("imagePullSecrets" not in t["spec"] for t in _pod_templates(render(svc)))


def test_split_names_reads_the_chart_value() -> None:
    assert split_names(" a, b,,c ") == ("a", "b", "c")
    assert split_names("") == ()


def test_engine_service_account_on_ranks_only() -> None:
    children = render(svc_with(setter("spec.engine.serviceAccountName", "vllm-reader")))
    sts = kinds(children, "StatefulSet")[0]
    assert sts["spec"]["template"]["spec"]["serviceAccountName"] == "vllm-reader"
    router = kinds(children, "Deployment")[0]
    assert router["spec"]["template"]["spec"]["serviceAccountName"] == "invalid-case-router"


def test_extra_metadata_on_pods_and_services_under_the_owned_labels() -> None:
    svc = svc_with(
        setter("spec.podMetadata", {"labels": {"team": "a"}, "annotations": {"x/y": "1"}}),
        setter("spec.serviceMetadata", {"annotations": {"mesh/inject": "true"}}),
    )
    children = render(svc)
    for template in _pod_templates(children):
        assert template["metadata"]["labels"]["team"] == "a"
        assert template["metadata"]["labels"]["llmsvc.io/name"] == "invalid-case"
        assert template["metadata"]["annotations"] == {"x/y": "1"}
    services = kinds(children, "Service")
    assert len(services) == 2  # the client's and the leaders' (one pod per group: no headless)
    assert all(s["metadata"]["annotations"] == {"mesh/inject": "true"} for s in services)


def test_overlay_adds_a_sidecar_env_resources_and_scheduling() -> None:
    overlay = {
        "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
        "spec": {
            "runtimeClassName": "nvidia",
            "containers": [
                {
                    "name": "engine",
                    "env": [{"name": "NCCL_DEBUG", "value": "INFO"}],
                    "resources": {"limits": {"memory": "300Gi"}},
                },
                {"name": "exporter", "image": "dcgm-exporter:1"},
            ],
        },
    }
    sts = kinds(render(svc_with(setter("spec.engine.podTemplate", overlay))), "StatefulSet")[0]
    spec = sts["spec"]["template"]["spec"]
    assert spec["runtimeClassName"] == "nvidia"
    assert [c["name"] for c in spec["containers"]] == ["engine", "exporter"]
    engine = engine_of(sts)
    assert engine["env"][-1] == {"name": "NCCL_DEBUG", "value": "INFO"}
    assert engine["env"][0]["name"] == "MASTER_ADDR"
    assert engine["resources"]["limits"] == {"memory": "300Gi", "nvidia.com/gpu": 1}
    assert sts["spec"]["template"]["metadata"]["annotations"] == {
        "sidecar.istio.io/inject": "false"
    }


def test_router_overlay() -> None:
    overlay = {"spec": {"topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}]}}
    router = kinds(render(svc_with(setter("spec.router.podTemplate", overlay))), "Deployment")[0]
    assert router["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["maxSkew"] == 1


@pytest.mark.parametrize(
    ("field", "overlay", "message"),
    [
        (
            "engine",
            {"spec": {"containers": [{"name": "engine", "command": ["sleep"]}]}},
            "containers[engine].command is owned by the operator: add flags with spec.engine.args",
        ),
        (
            "engine",
            {"spec": {"containers": [{"name": "engine", "image": "evil"}]}},
            "spec.containers[engine].image is owned by the operator: set spec.engine.image",
        ),
        (
            "engine",
            {
                "spec": {
                    "containers": [
                        {"name": "engine", "resources": {"limits": {"nvidia.com/gpu": 8}}}
                    ]
                }
            },
            "limits[nvidia.com/gpu] is owned by the operator: set spec.parallelism.gpusPerNode",
        ),
        (
            "engine",
            {
                "spec": {
                    "containers": [{"name": "engine", "env": [{"name": "NODE_RANK", "value": "0"}]}]
                }
            },
            "spec.containers[engine].env[NODE_RANK] is owned by the operator",
        ),
        (
            "engine",
            {"spec": {"initContainers": [{"name": "pull", "$patch": "delete"}]}},
            "spec.initContainers[pull].image is owned by the operator",
        ),
        (
            "engine",
            {"spec": {"volumes": [{"name": "model-cache", "hostPath": {"path": "/x"}}]}},
            "spec.volumes[model-cache] is owned by the operator",
        ),
        (
            "engine",
            {"spec": {"serviceAccountName": "x"}},
            "spec.serviceAccountName is owned by the operator: set spec.engine.serviceAccountName",
        ),
        ("engine", {"spec": {"enableServiceLinks": None}}, "spec.enableServiceLinks is owned"),
        (
            "engine",
            {"metadata": {"labels": {"llmsvc.io/group": "9"}}},
            "metadata.labels[llmsvc.io/group] is owned by the operator",
        ),
        ("engine", {"kind": "Pod"}, "unsupported keys kind"),
        (
            "router",
            {"spec": {"containers": [{"name": "router", "args": []}]}},
            "spec.router.podTemplate: spec.containers[router].args is owned by the operator",
        ),
        (
            "router",
            {"spec": {"imagePullSecrets": [{"name": "x"}]}},
            "spec.imagePullSecrets is owned by the operator: set spec.imagePullSecrets",
        ),
    ],
)
def test_overlay_may_not_change_owned_fields(field: str, overlay: Manifest, message: str) -> None:
    svc = svc_with(setter(f"spec.{field}.podTemplate", overlay))
    with pytest.raises(InvalidSpecError) as error:
        render(svc)
    assert any(message in problem for problem in error.value.problems), error.value.problems


def test_merge_rules() -> None:
    base = {
        "a": {"b": 1, "c": 2},
        "tolerations": [{"key": "x"}],
        "env": [{"name": "A", "value": "1"}],
    }
    patch = {
        "a": {"c": None, "d": 3},
        "tolerations": [{"key": "y"}],
        "env": [{"name": "A", "$patch": "delete"}, {"name": "B", "value": "2"}],
    }
    assert merge(base, patch) == {
        "a": {"b": 1, "d": 3},
        "tolerations": [{"key": "y"}],  # not a merge list: replaced
        "env": [{"name": "B", "value": "2"}],
    }
    assert base["a"] == {"b": 1, "c": 2}  # inputs untouched


def test_engine_requests_default_and_user_values_win() -> None:
    default = engine_of(kinds(render(svc_with()), "StatefulSet")[0])["resources"]
    assert default["requests"] == {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": 1}
    assert "memory" not in default["limits"]
    given = svc_with(setter("spec.engine.resources", {"requests": {"cpu": 16}}))
    resources = engine_of(kinds(render(given), "StatefulSet")[0])["resources"]
    assert resources["requests"] == {"cpu": "16", "memory": "8Gi", "nvidia.com/gpu": 1}


def test_puller_has_a_memory_limit_and_liveness_and_readiness_check_different_things() -> None:
    sts = kinds(render(svc_with()), "StatefulSet")[0]
    pull = sts["spec"]["template"]["spec"]["initContainers"][0]
    assert pull["resources"]["limits"]["memory"] == "1Gi"
    engine = engine_of(sts)
    ready, live = engine["readinessProbe"], engine["livenessProbe"]
    # readiness: serving (/health); liveness: the engine makes progress / the world is whole
    # (a busy but healthy engine is never restarted: see docs/rank-health.md)
    assert " ready --port " in ready["exec"]["command"][-1]
    assert " live " in live["exec"]["command"][-1]
