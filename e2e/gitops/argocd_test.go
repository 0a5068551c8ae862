package gitops

import (
	"os"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

const healthKey = "resource.customizations.health.llmsvc.io_LLMService"

// toLua converts decoded JSON the way Argo CD hands objects to health scripts: maps become
// tables, arrays 1-based tables, numbers LNumber.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case map[string]any:
		table := l.NewTable()
		for key, item := range v {
			table.RawSetString(key, toLua(l, item))
		}
		return table
	case []any:
		table := l.NewTable()
		for i, item := range v {
			table.RawSetInt(i+1, toLua(l, item))
		}
		return table
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}

// runHealth runs the script with only the libraries Argo CD opens for health checks.
func runHealth(t *testing.T, script string, object map[string]any) (string, string) {
	t.Helper()
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable,
		lua.StringLibName: lua.OpenString, lua.MathLibName: lua.OpenMath,
	} {
		l.Push(l.NewFunction(open))
		l.Push(lua.LString(name))
		l.Call(1, 0)
	}
	l.SetGlobal("obj", toLua(l, object))
	if err := l.DoString(script); err != nil {
		t.Fatalf("the health check raised an error (Argo CD would show Unknown): %v", err)
	}
	result, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("the health check returned %s, not a table", l.Get(-1).Type())
	}
	return result.RawGetString("status").String(), result.RawGetString("message").String()
}

func readScript(t *testing.T) string {
	t.Helper()
	script, err := os.ReadFile("health.lua")
	if err != nil {
		t.Fatal(err)
	}
	return string(script)
}

func TestArgoCDHealthReadsPlannerStatuses(t *testing.T) {
	script := readScript(t)
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			got, message := runHealth(t, script, c.asMap(t))
			if got != c.ArgoCD {
				t.Errorf("Argo CD health %s (%q), want %s", got, message, c.ArgoCD)
			}
			if message == "" && got != "Healthy" {
				t.Errorf("%s without a message", got)
			}
		})
	}
}

func TestArgoCDHealthSurvivesMissingFields(t *testing.T) {
	script := readScript(t)
	for name, object := range map[string]map[string]any{
		"no status":        {"metadata": map[string]any{"generation": 1.0}},
		"no metadata":      {"status": map[string]any{"observedGeneration": 1.0}},
		"conditions blank": {"metadata": map[string]any{}, "status": map[string]any{"observedGeneration": 1.0, "conditions": []any{map[string]any{}, "x"}}},
	} {
		if got, _ := runHealth(t, script, object); got != "Progressing" {
			t.Errorf("%s: %s, want Progressing", name, got)
		}
	}
}

func TestConfigMapSnippetShipsTheTestedScript(t *testing.T) {
	data, err := os.ReadFile("../../docs/argocd/argocd-cm-llmservice-health.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data[healthKey] != readScript(t) {
		t.Errorf("docs/argocd/argocd-cm-llmservice-health.yaml differs from e2e/gitops/health.lua")
	}
}
