package worker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

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
					return e.w.runner.Live() == 2 && second.runner.Live() == 2
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
