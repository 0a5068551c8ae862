// Package promrules checks the chart's alert rules and the Grafana dashboard's queries with
// Prometheus's own code: rulefmt (what `promtool check rules` runs: YAML schema, durations, label
// and annotation templates, PromQL) and the PromQL parser, then that every metric a query reads
// is one the components export (testdata/metrics.txt, written from their real registries by
// tests/test_monitoring.py, which also writes testdata/rules.yaml from `helm template`).
package promrules

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// promParser is configured as promtool's (default options).
var promParser = parser.NewParser(parser.Options{})

// MetricNames are the metric names an expression selects, sorted.
func MetricNames(expr parser.Expr) []string {
	seen := map[string]bool{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			seen[selectorName(vs)] = true
		}
		return nil
	})
	names := make([]string, 0, len(seen))
	for name := range seen {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// selectorName is the name of `name{...}` or of `{__name__="name"}`, or "" without one.
func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// CheckExpr parses one PromQL expression and checks that it reads only known metrics.
func CheckExpr(expr string, known map[string]bool) error {
	parsed, err := promParser.ParseExpr(expr)
	if err != nil {
		return err
	}
	var unknown []string
	for _, name := range MetricNames(parsed) {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("metrics no component exports: %s (export them or fix the query)",
			strings.Join(unknown, ", "))
	}
	return nil
}

// CheckRules validates a Prometheus rules file as `promtool check rules` does (rulefmt with
// unknown fields rejected, UTF-8 names, promtool's parser; duplicate rules) and checks each
// rule's metrics.
func CheckRules(content []byte, known map[string]bool) []error {
	logger := slog.New(slog.DiscardHandler)
	groups, errs := rulefmt.Parse(content, false, model.UTF8Validation, promParser, logger)
	if len(errs) > 0 {
		return errs
	}
	if len(groups.Groups) == 0 {
		return []error{fmt.Errorf("no rule groups")}
	}
	seen := map[string]bool{}
	for _, group := range groups.Groups {
		for _, rule := range group.Rules {
			name := rule.Alert + rule.Record
			key := group.Name + "/" + name + "/" + labels.FromMap(rule.Labels).String()
			if seen[key] {
				errs = append(errs, fmt.Errorf("group %q: duplicate rule %q", group.Name, name))
			}
			seen[key] = true
			if err := CheckExpr(rule.Expr, known); err != nil {
				errs = append(errs, fmt.Errorf("group %q, rule %q: %w", group.Name, name, err))
			}
		}
	}
	return errs
}

// DashboardExprs are the PromQL expressions of every panel target of a Grafana dashboard, keyed
// by "panel title #n".
func DashboardExprs(content []byte) (map[string]string, error) {
	var dashboard struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(content, &dashboard); err != nil {
		return nil, err
	}
	exprs := map[string]string{}
	for _, panel := range dashboard.Panels {
		for i, target := range panel.Targets {
			exprs[fmt.Sprintf("%s #%d", panel.Title, i+1)] = target.Expr
		}
	}
	return exprs, nil
}

// LoadNames reads one metric name per line ('#' starts a comment).
func LoadNames(path string) (map[string]bool, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	names := map[string]bool{}
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		line := strings.TrimSpace(strings.SplitN(scanner.Text(), "#", 2)[0])
		if line != "" {
			names[line] = true
		}
	}
	return names, scanner.Err()
}
