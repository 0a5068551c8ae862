"""The renderer: targeted asserts on the wiring of every child (names, labels, env, volumes,
RBAC, HPA, scheduling), golden files for every example, and purity of the render package."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmsvc.api import InvalidSpecError, LLMService, parse
from llmsvc.api.rules import MAX_NAME_LENGTH, MAX_REPLICAS
from llmsvc.render import DEFAULT_IMAGE, names, render
from llmsvc.render.main import format_output
from tests.invalid_cases import merge, setter
from tests.render_helpers import (
    EXAMPLES,
    GOLDEN,
    ROOT,
    Manifest,
    by_key,
    engine_of,
    env_of,
    kinds,
    load,
    svc_with,
)

# --- structure --------------------------------------------------------------------------------


def test_two_nodes_example_is_one_group_of_two_ranks() -> None:
    children = by_key(render(load("03-two-nodes.yaml")))
    sts = children[("StatefulSet", "llama-405b-0")]
    spec = sts["spec"]
    assert [c for c in children if c[0] == "StatefulSet"] == [("StatefulSet", "llama-405b-0")]
    assert spec["replicas"] == 2
    assert spec["serviceName"] == "llama-405b-headless"
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {"type": "OnDelete"}
    assert spec["selector"]["matchLabels"] == names.group_selector("llama-405b", 0)
    pod = spec["template"]["spec"]
    assert pod["enableServiceLinks"] is False
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
    resources = engine_of(sts)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == 8
    assert resources["limits"]["nvidia.com/gpu"] == 8


def test_children_sorted_without_owner_references() -> None:
    children = render(load("04-three-replicas.yaml"))
    keys = [(c["kind"], c["metadata"]["name"]) for c in children]
    assert keys == sorted(keys)
    assert len(kinds(children, "StatefulSet")) == 3
    assert {kind for kind, _ in keys} == {
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    }
    assert all("ownerReferences" not in c["metadata"] for c in children)
    assert all(c["metadata"]["namespace"] == "default" for c in children)


def test_render_is_deterministic_and_json_clean() -> None:
    svc = load("05-autoscaling.yaml")
    assert render(svc) == render(svc)
    assert json.loads(json.dumps(render(svc))) == render(svc)


def test_labels_and_selectors_line_up() -> None:
    svc = load("04-three-replicas.yaml")
    children = render(svc)
    for child in children:
        assert child["metadata"]["labels"].items() >= names.common_labels(svc.name, "x").items() - {
            (names.LABEL_COMPONENT, "x")
        }
    for sts in kinds(children, "StatefulSet"):
        labels = sts["spec"]["template"]["metadata"]["labels"]
        assert labels.items() >= sts["spec"]["selector"]["matchLabels"].items()
        assert labels[names.LABEL_COMPONENT] == "engine"
    services = {s["metadata"]["name"]: s["spec"] for s in kinds(children, "Service")}
    assert services["llama-70b-dp-leaders"]["selector"] == names.leader_selector(svc.name)
    router_pods = kinds(children, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    assert router_pods.items() >= services["llama-70b-dp"]["selector"].items()
    assert names.selector_string(names.leader_selector("x")) == (
        "app.kubernetes.io/component=engine,apps.kubernetes.io/pod-index=0,llmsvc.io/name=x"
    )


def test_router_disabled_points_the_client_service_at_leaders() -> None:
    children = render(svc_with(setter("spec.router.enabled", False)))
    assert not kinds(children, "Deployment")
    assert not kinds(children, "Role")
    client = by_key(children)[("Service", "invalid-case")]
    assert client["spec"]["selector"] == names.leader_selector("invalid-case")
    # the leaders' Service is the router's discovery source: without a router nothing reads it
    services = {c["metadata"]["name"] for c in kinds(children, "Service")}
    assert services == {"invalid-case"}
    with_router = kinds(render(svc_with()), "Service")
    assert "invalid-case-leaders" in {c["metadata"]["name"] for c in with_router}
    assert client["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": 8000, "protocol": "TCP"}
    ]


def test_ranks_get_a_headless_service_only_where_a_group_spans_pods() -> None:
    # Rank DNS names exist for the rendezvous (MASTER_ADDR): a group of one pod has none to
    # reach, and each Service costs an Endpoints, an EndpointSlice and the controller-manager's
    # pass over every Service of the namespace on each pod event.
    assert not [s for s in kinds(render(svc_with()), "Service") if "headless" in str(s)]
    svc = load("03-two-nodes.yaml")
    children = by_key(render(svc))
    headless = children[("Service", f"{svc.name}-headless")]["spec"]
    assert headless["publishNotReadyAddresses"] is True  # ranks resolve while they load
    assert headless["clusterIP"] == "None"
    assert headless["selector"] == names.engine_selector(svc.name)
    for sts in kinds(list(children.values()), "StatefulSet"):
        assert sts["spec"]["serviceName"] == f"{svc.name}-headless"
        assert f".{svc.name}-headless." in env_of(sts)["MASTER_ADDR"]


def test_names_fit_dns_labels_at_max_name_and_replicas() -> None:
    name = "a" * MAX_NAME_LENGTH
    svc = svc_with(
        setter("metadata.name", name),
        setter("spec.replicas", MAX_REPLICAS),
        merge("spec.parallelism", {"tensor": 8, "pipeline": 64, "gpusPerNode": 8}),
        setter("spec.autoscaling.enabled", True),
    )
    children = render(svc)
    assert len(kinds(children, "StatefulSet")) == MAX_REPLICAS
    assert len(kinds(children, "NetworkPolicy")) == MAX_REPLICAS + 2  # + surge group + router
    for child in children:
        assert len(child["metadata"]["name"]) <= 63
        assert all(len(v) <= 63 for v in child["metadata"]["labels"].values())
    last = kinds(children, "StatefulSet")[-1]
    # pods are NAME-g-<ordinal>; the controller-revision-hash label is NAME-g-<10-char hash>
    assert len(f"{last['metadata']['name']}-{last['spec']['replicas'] - 1}") <= 63
    assert len(last["metadata"]["name"]) + 11 <= 63
    assert all(len(part) <= 63 for part in env_of(last)["MASTER_ADDR"].split("."))


# --- weights: init container and cache volumes ------------------------------------------------


def pod_of(svc: LLMService) -> Manifest:
    pod: Manifest = kinds(render(svc), "StatefulSet")[0]["spec"]["template"]["spec"]
    return pod


def volume(pod: Manifest, name: str = "model-cache") -> Manifest:
    found: list[Manifest] = [v for v in pod["volumes"] if v["name"] == name]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize(
    ("cache", "fsync_off"),
    [
        ({}, True),
        ({"size": "100Gi"}, True),
        ({"size": "100Gi", "storageClassName": "fast"}, False),
        ({"existingClaim": "models"}, False),
    ],
)
def test_puller_skips_fsync_only_on_an_emptydir_cache(
    cache: dict[str, str], fsync_off: bool
) -> None:
    (init,) = pod_of(svc_with(setter("spec.cache", cache)))["initContainers"]
    assert ({"name": "LLMSVC_PULL_FSYNC", "value": "0"} in init["env"]) is fsync_off


def test_puller_serves_its_progress_on_a_named_port() -> None:
    (init,) = pod_of(svc_with())["initContainers"]
    assert init["ports"] == [{"name": "pull-metrics", "containerPort": 8001, "protocol": "TCP"}]
    assert {"name": "LLMSVC_PULL_METRICS_PORT", "value": "8001"} in init["env"]


def test_init_container_pulls_into_the_cache() -> None:
    svc = svc_with(
        setter("spec.model.revision", "v1.0"), setter("spec.model.credentialsSecret", "hf-token")
    )
    pod = pod_of(svc)
    (init,) = pod["initContainers"]
    assert init["name"] == "pull"
    assert init["image"] == DEFAULT_IMAGE
    assert init["args"] == [
        "pull",
        "hf://Qwen/Qwen2.5-0.5B-Instruct",
        "/models",
        "--revision",
        "v1.0",
    ]
    assert init["envFrom"] == [{"secretRef": {"name": "hf-token"}}]
    assert {"name": "model-cache", "mountPath": "/models", "readOnly": False} in init[
        "volumeMounts"
    ]
    security = init["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["fsGroup"] == 10001
    engine = pod["containers"][0]
    assert {"name": "model-cache", "mountPath": "/models", "readOnly": True} in engine[
        "volumeMounts"
    ]
    assert engine["envFrom"] == [{"secretRef": {"name": "hf-token"}}]
    assert "/models/hf/Qwen/Qwen2.5-0.5B-Instruct/v1.0 " in engine["command"][2]
    assert engine["securityContext"]["allowPrivilegeEscalation"] is False


def test_no_revision_no_secret() -> None:
    (init,) = pod_of(svc_with())["initContainers"]
    assert init["args"] == ["pull", "hf://Qwen/Qwen2.5-0.5B-Instruct", "/models"]
    assert "envFrom" not in init
    assert init["image"] == DEFAULT_IMAGE
    assert pod_of_image("example/op:1")["image"] == "example/op:1"


def pod_of_image(image: str) -> Manifest:
    sts = kinds(render(svc_with(), image=image), "StatefulSet")[0]
    init: Manifest = sts["spec"]["template"]["spec"]["initContainers"][0]
    return init


def test_cache_default_is_an_empty_dir() -> None:
    assert volume(pod_of(svc_with()))["emptyDir"] == {}
    sized = pod_of(svc_with(setter("spec.cache.size", "50Gi")))
    assert volume(sized)["emptyDir"] == {"sizeLimit": "50Gi"}


def test_cache_storage_class_is_a_claim_per_pod() -> None:
    svc = svc_with(merge("spec.cache", {"storageClassName": "fast", "size": "200Gi"}))
    sts = kinds(render(svc), "StatefulSet")[0]
    assert not [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "model-cache"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "model-cache"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "fast",
        "resources": {"requests": {"storage": "200Gi"}},
    }


def test_cache_existing_claim_is_shared() -> None:
    pod = pod_of(svc_with(setter("spec.cache.existingClaim", "models")))
    assert volume(pod)["persistentVolumeClaim"] == {"claimName": "models"}


def test_pvc_uri_mounts_that_claim_and_loads_the_path() -> None:
    pod = pod_of(svc_with(setter("spec.model.uri", "pvc://weights/llama/70b")))
    assert volume(pod)["persistentVolumeClaim"] == {"claimName": "weights"}
    assert "/models/llama/70b " in pod["containers"][0]["command"][2]
    (init,) = pod["initContainers"]
    assert {"name": "model-cache", "mountPath": "/models", "readOnly": True} in init["volumeMounts"]


def test_revision_the_cache_cannot_hold_is_an_invalid_spec() -> None:
    svc = svc_with(setter("spec.model.revision", "a/../b"))
    with pytest.raises(InvalidSpecError, match=r"spec\.model\.revision: "):
        render(svc)


# --- router, autoscaling, scheduling ---------------------------------------------------------


def test_router_deployment_and_least_privilege_rbac() -> None:
    children = by_key(render(load("04-three-replicas.yaml")))
    name = "llama-70b-dp-router"
    role = children[("Role", name)]
    assert role["rules"] == [
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    binding = children[("RoleBinding", name)]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": name,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": "default"}]
    assert ("ServiceAccount", name) in children
    deployment = children[("Deployment", name)]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == name
    (container,) = pod["containers"]
    assert container["args"] == [
        "router", "--service", "llama-70b-dp", "--namespace", "default",
        "--policy", "prefix-aware", "--port", "8000",
    ]  # fmt: skip
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["requests"]


def test_router_image_override() -> None:
    svc = svc_with(setter("spec.router.image", "example/router:2"))
    (deployment,) = kinds(render(svc, image="example/op:1"), "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "example/router:2"


def test_hpa_targets_the_llmservice_on_the_builtin_queue_metric() -> None:
    (hpa,) = kinds(render(load("05-autoscaling.yaml")), "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["name"] == "mistral-auto"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "llmsvc.io/v1alpha1",
        "kind": "LLMService",
        "name": "mistral-auto",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 4)
    (external,) = spec["metrics"]
    assert external == {
        "type": "External",
        "external": {
            "metric": {
                "name": "llmsvc_queue_length",
                "selector": {"matchLabels": {"llmsvc.io/name": "mistral-auto"}},
            },
            "target": {"type": "AverageValue", "averageValue": "5"},
        },
    }
    assert spec["behavior"] == {
        "scaleUp": {"stabilizationWindowSeconds": 0},
        "scaleDown": {"stabilizationWindowSeconds": 600},
    }


def test_hpa_on_prometheus_adapter_metrics() -> None:
    svc = svc_with(merge("spec.autoscaling", {"enabled": True, "metrics": "prometheus"}))
    (hpa,) = kinds(render(svc), "HorizontalPodAutoscaler")
    pods, service = hpa["spec"]["metrics"]
    target = {"type": "AverageValue", "averageValue": "5"}
    assert pods == {
        "type": "Pods",
        "pods": {"metric": {"name": "vllm_num_requests_waiting"}, "target": target},
    }
    assert service["object"]["describedObject"] == {
        "apiVersion": "v1",
        "kind": "Service",
        "name": "invalid-case",
    }
    assert service["object"]["metric"] == {"name": "llmsvc_router_queue_length"}
    without_router = svc_with(
        merge("spec.autoscaling", {"enabled": True, "metrics": "prometheus"}),
        setter("spec.router.enabled", False),
    )
    (hpa,) = kinds(render(without_router), "HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Pods"]


def test_scale_to_zero_keeps_the_hpa_floor_at_one_and_windows_are_configurable() -> None:
    svc = svc_with(
        merge(
            "spec.autoscaling",
            {
                "enabled": True,
                "minReplicas": 0,
                "scaleUpStabilizationSeconds": 5,
                "scaleDownStabilizationSeconds": 30,
            },
        )
    )
    (hpa,) = kinds(render(svc), "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 1  # the operator moves 0 <-> 1, like KEDA
    (router,) = kinds(render(svc), "Deployment")
    assert "--hold-when-empty" in router["spec"]["template"]["spec"]["containers"][0]["args"]
    (plain,) = kinds(render(svc_with()), "Deployment")
    assert "--hold-when-empty" not in plain["spec"]["template"]["spec"]["containers"][0]["args"]
    assert hpa["spec"]["behavior"]["scaleUp"] == {"stabilizationWindowSeconds": 5}
    assert hpa["spec"]["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 30}


def test_keda_renders_a_scaled_object_instead_of_an_hpa() -> None:
    svc = svc_with(
        merge(
            "spec.autoscaling",
            {"enabled": True, "metrics": "keda", "minReplicas": 0, "idleSecondsBeforeZero": 120},
        )
    )
    children = render(svc)
    assert not kinds(children, "HorizontalPodAutoscaler")
    (scaled,) = kinds(children, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "llmsvc.io/v1alpha1",
        "kind": "LLMService",
        "name": "invalid-case",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["cooldownPeriod"]) == (0, 4, 120)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert 'llmsvc_router_queue_length{namespace="default",llmsvc_io_name="invalid-case"}' in query
    assert "vllm:num_requests_waiting" in query
    assert trigger["metadata"]["threshold"] == "5"


def test_no_autoscaler_when_disabled() -> None:
    children = render(svc_with())
    assert not kinds(children, "HorizontalPodAutoscaler")
    assert not kinds(children, "ScaledObject")


def test_scheduling_copied_and_topology_keeps_a_group_together() -> None:
    user_affinity: Manifest = {
        "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}
    }
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    svc = svc_with(
        merge(
            "spec.scheduling",
            {
                "nodeSelector": {"gpu": "h100"},
                "tolerations": [toleration],
                "affinity": user_affinity,
                "priorityClassName": "llm",
                "topologyKey": "example.com/rack",
            },
        ),
        setter("spec.replicas", 2),
        setter("spec.parallelism", {"tensor": 8, "gpusPerNode": 4}),  # two pods per group
    )
    for g, sts in enumerate(kinds(render(svc), "StatefulSet")):
        pod = sts["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"gpu": "h100"}
        assert pod["tolerations"] == [toleration]
        assert pod["priorityClassName"] == "llm"
        assert pod["affinity"]["nodeAffinity"] == user_affinity["nodeAffinity"]
        assert pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == [
            {
                "labelSelector": {"matchLabels": names.group_selector("invalid-case", g)},
                "topologyKey": "example.com/rack",
            }
        ]
    assert "podAffinity" not in user_affinity  # the spec is not mutated
    plain = pod_of(svc_with())
    assert not {"affinity", "nodeSelector", "tolerations", "priorityClassName"} & set(plain)


# --- golden files and purity -----------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_golden(example: Path, update_golden: bool) -> None:
    rendered = format_output(render(parse(yaml.safe_load(example.read_text()))), "yaml")
    golden = GOLDEN / f"{example.stem}.yaml"
    if update_golden:
        golden.write_text(rendered)
    assert golden.exists(), f"missing {golden}: run pytest tests/test_render.py --update-golden"
    assert rendered == golden.read_text(), "render changed: review, then --update-golden"


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


STDLIB_ALLOWED = {
    "__future__",
    "copy",
    "math",
    "posixpath",
    "shlex",
    "typing",
    "collections",
    "dataclasses",
    "hashlib",
    "ipaddress",
    "re",
}


def test_render_modules_import_only_pure_things() -> None:
    """Stricter than the contract: render may import the models, the cache layout and a few
    stdlib modules (``main`` is the CLI shell: its I/O imports happen inside functions)."""
    for path in sorted((ROOT / "operator" / "llmsvc" / "render").glob("*.py")):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        for node in top:
            modules = (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            )
            for module in modules:
                assert module is not None
                pure = (
                    module.split(".")[0] in STDLIB_ALLOWED
                    or module.startswith(("llmsvc.api", "llmsvc.render", "llmsvc.puller.layout"))
                    or module == "llmsvc"
                )
                assert pure or path.name == "main.py", f"{path.name} imports {module}"


@pytest.mark.parametrize(
    ("router", "autoscaling", "flag"),
    [
        ({}, {}, None),  # the router's own default (30 s): no flag, no rollout on upgrade
        ({}, {"enabled": True, "minReplicas": 0}, "600"),  # held requests outlast a model load
        ({}, {"enabled": True, "minReplicas": 1}, None),
        ({"queueTimeoutSeconds": 5}, {}, "5"),
        ({"queueTimeoutSeconds": 90}, {"enabled": True, "minReplicas": 0}, "90"),
        ({"queueTimeoutSeconds": 30}, {"enabled": True, "minReplicas": 0}, None),
    ],
)
def test_router_queue_timeout(
    router: dict[str, Any], autoscaling: dict[str, Any], flag: str | None
) -> None:
    svc = svc_with(merge("spec.router", router), merge("spec.autoscaling", autoscaling))
    (deploy,) = kinds(render(svc), "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    given = args[args.index("--queue-timeout") + 1] if "--queue-timeout" in args else None
    assert given == flag


def test_router_queue_timeout_default_is_the_routers_own() -> None:
    from llmsvc.cli import build_parser
    from llmsvc.render.router import ROUTER_QUEUE_TIMEOUT

    assert build_parser("router").parse_args(["router"]).queue_timeout == ROUTER_QUEUE_TIMEOUT
