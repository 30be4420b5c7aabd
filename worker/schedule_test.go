package worker

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/schedules"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/tick"
)

// runWorker runs one more worker on e's NATS and returns its stop.
func (e *env) runWorker(t *testing.T, name string) (stop func()) {
	t.Helper()
	broker, err := creds.New(creds.Config{STS: e.sts.Client(), OnHealth: RecordHealth(e.w.cfg.Registry, slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.w.cfg
	cfg.Broker, cfg.Registerer, cfg.Name = broker, nil, name
	w, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// A schedule firing every second on a fleet of three workers, one of which
// is stopped along the way: every tick the server published starts one
// sync (its ID is the tick's), each sync completes, and the schedule shows
// the last one. A tick that a newer one replaced before any worker took it
// starts none (the stream keeps one tick per collection), nor does one that
// comes while the last sync still runs: counted, not asserted away.
func TestScheduleStartsOneSyncPerTick(t *testing.T) {
	// A short AckWait: what the stopped worker had claimed (or a pull it
	// had asked for) comes back within seconds, not a minute.
	e := setup(t, map[string]string{"docs/a.txt": "A scheduled document.", "docs/b.txt": "Another one."},
		func(c *Config) { c.Topology = schema.Topology{AckWait: 2 * time.Second} })
	stopSecond := e.runWorker(t, "second")
	e.runWorker(t, "third")
	ctx := context.Background()
	store, err := schedules.Open(ctx, e.js, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Every tick the server stores, as it stores it.
	var mu sync.Mutex
	var ticks []string
	cons, err := e.js.OrderedConsumer(ctx, schema.StreamSchedules, jetstream.OrderedConsumerConfig{FilterSubjects: []string{schema.TickSubject(e.org.ID, "docs")}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, _ := m.Metadata()
		mu.Lock()
		defer mu.Unlock()
		name, _ := tick.Name(m, md.Sequence.Stream)
		ticks = append(ticks, tick.JobID(e.org.ID, "docs", name))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()

	job := e.syncJob("")
	if _, err := store.Set(ctx, &schedules.Schedule{Org: e.org.ID, Collection: "docs", Every: "1s", Job: job}); err != nil {
		t.Fatal(err)
	}
	j, err := jobs.Open(ctx, e.js, nil)
	if err != nil {
		t.Fatal(err)
	}
	syncs := func() map[string]*schema.JobStatus {
		page, err := j.List(ctx, e.org.ID, jobs.Filter{Collection: "docs", Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*schema.JobStatus{}
		for _, v := range page.Jobs {
			if strings.HasPrefix(v.JobID, "sync_") {
				out[v.JobID] = v.JobStatus
			}
		}
		return out
	}
	waitFor(t, func() bool { return len(syncs()) >= 2 })
	stopSecond()
	before := len(syncs())
	waitFor(t, func() bool { return len(syncs()) >= before+2 })
	waitFor(t, func() bool {
		sc, _, err := store.Get(ctx, e.org.ID, "docs")
		return err == nil && sc.LastSyncedAt != nil && sc.LastSync != nil && sc.LastSync.Status == schema.JobStatusCompleted && sc.NextSyncAt != nil
	})
	if err := store.Clear(ctx, e.org.ID, "docs"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		for _, st := range syncs() {
			if !st.Final() {
				return false
			}
		}
		return true
	})
	all := syncs()
	mu.Lock()
	seen := map[string]bool{}
	for _, id := range ticks {
		seen[id] = true
	}
	mu.Unlock()
	for id, st := range all {
		if !seen[id] {
			t.Errorf("sync %s has no tick", id)
		}
		if st.Status != schema.JobStatusCompleted || st.Schedule != "docs" || st.Sweep == nil || st.Sweep.Status != schema.SweepDone {
			t.Errorf("sync %s: %s, sweep %+v", id, st.Status, st.Sweep)
		}
	}
	t.Logf("%d ticks, %d syncs (%d ticks replaced by the next, or during a sync)", len(seen), len(all), len(seen)-len(all))
	if _, _, err := store.Get(ctx, e.org.ID, "docs"); err != schedules.ErrNotFound {
		t.Fatalf("cleared schedule: %v", err)
	}
}
