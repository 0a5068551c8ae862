"""The chart's PodMonitors, PrometheusRule and Grafana dashboard, and the metric names they use.

Every metric name in an alert or a dashboard query must be one the components really export:
the names are read from the PromQL expressions and compared with what the operator, the router and
the simulator (which exports vLLM's metric names) serve from their real registries. One name comes
from kube-state-metrics, which every kube-prometheus install runs; it is listed explicitly.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llmsvc.controller.metrics import OperatorMetrics
from llmsvc.router.app import REGISTRY as ROUTER_REGISTRY
from llmsvc.router.app import create_app as router_app
from llmsvc.router.config import RouterConfig
from llmsvc.router.discovery import StaticDiscovery
from llmsvc.sim.app import REGISTRY as SIM_REGISTRY
from llmsvc.sim.app import create_app as sim_app
from llmsvc.sim.engine import SimConfig
from tests.plan.test_gitops_statuses import CASES
from tests.test_chart import CHART, HELM, one, render

EXTERNAL = {"kube_pod_init_container_status_restarts_total"}  # kube-state-metrics
KEYWORDS = {"and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
ALL_ON = [
    "--set", "monitoring.podMonitors.enabled=true",
    "--set", "monitoring.prometheusRules.enabled=true",
    "--set", "monitoring.dashboard.enabled=true",
]  # fmt: skip
needs_helm = pytest.mark.skipif(not HELM.is_file(), reason=f"helm not built at {HELM}")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (not functions, labels, keywords or numbers)."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        follows = text[match.end() :].lstrip()[:1]
        if follows != "(" and match.group() not in KEYWORDS:
            names.add(match.group())
    return names


def _exposed(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def exported() -> set[str]:
    """Every series name the operator, a router and an engine (the vLLM simulator) serve."""
    operator = OperatorMetrics()
    operator.observe("ml", "llama", CASES["ready"][0]()["status"])
    router = router_app(RouterConfig(), StaticDiscovery([]))
    engine = sim_app(SimConfig())
    registries = [operator.registry, router[ROUTER_REGISTRY], engine[SIM_REGISTRY]]
    return set().union(*(_exposed(generate_latest(r).decode()) for r in registries))


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "dashboards" / "llmservice.json").read_text())
    return loaded


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


def test_expression_parser_finds_only_metric_names() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, namespace) (rate(vllm:ttft_bucket{a="x"}[5m])))'
        " > on (namespace) group_left() llmsvc_x and max without (pod) (up) > 0.5"
    )
    assert metric_names(expr) == {"vllm:ttft_bucket", "llmsvc_x", "up"}


def test_dashboard_queries_use_only_exported_metrics() -> None:
    names = set().union(*(metric_names(e) for e in dashboard_exprs()))
    assert {"vllm:num_requests_waiting", "llmsvc_operator_llmservice_ready_replicas"} <= names
    unknown = sorted(names - exported() - EXTERNAL)
    assert not unknown, f"dashboard uses metrics no component exports: {unknown}"


def test_dashboard_covers_what_an_llmservice_owner_watches() -> None:
    titles = " ".join(p["title"] for p in dashboard()["panels"]).lower()
    for topic in ("queue", "first token", "throughput", "ready groups", "restarts", "pull"):
        assert topic in titles, topic
    variables = [v["name"] for v in dashboard()["templating"]["list"]]
    assert variables == ["datasource", "namespace", "llmservice"]


@needs_helm
def test_alert_rules_use_only_exported_metrics() -> None:
    rule = one(render(*ALL_ON), "PrometheusRule")
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "LLMServiceGroupRestarting", "LLMServiceRestartBudgetExhausted",
        "LLMServiceQueueAboveTarget", "LLMServiceNoHealthyBackend", "LLMServicePullFailing",
    }  # fmt: skip
    names = set().union(*(metric_names(e) for e in alerts.values()))
    unknown = sorted(names - exported() - EXTERNAL)
    assert not unknown, f"alerts use metrics no component exports: {unknown}"
    assert "> 5" in alerts["LLMServiceQueueAboveTarget"]


@needs_helm
def test_monitoring_objects_render_behind_values() -> None:
    assert not [d for d in render() if d["kind"] in ("PodMonitor", "PrometheusRule", "ConfigMap")]
    docs = render(*ALL_ON)
    monitors = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PodMonitor"}
    engines = monitors["rel-llmservice-operator-engines"]["spec"]
    assert engines["selector"]["matchLabels"]["apps.kubernetes.io/pod-index"] == "0"
    assert engines["namespaceSelector"] == {"any": True}
    relabel = engines["podMetricsEndpoints"][0]["relabelings"][0]
    assert relabel["targetLabel"] == "llmservice"
    router = monitors["rel-llmservice-operator-routers"]["spec"]
    assert router["selector"]["matchLabels"]["app.kubernetes.io/component"] == "router"
    config_map = one(docs, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["llmservice.json"]) == dashboard()
