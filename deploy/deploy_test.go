package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// promtool is the pinned promtool that scripts/tools.sh builds.
func promtool(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../scripts/tools.sh", "promtool").Output()
	if err != nil {
		t.Fatal(err)
	}
	path := strings.TrimSpace(string(out))
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("promtool is not built (%v): run scripts/tools.sh build (make test does)", err)
	}
	return path
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestAlertRules: promtool checks the rules and runs their unit tests.
func TestAlertRules(t *testing.T) {
	pt := promtool(t)
	t.Log(run(t, pt, "check", "rules", "prometheus/stevedore-rules.yml"))
	t.Log(run(t, pt, "test", "rules", "prometheus/stevedore-rules.test.yml"))
}

// dashboardQueries returns every query of the Grafana dashboard, by panel.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("grafana/stevedore.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			out[fmt.Sprintf("%s #%d", p.Title, i)] = tg.Expr
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d queries in the dashboard", len(out))
	}
	return out
}

// grafanaVars replaces Grafana's range variables by durations, as Grafana
// does before it sends a query.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "$__interval", "1m", "$namespace", ".*", "$cluster", ".*")

// TestDashboardQueries parses every dashboard query with Prometheus's own
// parser: each becomes a recording rule of a file promtool checks.
func TestDashboardQueries(t *testing.T) {
	pt := promtool(t)
	queries := dashboardQueries(t)
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	names := make([]string, 0, len(queries))
	for name := range queries {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		expr, _ := json.Marshal(grafanaVars.Replace(queries[name])) // a JSON string is a YAML string
		fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %s\n", i, expr)
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log(run(t, pt, "check", "rules", file))
}

var metricRE = regexp.MustCompile(`\bstevedore_[a-z0-9_]+`)

// registered returns the metric names the code registers: the
// "stevedore_…" literals given as a metric's Name or to NewDesc in the
// non-test Go files (not any string: KV bucket names share the prefix).
func registered(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	lit := regexp.MustCompile(`(?:Name:\s*|NewDesc\()"(stevedore_[a-z0-9_]+)"`)
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == ".stevedore" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestMetricsExist: every stevedore metric the rules and the dashboard name
// is one the code registers (a renamed metric would silence an alert).
func TestMetricsExist(t *testing.T) {
	have := registered(t)
	rules, err := os.ReadFile("prometheus/stevedore-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]string{}
	for _, m := range metricRE.FindAllString(string(rules), -1) {
		used[m] = "rules"
	}
	for panel, q := range dashboardQueries(t) {
		for _, m := range metricRE.FindAllString(q, -1) {
			used[m] = "dashboard panel " + panel
		}
	}
	for m, where := range used {
		base := m
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suffix); ok && have[b] {
				base = b
			}
		}
		if !have[base] {
			t.Errorf("%s (in the %s) is not a metric the code registers", m, where)
		}
	}
	if len(used) < 15 {
		t.Fatalf("only %d metrics used: %v", len(used), used)
	}
}

// TestRunbookCoversEveryAlert: each alert has its runbook section, and the
// link in its annotation points at it.
func TestRunbookCoversEveryAlert(t *testing.T) {
	rules, err := os.ReadFile("prometheus/stevedore-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	book, err := os.ReadFile("RUNBOOK.md")
	if err != nil {
		t.Fatal(err)
	}
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\w+)$`).FindAllStringSubmatch(string(rules), -1)
	if len(alerts) < 10 {
		t.Fatalf("only %d alerts", len(alerts))
	}
	for _, a := range alerts {
		name := a[1]
		if !strings.Contains(string(book), "\n### "+name+"\n") {
			t.Errorf("RUNBOOK.md has no section %q", name)
		}
		if !strings.Contains(string(rules), "deploy/RUNBOOK.md#"+strings.ToLower(name)) {
			t.Errorf("alert %s does not link its runbook section", name)
		}
	}
}

// TestDashboardIsScoped: every series a dashboard query selects is
// filtered by the dashboard's namespace and cluster variables, so one
// Grafana shows one deployment at a time (both default to all, which also
// matches series without the label, as docker compose's have).
func TestDashboardIsScoped(t *testing.T) {
	selector := regexp.MustCompile(`stevedore_[a-z0-9_]+(\{[^}]*\})?`)
	for name, q := range dashboardQueries(t) {
		for _, sel := range selector.FindAllString(q, -1) {
			if !strings.Contains(sel, `namespace=~"$namespace"`) || !strings.Contains(sel, `cluster=~"$cluster"`) {
				t.Errorf("%s: %s is not scoped by $namespace and $cluster", name, sel)
			}
		}
	}
}
