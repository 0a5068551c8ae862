"""The Helm chart without a cluster: lint, render per scenario, schema, fail messages, docs, CRD.

Needs the helm binary built with the local control plane (`make cluster-bins`, which `make test`
runs first); when it is missing these tests skip and say so. LLMSVC_HELM overrides the path.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "llmservice-operator"
SCENARIOS = REPO / "e2e" / "chart"
IMAGE = "llmsvc/llmservice-operator:0.1.0"


def _helm_path() -> Path:
    if os.environ.get("LLMSVC_HELM"):
        return Path(os.environ["LLMSVC_HELM"])
    script = f'. "{REPO}/e2e/cluster/common.sh" && printf %s "$LLMSVC_BIN"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    return Path(out.stdout) / "helm"


HELM = _helm_path()
pytestmark = pytest.mark.skipif(
    not HELM.is_file(), reason=f"helm not built at {HELM}: run `make cluster-bins` first"
)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [str(HELM), *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def render(*flags: str, scenario: str = "default") -> list[dict[str, Any]]:
    values = str(SCENARIOS / f"{scenario}-values.yaml")
    out = helm("template", "rel", str(CHART), "-n", "ops", "-f", values, *flags).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def operator_args(docs: list[dict[str, Any]]) -> list[str]:
    """The args of the operator container of the one Deployment in ``docs``."""
    return list(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def aggregated(doc: dict[str, Any]) -> bool:
    """A ClusterRole for namespace users (aggregated into edit/view), or the leader election
    Role: not the rules the operator reconciles with (each has its own test)."""
    labels = doc["metadata"].get("labels", {})
    election = doc["metadata"]["name"].endswith("-leader-election")
    return election or any(key.startswith(AGGREGATE) for key in labels)


@pytest.mark.parametrize("scenario", ["default", "namespaced", "metrics"])
def test_lint_strict(scenario: str) -> None:
    helm("lint", "--strict", str(CHART), "-f", str(SCENARIOS / f"{scenario}-values.yaml"))


def test_crd_in_chart_is_identical_to_crds_folder() -> None:
    chart_crds = sorted(p.name for p in (CHART / "crds").iterdir())
    assert chart_crds == sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    for name in chart_crds:
        chart_copy = (CHART / "crds" / name).read_text()
        assert chart_copy == (REPO / "crds" / name).read_text(), f"{name} drifted: make generate"


def test_default_is_cluster_wide_with_one_leader_elected_replica() -> None:
    docs = render("--set", "metricsApi.enabled=false")
    assert kinds(docs) == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding",
         "Deployment", "Service", "Pod", "Role", "RoleBinding"]
    )  # fmt: skip
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "RollingUpdate"}
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert {"name": "LLMSVC_IMAGE", "value": IMAGE} in container["env"]
    assert container["args"] == [
        "operator", "--resync-seconds=30", "--workers=16", "--health-address=0.0.0.0:8080",
        "--metrics-address=0.0.0.0:9090", "--leader-elect", "--leader-election-namespace=ops",
        "--leader-election-name=rel-llmservice-operator",
    ]  # fmt: skip
    probe = container["livenessProbe"]["httpGet"]
    assert probe == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]


METRICS_API_KINDS = ["APIService", "ClusterRole", "ClusterRole", "ClusterRoleBinding",
                     "ClusterRoleBinding", "RoleBinding", "Service"]  # fmt: skip


def test_metrics_api_is_on_by_default_with_its_apiservice_and_least_rbac() -> None:
    chart_default = helm("template", "rel", str(CHART), "-n", "ops").stdout
    assert "kind: APIService" in chart_default
    docs = render("--set", "metricsApi.enabled=true")
    plain = render("--set", "metricsApi.enabled=false")
    added = list(kinds(docs))
    for kind in kinds(plain):
        added.remove(kind)
    assert sorted(added) == sorted(METRICS_API_KINDS)
    api = one(docs, "APIService")
    assert api["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"
    assert api["spec"]["service"] == {
        "name": "rel-llmservice-operator-metrics-api", "namespace": "ops", "port": 443,
    }  # fmt: skip
    bindings = {d["roleRef"]["name"]: d for d in docs if d["kind"].endswith("RoleBinding")}
    assert bindings["system:auth-delegator"]["kind"] == "ClusterRoleBinding"
    reader = bindings["extension-apiserver-authentication-reader"]
    assert (reader["kind"], reader["metadata"]["namespace"]) == ("RoleBinding", "kube-system")
    patch = next(d for d in docs if d["metadata"]["name"] == "rel-llmservice-operator-apiservice")
    assert patch["rules"] == [
        {
            "apiGroups": ["apiregistration.k8s.io"],
            "resources": ["apiservices"],
            "resourceNames": ["v1beta1.external.metrics.k8s.io"],
            "verbs": ["patch"],
        }
    ]
    args = operator_args(docs)
    assert "--metrics-api-address=0.0.0.0:6443" in args
    assert "--metrics-api-apiservice=v1beta1.external.metrics.k8s.io" in args


def test_metrics_api_with_cert_manager_mounts_its_secret_and_needs_no_apiservice_patch() -> None:
    docs = render(
        "--set", "metricsApi.enabled=true", "--set", "metricsApi.certificate.source=cert-manager"
    )  # fmt: skip
    api = one(docs, "APIService")
    inject = api["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert inject == "ops/rel-llmservice-operator-metrics-api"
    assert (
        one(docs, "Certificate")["spec"]["secretName"] == "rel-llmservice-operator-metrics-api-tls"
    )
    assert one(docs, "Issuer")["spec"] == {"selfSigned": {}}
    assert not [d for d in docs if d["metadata"]["name"].endswith("-apiservice")]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert "--metrics-api-cert-dir=/etc/llmsvc/metrics-api" in pod["containers"][0]["args"]


def test_prometheus_adapter_rules_and_pod_monitors_behind_values() -> None:
    docs = render(
        "--set", "prometheusAdapter.rules=true", "--set", "prometheusAdapter.podMonitors=true"
    )
    rules = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])["rules"]
    assert {r["name"]["as"] for r in rules} == {
        "vllm_num_requests_waiting", "llmsvc_router_queue_length",
    }  # fmt: skip
    monitors = [d for d in docs if d["kind"] == "PodMonitor"]
    leaders = next(m for m in monitors if m["metadata"]["name"].endswith("-engine"))
    assert leaders["spec"]["selector"]["matchLabels"]["apps.kubernetes.io/pod-index"] == "0"
    assert all(m["spec"]["podTargetLabels"] == ["llmsvc.io/name"] for m in monitors)
    assert "PodMonitor" not in kinds(render())


def test_pod_meets_restricted_pod_security() -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    context = pod["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 10001
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == "rel-llmservice-operator"


def test_selector_labels_ignore_user_labels_and_versions() -> None:
    plain = one(render(), "Deployment")
    custom = one(render("--set", "podLabels.team=ml", "--set", "image.tag=9.9.9"), "Deployment")
    assert plain["spec"]["selector"] == custom["spec"]["selector"]
    assert custom["spec"]["template"]["metadata"]["labels"]["team"] == "ml"
    assert plain["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "llmservice-operator",
        "app.kubernetes.io/instance": "rel",
        "app.kubernetes.io/component": "operator",
    }


def test_namespaced_scenario_uses_roles_per_watched_namespace() -> None:
    docs = render(scenario="namespaced")
    roles = [d for d in docs if d["kind"] in ("Role", "RoleBinding") and not aggregated(d)]
    assert sorted((d["kind"], d["metadata"]["namespace"]) for d in roles) == [
        ("Role", "team-a"), ("Role", "team-b"),
        ("RoleBinding", "team-a"), ("RoleBinding", "team-b"),
    ]  # fmt: skip
    for binding in (d for d in roles if d["kind"] == "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "rel-llmservice-operator", "namespace": "ops"}
        ]
    args = operator_args(docs)
    assert {"--namespace=team-a", "--namespace=team-b", "--verbose"} <= set(args)


def test_namespaced_mode_renders_nothing_cluster_scoped() -> None:
    docs = render(scenario="namespaced")
    assert kinds(docs) == sorted(
        ["ServiceAccount", "Role", "Role", "RoleBinding", "RoleBinding", "Deployment", "Service",
         "Pod", "Role", "RoleBinding"]
    )  # fmt: skip


def test_existing_service_account_without_chart_rbac() -> None:
    docs = render(
        "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=ops-sa",
        "--set", "rbac.create=false", "--set", "metricsApi.enabled=false",
    )  # fmt: skip
    assert kinds(docs) == ["Deployment", "Pod", "Service"]  # the Pod is the `helm test` hook
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ops-sa"


def test_cluster_scoped_names_follow_the_release() -> None:
    docs = render("--set", "metricsApi.enabled=true")
    names = {d["metadata"]["name"] for d in docs if d["kind"].startswith("Cluster")}
    assert names == {
        "rel-llmservice-operator", "rel-llmservice-operator-auth-delegator",
        "rel-llmservice-operator-apiservice", "rel-llmservice-operator-metrics-reader",
        "rel-llmservice-operator-edit", "rel-llmservice-operator-view",
    }  # fmt: skip
    override = render("--set", "fullnameOverride=llmsvc", "--set", "metricsApi.enabled=true")
    roles = {d["metadata"]["name"] for d in override if d["kind"] == "ClusterRole"}
    assert roles == {
        "llmsvc", "llmsvc-apiservice", "llmsvc-metrics-reader", "llmsvc-edit", "llmsvc-view"
    }  # fmt: skip


def rules_of(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        r
        for d in docs
        if d["kind"] in ("ClusterRole", "Role") and not aggregated(d)
        for r in d["rules"]
    ]


# Every (apiGroup, resource, verb) the operator holds: widening RBAC must be a deliberate edit here,
# in the chart and in its README; e2e/test_chart.py proves that these suffice.
GRANTED = {
    *(("llmsvc.io", "llmservices", v) for v in ("get", "list", "watch", "patch")),
    ("llmsvc.io", "llmservices/status", "patch"),
    ("llmsvc.io", "llmservices/scale", "patch"),
    ("llmsvc.io", "llmservices/finalizers", "update"),
    *(("apps", r, v) for r in ("statefulsets", "deployments")
      for v in ("list", "watch", "create", "patch", "delete")),
    *(("", "pods", v) for v in ("list", "watch", "delete")),
    *((g, r, v) for g, r in (("", "services"), ("", "serviceaccounts"),
                             ("rbac.authorization.k8s.io", "roles"),
                             ("rbac.authorization.k8s.io", "rolebindings"),
                             ("autoscaling", "horizontalpodautoscalers"),
                             ("networking.k8s.io", "networkpolicies"),
                             ("keda.sh", "scaledobjects"),
                             ("policy", "poddisruptionbudgets"),
                             ("scheduling.k8s.io", "podgroups"))
      for v in ("list", "watch", "create", "patch", "delete")),
    ("", "nodes", "list"),
    ("", "nodes", "watch"),
    *(("discovery.k8s.io", "endpointslices", v) for v in ("get", "list", "watch")),
    ("", "events", "create"),
}  # fmt: skip


def flatten(docs: list[dict[str, Any]], kind: str) -> set[tuple[str, str, str]]:
    """The operator's own (Cluster)Role (the metrics API's roles are tested on their own)."""
    return {
        (group, resource, verb)
        for doc in docs
        if doc["kind"] == kind and doc["metadata"]["name"] == "rel-llmservice-operator"
        for rule in doc["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_operator_rules_are_exactly_the_reviewed_set() -> None:
    assert flatten(render(), "ClusterRole") == GRANTED
    assert flatten(render(scenario="namespaced"), "Role") == GRANTED


@pytest.mark.parametrize("scenario", ["default", "namespaced"])
def test_rules_grant_no_secrets_wildcards_or_escalation(scenario: str) -> None:
    for rule in rules_of(render(scenario=scenario)):
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        assert "secrets" not in rule["resources"], rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
        if rule["resources"] != ["llmservices/finalizers"]:
            assert "update" not in rule["verbs"], f"server-side apply needs patch: {rule}"


def test_metrics_scenario_renders_service_monitor_on_the_metrics_port() -> None:
    docs = render("--set", "metricsApi.enabled=false", scenario="metrics")
    monitor, service = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert service["spec"]["ports"][0]["port"] == 9191
    args = operator_args(docs)
    assert "--metrics-address=0.0.0.0:9191" in args


def test_metrics_disabled_means_no_service_and_no_endpoint() -> None:
    docs = render("--set", "metrics.enabled=false", "--set", "metricsApi.enabled=false")
    assert "Service" not in kinds(docs)
    args = operator_args(docs)
    assert "--metrics-address=" in args


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "resyncSeconds=soon"], "resyncSeconds"),
        (["--set", "workers=0"], "workers"),
        (["--set", "logLevel=trace"], "logLevel"),
        (["--set", "watchNamespaces=team-a"], "watchNamespaces"),
        (["--set-json", 'watchNamespaces=["Team_A"]'], "watchNamespaces"),
        (["--set-json", 'watchNamespaces=["a","a"]'], "watchNamespaces"),
        (["--set", "metrics.port=0"], "metrics/port"),
        (["--set", "metrics.enabled=yes-please"], "metrics/enabled"),
        (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set", "metric.enabled=true"], "metric"),
        (["--set", "metrics.serviceMonitor.interval=often"], "interval"),
        (["--set", "rbac.discovery=true"], "discovery"),  # removed: kopf scanning is off
        (["--set", "metricsApi.certificate.source=vault"], "source"),
        (["--set", "metricsApi.scrapeInterval=0"], "scrapeInterval"),
        (["--set", "image.digest=latest"], "digest"),
        (["--set", "imagePullSecrets[0].name=Reg_Cred"], "imagePullSecrets"),
        (["--set", "extraArgs=--verbose"], "extraArgs"),
    ],
)
def test_schema_rejects_wrong_values(flags: list[str], message: str) -> None:
    proc = helm("template", "rel", str(CHART), *flags, check=False)
    assert proc.returncode != 0, f"{flags} was accepted"
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--set", "metrics.enabled=false", "--set", "metrics.serviceMonitor.enabled=true"],
            "needs metrics.enabled=true",
        ),
        (["--set", "health.port=9090"], "give them different ports"),
        (
            ["--set", "replicaCount=2", "--set", "leaderElection.enabled=false"],
            "needs leaderElection.enabled=true",
        ),
        (["--set", "serviceAccount.create=false"], "set serviceAccount.name"),
        (["--set", "watchNamespaces={team-a}"], "set metricsApi.enabled=false"),
        (["--set", "metricsApi.port=8080"], "give it its own port"),
        (
            [
                "--set",
                "metrics.serviceMonitor.enabled=true",
                "--set",
                "metrics.serviceMonitor.scrapeTimeout=1m",
            ],
            "shorten the timeout",
        ),
    ],
)
def test_impossible_combinations_fail_with_what_to_change(flags: list[str], message: str) -> None:
    proc = helm("template", "rel", str(CHART), *flags, check=False)
    assert proc.returncode != 0, f"{flags} was accepted"
    assert message in proc.stderr, proc.stderr


def value_keys() -> list[tuple[str, bool, bool]]:
    """(dotted path, has its own `# --` comment, is under a commented key) per values.yaml key."""
    stack: list[tuple[int, str, bool]] = []  # (indent, path, commented here or above)
    out, commented = [], False
    for line in (CHART / "values.yaml").read_text().splitlines():
        if line.strip().startswith("# --"):
            commented = True
            continue
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        inherited = bool(stack) and stack[-1][2]
        path = ".".join([*(p for _, p, _ in stack[-1:]), match.group(2)])
        stack.append((indent, path, commented or inherited))
        out.append((path, commented, inherited))
        commented = False
    return out


def test_every_value_is_documented_in_values_and_readme() -> None:
    keys = value_keys()
    parents = {p.rsplit(".", 1)[0] for p, _, _ in keys if "." in p}
    bare = [p for p, own, under in keys if not (own or under or p in parents)]
    assert not bare, f"values without a `# --` comment: {bare}"
    readme = (CHART / "README.md").read_text().split("\n## Values\n", 1)[-1]
    table = set(re.findall(r"^\| `([\w.-]+)` \|", readme, flags=re.MULTILINE))
    missing = sorted(p for p, own, _ in keys if own and p not in table)
    assert not missing, f"values missing from the README table: {missing}"
    stale = sorted(table - {p for p, _, _ in keys})
    assert not stale, f"README documents values that do not exist: {stale}"


def test_notes_say_how_to_check_and_what_to_apply() -> None:
    proc = helm("install", "rel", str(CHART), "-n", "ops", "--dry-run=client")
    assert "rollout status deployment/rel-llmservice-operator" in proc.stdout
    assert "kubectl apply -n default -f examples/01-single-gpu.yaml" in proc.stdout
    assert "kubectl apply --server-side --force-conflicts -f" in proc.stdout  # CRD upgrade


@pytest.mark.parametrize(
    "flags", [(), ("--set", "nameOverride=llm", "--set", "fullnameOverride=x")]
)
def test_operator_pods_wear_the_labels_the_network_policies_admit(flags: tuple[str, ...]) -> None:
    """The rendered NetworkPolicies let the operator scrape /metrics by these pod labels."""
    from llmsvc.render.network import OPERATOR_POD_LABELS

    (deployment,) = [d for d in render(*flags) if d["kind"] == "Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels.items() >= OPERATOR_POD_LABELS.items()


def test_namespace_users_get_llmservices_through_the_built_in_roles() -> None:
    roles = {d["metadata"]["name"]: d for d in render() if d["kind"] == "ClusterRole"}
    edit, view = roles["rel-llmservice-operator-edit"], roles["rel-llmservice-operator-view"]
    assert edit["metadata"]["labels"][f"{AGGREGATE}edit"] == "true"
    assert edit["metadata"]["labels"][f"{AGGREGATE}admin"] == "true"
    assert view["metadata"]["labels"][f"{AGGREGATE}view"] == "true"
    assert {"create", "patch", "delete"} <= set(edit["rules"][0]["verbs"])
    assert set(view["rules"][0]["verbs"]) == {"get", "list", "watch"}
    for doc in (edit, view):
        assert all(r["apiGroups"] == ["llmsvc.io"] for r in doc["rules"])
    off = render("--set", "rbac.aggregateToDefaultRoles=false")
    assert [d["metadata"]["name"] for d in off if d["kind"] == "ClusterRole"] == [
        "rel-llmservice-operator"
    ]


def test_helm_test_hook_scrapes_the_operator_metrics_service() -> None:
    pod = one(render(), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert container["command"][-1] == (
        "http://rel-llmservice-operator-metrics.ops.svc:9090/metrics"
    )
    assert container["securityContext"]["runAsNonRoot"] is True
    assert "Pod" not in kinds(render("--set", "metrics.enabled=false"))


def test_pull_secrets_become_the_default_of_operator_created_pods() -> None:
    docs = render("--set", "imagePullSecrets[0].name=regcred", "--set",
                  "imagePullSecrets[1].name=mirror")  # fmt: skip
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    env = pod["containers"][0]["env"]
    assert {"name": "LLMSVC_IMAGE_PULL_SECRETS", "value": "regcred,mirror"} in env
    plain = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert all(e["name"] != "LLMSVC_IMAGE_PULL_SECRETS" for e in plain)


def test_digest_extra_args_env_spread_and_common_labels() -> None:
    digest = "sha256:" + "ab" * 32
    docs = render(
        "--set", f"image.digest={digest}", "--set", "extraArgs[0]=--restart-backoff-seconds=5",
        "--set", "extraEnv[0].name=HTTPS_PROXY", "--set", "extraEnv[0].value=http://proxy:3128",
        "--set", "topologySpreadConstraints[0].topologyKey=zone",
        "--set", "topologySpreadConstraints[0].maxSkew=1",
        "--set", "commonLabels.team=ml",
    )  # fmt: skip
    deploy = one(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    image = f"llmsvc/llmservice-operator@{digest}"
    assert container["image"] == image
    assert {"name": "LLMSVC_IMAGE", "value": image} in container["env"]
    assert container["args"][-1] == "--restart-backoff-seconds=5"
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in container["env"]
    assert pod["topologySpreadConstraints"] == [{"topologyKey": "zone", "maxSkew": 1}]
    assert all(d["metadata"]["labels"]["team"] == "ml" for d in docs)
    assert "team" not in deploy["spec"]["selector"]["matchLabels"]


def metrics_api_selector(docs: list[dict[str, Any]]) -> dict[str, str]:
    service = next(d for d in docs if d["metadata"]["name"].endswith("-metrics-api"))
    assert service["kind"] == "Service"
    return dict(service["spec"]["selector"])


def test_metrics_api_service_reaches_only_the_leader_pod() -> None:
    """With leader election only the Lease holder serves the metrics API: it labels its own pod
    and the Service selects that label (else the aggregator would reach standbys too)."""
    docs = render("--set", "replicaCount=2", "--set", "metricsApi.enabled=true")
    args = operator_args(docs)
    assert "--mark-leader-pod" in args
    assert metrics_api_selector(docs)["llmsvc.io/leader"] == "true"
    single = render("--set", "leaderElection.enabled=false", "--set", "metricsApi.enabled=true")
    assert "llmsvc.io/leader" not in metrics_api_selector(single)
    args = operator_args(single)
    assert "--mark-leader-pod" not in args
    plain = render("--set", "metricsApi.enabled=false")
    role = next(d for d in plain if d["kind"] == "Role")
    assert [r["resources"] for r in role["rules"]] == [["leases"]]  # no pod patch without it
    args = operator_args(plain)
    assert "--mark-leader-pod" not in args


def test_leader_election_lease_role_and_replicas() -> None:
    docs = render("--set", "replicaCount=2", "--set", "metricsApi.enabled=true")
    assert one(docs, "Deployment")["spec"]["replicas"] == 2
    role = next(d for d in docs if d["kind"] == "Role")
    assert role["metadata"] == {
        "name": "rel-llmservice-operator-leader-election", "namespace": "ops",
        "labels": role["metadata"]["labels"],
    }  # fmt: skip
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "verbs": ["get", "create", "update"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]},  # the leader's label
    ]  # fmt: skip
    env = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env
    namespace = {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert {"name": "POD_NAMESPACE", "valueFrom": namespace} in env
    single = render("--set", "leaderElection.enabled=false")
    assert one(single, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert "Role" not in kinds(single)
