// Package gitops checks how GitOps tools read LLMService health: Flux's kstatus library and
// Argo CD's Lua health check (on gopher-lua, the Lua runtime Argo CD embeds), both against
// statuses produced by the operator's real planner (testdata/statuses.json, written and kept in
// step by tests/plan/test_gitops_statuses.py).
package gitops

import (
	"encoding/json"
	"os"
	"testing"
)

// testCase is one situation: an LLMService as the API server serves it and the expected health.
type testCase struct {
	Name    string          `json:"name"`
	Kstatus string          `json:"kstatus"`
	ArgoCD  string          `json:"argocd"`
	Object  json.RawMessage `json:"object"`
}

// asMap decodes the object as plain JSON (numbers are float64), as Argo CD hands it to Lua.
func (c testCase) asMap(t *testing.T) map[string]any {
	t.Helper()
	var object map[string]any
	if err := json.Unmarshal(c.Object, &object); err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	return object
}

func loadCases(t *testing.T) []testCase {
	t.Helper()
	data, err := os.ReadFile("testdata/statuses.json")
	if err != nil {
		t.Fatalf("read fixtures: %v (run the Python tests first)", err)
	}
	var cases []testCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatalf("parse fixtures: %v", err)
	}
	if len(cases) < 5 {
		t.Fatalf("only %d cases in testdata/statuses.json", len(cases))
	}
	return cases
}
