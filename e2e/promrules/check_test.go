package promrules

import (
	"os"
	"strings"
	"testing"
)

const dashboardPath = "../../charts/llmservice-operator/dashboards/llmservice.json"

func known(t *testing.T) map[string]bool {
	t.Helper()
	names, err := LoadNames("testdata/metrics.txt")
	if err != nil {
		t.Fatalf("%v (run tests/test_monitoring.py first)", err)
	}
	if len(names) < 20 {
		t.Fatalf("only %d metric names in testdata/metrics.txt", len(names))
	}
	return names
}

func TestChartRulesPassPromtoolChecks(t *testing.T) {
	content, err := os.ReadFile("testdata/rules.yaml")
	if err != nil {
		t.Fatalf("%v (run tests/test_monitoring.py first)", err)
	}
	if !strings.Contains(string(content), "alert: LLMServicePullFailing") {
		t.Fatalf("testdata/rules.yaml lacks the chart's alerts")
	}
	for _, err := range CheckRules(content, known(t)) {
		t.Error(err)
	}
}

func TestDashboardQueriesParseAndUseExportedMetrics(t *testing.T) {
	content, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	exprs, err := DashboardExprs(content)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d queries in the dashboard", len(exprs))
	}
	names := known(t)
	for where, expr := range exprs {
		if err := CheckExpr(expr, names); err != nil {
			t.Errorf("%s: %q: %v", where, expr, err)
		}
	}
}

// The checker must be able to fail: broken rules and unknown metrics are reported.
func TestBrokenRulesAreReported(t *testing.T) {
	names := map[string]bool{"up": true}
	cases := map[string]string{
		"unbalanced parenthesis": "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: sum(rate(up[5m])\n",
		"unknown metric":         "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(llmsvc_no_such_metric_total[5m]) > 0\n",
		"bad duration":           "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    for: ten minutes\n",
		"bad template":           "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    annotations:\n      summary: '{{ $labels.x '\n",
		"unknown field":          "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    severity: page\n",
		"alert and record":       "groups:\n- name: g\n  rules:\n  - alert: A\n    record: a:b\n    expr: up\n",
		"duplicate rule":         "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n  - alert: A\n    expr: up == 0\n",
		"no groups":              "groups: []\n",
	}
	for name, content := range cases {
		if errs := CheckRules([]byte(content), names); len(errs) == 0 {
			t.Errorf("%s: no error reported", name)
		}
	}
	good := "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    for: 5m\n"
	if errs := CheckRules([]byte(good), names); len(errs) != 0 {
		t.Errorf("a valid rule was rejected: %v", errs)
	}
}

func TestUnknownMetricInAQueryIsNamed(t *testing.T) {
	names := map[string]bool{"vllm:num_requests_waiting": true}
	err := CheckExpr(`sum by (x) (vllm:num_requests_waiting) + on () {__name__="llmsvc_gone"}`, names)
	if err == nil || !strings.Contains(err.Error(), "llmsvc_gone") {
		t.Fatalf("want an error naming llmsvc_gone, got %v", err)
	}
	if err := CheckExpr(`sum(rate(vllm:num_requests_waiting{a="$namespace"}[5m]`, names); err == nil {
		t.Fatal("a syntax error passed")
	}
	if err := CheckExpr(`max_over_time(vllm:num_requests_waiting[5m:1m])`, names); err != nil {
		t.Fatalf("a subquery over a known metric: %v", err)
	}
}
