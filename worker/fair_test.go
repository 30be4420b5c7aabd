package worker

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestFairnessMetrics: the turn-taking is reported without per-org series.
func TestFairnessMetrics(t *testing.T) {
	tn := &tenants{pending: map[string]uint64{"org_a": 900, "org_b": 1, "org_c": 0}, inflight: map[string]int{"org_a": 6, "org_b": 2, "org_c": 0}}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(tn)
	want := `
# HELP stevedore_fair_busiest_org_share Share of this worker's tasks in flight held by its busiest org (0–1); at most the tenant concurrency's share while others wait.
# TYPE stevedore_fair_busiest_org_share gauge
stevedore_fair_busiest_org_share 0.75
# HELP stevedore_fair_orgs_in_flight Orgs with at least one task in flight in this worker.
# TYPE stevedore_fair_orgs_in_flight gauge
stevedore_fair_orgs_in_flight 2
# HELP stevedore_fair_orgs_with_tasks Orgs this worker last saw with tasks waiting.
# TYPE stevedore_fair_orgs_with_tasks gauge
stevedore_fair_orgs_with_tasks 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
