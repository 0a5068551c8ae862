"""The chart's PodMonitors, PrometheusRule and Grafana dashboard, and the metric names they use.

Every metric name in an alert or a dashboard query must be one the components really export:
the names are read from the PromQL expressions and compared with what the operator, the router,
the puller and the simulator (which exports vLLM's metric names) serve from their real registries.

The same names and the rendered rules are the fixtures of ``e2e/promrules`` (``make rules-test``),
which checks the rules and the dashboard's queries with Prometheus's own code (rulefmt and the
PromQL parser, as ``promtool check rules``). These tests keep the fixtures in step: they fail when
the files drift; ``--update-golden`` rewrites them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llmsvc.controller.metrics import OperatorMetrics
from llmsvc.puller.metrics import PullProgress
from llmsvc.router.app import REGISTRY as ROUTER_REGISTRY
from llmsvc.router.app import create_app as router_app
from llmsvc.router.config import RouterConfig
from llmsvc.router.discovery import StaticDiscovery
from llmsvc.sim.app import REGISTRY as SIM_REGISTRY
from llmsvc.sim.app import create_app as sim_app
from llmsvc.sim.engine import SimConfig
from tests.plan.test_gitops_statuses import CASES
from tests.test_chart import CHART, HELM, one, render

PROMRULES = Path(__file__).resolve().parents[1] / "e2e" / "promrules" / "testdata"
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


def _exposed(text: str) -> dict[str, set[str]]:
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for name in (family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))):
            series.setdefault(name, set())
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def exported() -> set[str]:
    """Every series name the operator, a router, a puller and an engine (the vLLM simulator)
    serve."""
    return set(exported_labels())


def exported_labels() -> dict[str, set[str]]:
    """Every series name they serve -> the label names it carries."""
    operator = OperatorMetrics()
    operator.observe("ml", "llama", CASES["ready"][0]()["status"])
    operator.observe_pulls("ml", "llama", {"done": 2})
    router = router_app(RouterConfig(), StaticDiscovery([]))
    engine = sim_app(SimConfig())
    puller = CollectorRegistry()
    puller.register(PullProgress())
    registries = [operator.registry, router[ROUTER_REGISTRY], engine[SIM_REGISTRY], puller]
    series: dict[str, set[str]] = {}
    for registry in registries:
        for name, labels in _exposed(generate_latest(registry).decode()).items():
            series.setdefault(name, set()).update(labels)
    return series


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
    unknown = sorted(names - exported())
    assert not unknown, f"dashboard uses metrics no component exports: {unknown}"


def test_dashboard_covers_what_an_llmservice_owner_watches() -> None:
    titles = " ".join(p["title"] for p in dashboard()["panels"]).lower()
    for topic in ("queue", "first token", "throughput", "ready groups", "restarts", "pull"):
        assert topic in titles, topic
    variables = [v["name"] for v in dashboard()["templating"]["list"]]
    assert variables == ["datasource", "namespace", "llmservice"]


LABEL_VALUES = re.compile(r"^label_values\((?P<expr>.+),\s*(?P<label>[a-zA-Z_]\w*)\)$")


def test_dashboard_variables_list_labels_the_metrics_carry() -> None:
    """Grafana's ``label_values(series, label)`` is not PromQL (make rules-test cannot parse it):
    its series must be exported and carry the label, or the variable's list stays empty."""
    queries = [v["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    assert len(queries) == 2
    labels = exported_labels()
    for query in queries:
        match = LABEL_VALUES.match(query)
        assert match, f"not a label_values(series, label) query: {query}"
        (name,) = metric_names(match["expr"])
        assert name in labels, f"{query}: no component exports {name}"
        assert match["label"] in labels[name], f"{query}: {name} has no label {match['label']}"


@needs_helm
def test_alert_rules_use_only_exported_metrics() -> None:
    rule = one(render(*ALL_ON), "PrometheusRule")
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "LLMServiceGroupRestarting", "LLMServiceRestartBudgetExhausted",
        "LLMServiceQueueAboveTarget", "LLMServiceNoHealthyBackend", "LLMServicePullFailing",
        "LLMServicePullStalled",
    }  # fmt: skip
    names = set().union(*(metric_names(e) for e in alerts.values()))
    unknown = sorted(names - exported())
    assert not unknown, f"alerts use metrics no component exports: {unknown}"
    assert "> 5" in alerts["LLMServiceQueueAboveTarget"]
    assert 'llmsvc_operator_llmservice_pulls{state="failed"}' in alerts["LLMServicePullFailing"]


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
    pulls = monitors["rel-llmservice-operator-pulls"]["spec"]
    assert pulls["selector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "llmservice-operator",
        "app.kubernetes.io/component": "engine",
    }  # every rank pulls, not only rank 0
    assert pulls["podMetricsEndpoints"][0]["port"] == "pull-metrics"
    config_map = one(docs, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["llmservice.json"]) == dashboard()


def _check(path: Path, text: str, update: bool) -> None:
    if update:
        path.write_text(text)
    assert path.read_text() == text, f"{path.name} drifted: rerun with --update-golden"


def test_metric_names_fixture_is_what_the_components_export(update_golden: bool) -> None:
    header = "# Written by tests/test_monitoring.py from the components' real registries.\n"
    _check(
        PROMRULES / "metrics.txt",
        header + "".join(f"{n}\n" for n in sorted(exported())),
        update_golden,
    )


@needs_helm
def test_rules_fixture_is_the_rendered_prometheusrule(update_golden: bool) -> None:
    """``testdata/rules.yaml``: the PrometheusRule's spec, a Prometheus rules file."""
    spec = one(render(*ALL_ON), "PrometheusRule")["spec"]
    header = (
        "# Written by tests/test_monitoring.py from `helm template` (the PrometheusRule's spec).\n"
    )
    _check(PROMRULES / "rules.yaml", header + yaml.safe_dump(spec, sort_keys=False), update_golden)
