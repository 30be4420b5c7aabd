package runner

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestFairnessMetrics: the turn-taking is reported without per-org series.
func TestFairnessMetrics(t *testing.T) {
	tn := &turns{pending: map[string]uint64{"org_a": 900, "org_b": 1, "org_c": 0}, inflight: map[string]int{"org_a": 6, "org_b": 2, "org_c": 0}}
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
	r := &Runner{cfg: Config{SpillEvery: 64, StealAbove: 16}}
	tn := newTurns(r, &Queue{PerOrg: 1}, nil, nil)
	tn.pending["org_a"], tn.pending["org_b"] = 5, 5
	tn.cons["org_a"], tn.cons["org_b"] = nil, nil
	tn.order = []string{"org_a", "org_b"}
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

// An org that starts waiting is served at the next pick, not after a turn
// of every org already waiting; orgs that keep waiting then take turns.
func TestNewcomerIsServedNext(t *testing.T) {
	r := &Runner{cfg: Config{SpillEvery: 64, StealAbove: 16}}
	tn := newTurns(r, &Queue{PerOrg: 1, Slots: 1}, nil, nil)
	for i := 0; i < 100; i++ {
		org := fmt.Sprintf("org_%03d", i)
		tn.pending[org], tn.cons[org] = 1000, nil
		tn.order = append(tn.order, org)
	}
	picks := map[string]int{}
	next := func() string {
		org, _ := tn.pick()
		tn.done(org, false)
		picks[org]++
		return org
	}
	for i := 0; i < 250; i++ { // two and a half turns
		next()
	}
	for org, n := range picks {
		if n < 2 || n > 3 {
			t.Fatalf("%s was picked %d times in 250 picks of 100 waiting orgs", org, n)
		}
	}
	tn.pending["org_new"], tn.cons["org_new"] = 1, nil
	tn.order = append(tn.order, "org_new")
	if org := next(); org != "org_new" {
		t.Fatalf("picked %s, not the org that just started waiting", org)
	}
	// Its credit is one message: with more waiting it takes turns.
	tn.pending["org_new"] = 1000
	for i := 0; i < 50; i++ {
		if next() == "org_new" {
			t.Fatalf("org_new picked again within half a turn (pick %d)", i)
		}
	}
	// A flood of orgs that each start waiting before every pick takes at
	// most every other pick: the orgs waiting all along are not starved.
	flood := 0
	for i := 0; i < 200; i++ {
		org := fmt.Sprintf("org_flood_%03d", i)
		tn.pending[org], tn.cons[org] = 1, nil
		tn.order = append(tn.order, org)
		if picked := next(); strings.HasPrefix(picked, "org_flood_") {
			flood++
			tn.pending[picked] = 0
		}
	}
	if flood > 100 {
		t.Fatalf("newcomers took %d of 200 picks; the waiting orgs were starved", flood)
	}
}
