//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/scripts/stack"
)

// TestPrometheusFindsEveryMetric scrapes `stevedore dev` (with the SQS
// bridge, after one index job) with a real Prometheus (the pinned build of
// scripts/tools.sh) loading deploy/prometheus/stevedore-rules.yml, and
// requires every metric the rules and the Grafana dashboard use to be among
// the series it stored, and every rule to load and evaluate without error.
func TestPrometheusFindsEveryMetric(t *testing.T) {
	t.Parallel() // mostly waits on its own stack: runs beside the others that do (package doc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, org, dir := startOnboarded(t, ctx, "Prometheus", stack.WithSQS())
	job := indexFile(t, ctx, s, org, "/v2/collections/prom/index/s3/directory", map[string]any{"directory_path": "licenses/"})
	if st, err := s.WaitJob(ctx, org, job, nil); err != nil || st.Status != schema.JobStatusCompleted {
		t.Fatalf("job %+v %v", st, err)
	}

	out, err := exec.Command(filepath.Join(s.Root, "scripts", "tools.sh"), "prometheus").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin := strings.TrimSpace(string(out))
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("prometheus is not built (%v): run scripts/tools.sh build (make test does)", err)
	}
	rules := filepath.Join(s.Root, "deploy", "prometheus", "stevedore-rules.yml")
	target := strings.TrimPrefix(s.Metric, "http://")
	config := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: stevedore-dev
    static_configs: [{targets: [%q]}]
`, rules, target)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	api := "http://127.0.0.1:" + strconv.Itoa(port)
	p, err := stack.StartProc("prometheus", dir, bin, os.Environ(), "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	waitHTTP(t, api+"/-/ready")

	// The names the rules and the dashboard use.
	want := map[string]bool{}
	metric := regexp.MustCompile(`\bstevedore_[a-z0-9_]+`)
	for _, f := range []string{rules, filepath.Join(s.Root, "deploy", "grafana", "stevedore.json")} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metric.FindAllString(string(data), -1) {
			want[m] = true
		}
	}
	var missing []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		names := map[string]bool{}
		var resp struct {
			Data []string `json:"data"`
		}
		if err := getJSON(api+"/api/v1/label/__name__/values", &resp); err == nil {
			for _, n := range resp.Data {
				names[n] = true
			}
		}
		missing = missing[:0]
		for m := range want {
			if !names[m] {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Fatalf("Prometheus has no series of %d metrics the rules or the dashboard use: %v", len(missing), missing)
	}
	found := make([]string, 0, len(want))
	for m := range want {
		found = append(found, m)
	}
	slices.Sort(found)

	// Every rule loaded and evaluated.
	var rulesResp struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	var healthy int
	for time.Now().Before(deadline.Add(30 * time.Second)) {
		healthy = 0
		if err := getJSON(api+"/api/v1/rules", &rulesResp); err != nil {
			t.Fatal(err)
		}
		var bad []string
		for _, g := range rulesResp.Data.Groups {
			for _, r := range g.Rules {
				switch r.Health {
				case "ok":
					healthy++
				case "err":
					bad = append(bad, r.Name+": "+r.LastError)
				}
			}
		}
		if len(bad) > 0 {
			t.Fatalf("rules failing in Prometheus: %v", bad)
		}
		if healthy >= 13 {
			break
		}
		time.Sleep(time.Second)
	}
	if healthy < 13 {
		t.Fatalf("%d rules evaluated ok, want 13", healthy)
	}
	report := fmt.Sprintf("prometheus: a real Prometheus scraping stevedore dev stored all %d metrics the rules and dashboard use (%s); %d rules evaluated ok",
		len(found), strings.Join(found, ", "), healthy)
	t.Log(report)
	appendReport(report)
}

func getJSON(u string, v any) error {
	if _, err := url.Parse(u); err != nil {
		return err
	}
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
