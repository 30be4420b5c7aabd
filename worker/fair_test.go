package worker

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stevedore-dev/stevedore/schema"
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

// An org held back (its tasks fill its share of TASKS) is not picked; the
// others are.
func TestHeldOrgIsNotPicked(t *testing.T) {
	w := &Worker{cfg: Config{SpillEvery: 64, StealAbove: 16}}
	tn := &tenants{w: w, q: queue{perOrg: 1}, pending: map[string]uint64{"org_a": 5, "org_b": 5}, inflight: map[string]int{},
		cons: map[string]jetstream.Consumer{"org_a": nil, "org_b": nil}, order: []string{"org_a", "org_b"}}
	tn.hold = func(org string) bool { return org == "org_a" }
	for i := 0; i < 3; i++ {
		org, _ := tn.pick()
		if org == "org_a" {
			t.Fatal("a held org was picked")
		}
		if org == "org_b" {
			tn.done(org, false)
		}
	}
}

// With a share of one task, planning waits for each page's tasks to drain
// and the job still completes exactly.
func TestJobCompletesUnderATinyQueueShare(t *testing.T) {
	objects := map[string]string{}
	for i := 0; i < 9; i++ {
		objects[fmt.Sprintf("doc-%d.txt", i)] = fmt.Sprintf("document %d", i)
	}
	e := setup(t, objects, func(c *Config) { c.OrgTaskShare = 1; c.PageSize = 2; c.DiscoverEvery = 50 * time.Millisecond })
	e.submit(t, "job_share", false)
	if st := e.wait(t, "job_share"); st.Status != schema.JobStatusCompleted || st.FilesIndexed != 9 {
		t.Fatalf("status %+v", st)
	}
}
