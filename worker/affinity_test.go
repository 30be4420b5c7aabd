package worker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// Every worker computes the same order: for each org exactly one worker
// ranks first and the ranks are a permutation; orgs spread evenly; a worker
// leaving moves only its own orgs.
func TestRendezvousRanks(t *testing.T) {
	var workers []string
	for i := 0; i < 10; i++ {
		workers = append(workers, fmt.Sprintf("host-%d-worker-%d", i, 1000+i))
	}
	home := func(org string, ws []string) string {
		for _, w := range ws {
			if rendezvousRank(org, w, ws) == 0 {
				return w
			}
		}
		return ""
	}
	homes := map[string]int{}
	before := map[string]string{}
	for o := 0; o < 5000; o++ {
		org := fmt.Sprintf("org_%016x", o*7919)
		var ranks []int
		for _, w := range workers {
			ranks = append(ranks, rendezvousRank(org, w, workers))
		}
		slices.Sort(ranks)
		for i, r := range ranks {
			if r != i {
				t.Fatalf("%s: ranks %v are not a permutation", org, ranks)
			}
		}
		before[org] = home(org, workers)
		homes[before[org]]++
	}
	for w, n := range homes {
		if n < 400 || n > 600 { // 500 expected of 5,000 orgs on 10 workers
			t.Errorf("%s is home to %d orgs", w, n)
		}
	}
	gone := workers[3]
	rest := slices.Delete(slices.Clone(workers), 3, 4)
	moved := 0
	for org, h := range before {
		now := home(org, rest)
		if h != gone && now != h {
			t.Fatalf("%s moved from %s to %s though %s is still live", org, h, now, h)
		}
		if h == gone {
			moved++
		}
	}
	if moved != homes[gone] {
		t.Fatalf("moved %d, want %d", moved, homes[gone])
	}
}

// An org is served by one worker until its backlog spills over, one more
// worker per SpillEvery waiting tasks.
func TestServesGrowsWithBacklog(t *testing.T) {
	workers := []string{"a", "b", "c", "d"}
	serving := func(pending uint64) int {
		n := 0
		for _, w := range workers {
			f := &fleet{self: w, live: workers}
			if f.serves("org_x", pending, 64) {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		pending uint64
		want    int
	}{{0, 1}, {1, 1}, {63, 1}, {64, 2}, {130, 3}, {100_000, 4}} {
		if got := serving(c.pending); got != c.want {
			t.Errorf("%d waiting: %d workers serve, want %d", c.pending, got, c.want)
		}
	}
	if !(*fleet)(nil).serves("org_x", 0, 64) {
		t.Error("without affinity a worker must serve every org")
	}
}

// Two workers: a small job's tasks all go to the org's home worker (so its
// sessions are assumed there only); with NoAffinity both take tasks.
func TestSmallJobStaysOnItsHomeWorker(t *testing.T) {
	objects := map[string]string{}
	for i := 0; i < 12; i++ { // under StealAbove: the other worker does not help
		objects[fmt.Sprintf("doc-%02d.txt", i)] = fmt.Sprintf("document %d", i)
	}
	for _, affinity := range []bool{true, false} {
		t.Run(fmt.Sprintf("affinity=%v", affinity), func(t *testing.T) {
			regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
			e := setup(t, objects, func(c *Config) { c.Registerer = regs[0]; c.NoAffinity = !affinity; c.PageSize = 100 })
			second := e.startWorker(t, func(c *Config) { c.Registerer = regs[1]; c.NoAffinity = !affinity })
			if affinity { // both see both before the job, or both could think they serve the org
				waitFor(t, func() bool {
					a, b := e.w.fleet.Load(), second.fleet.Load()
					return a != nil && b != nil && a.size() == 2 && b.size() == 2
				})
			}
			e.submit(t, "job_home", false)
			if st := e.wait(t, "job_home"); st.Status != schema.JobStatusCompleted || st.FilesIndexed != 12 {
				t.Fatalf("status %+v", st)
			}
			var claimed []float64
			for _, r := range regs {
				n, err := testutil.GatherAndCount(r, "stevedore_messages_claimed_total")
				if err != nil || n == 0 {
					t.Fatalf("metrics: %v", err)
				}
				mf, _ := r.Gather()
				for _, f := range mf {
					if f.GetName() == "stevedore_messages_claimed_total" {
						for _, m := range f.GetMetric() {
							for _, l := range m.GetLabel() {
								if l.GetName() == "stage" && l.GetValue() == "task" {
									claimed = append(claimed, m.GetCounter().GetValue())
								}
							}
						}
					}
				}
			}
			t.Logf("tasks claimed per worker: %v", claimed)
			if affinity && (slices.Min(claimed) != 0 || slices.Max(claimed) != 12) {
				t.Fatalf("tasks claimed per worker %v: want all 12 on the org's home", claimed)
			}
		})
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startWorker runs one more worker on e's NATS and registry, with its own
// credential broker (as another process would have).
func (e *env) startWorker(t *testing.T, opts ...func(*Config)) *Worker {
	t.Helper()
	broker, err := creds.New(creds.Config{STS: e.sts.Client(), OnHealth: RecordHealth(e.w.cfg.Registry, slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.w.cfg
	cfg.Broker, cfg.Registerer, cfg.Name = broker, nil, "second"
	for _, o := range opts {
		o(&cfg)
	}
	w, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return w
}
