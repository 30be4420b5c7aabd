//go:build sim

package sim

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker"
)

// listLatency is a realistic ListObjectsV2 of 1,000 keys.
const listLatency = 50 * time.Millisecond

// TestPlanningHugeBucket measures planning a big bucket in lanes: N keys
// (1,000,000 in `make sim`, 20,000 in the smoke) behind 50 ms per LIST,
// on 4 workers. The objects' GETs hang (10 s), so what is measured is the
// listing and the publishing of its tasks: keys planned per second, and
// against one lane (the LISTs one after another cannot beat 1,000 keys per
// 50 ms = 20,000 keys/s). Then the window: with the org's share of TASKS
// (OrgTaskShare) set to a tenth of the bucket, planning pauses at it, and
// TASKS never holds much more than it (a page per planning slot).
func TestPlanningHugeBucket(t *testing.T) {
	keys := size(1_000_000, 20_000)
	var e *env
	if os.Getenv("STEVEDORE_SIM_NATS") == "process" {
		e = newProcessEnv(t, 1) // the production shape: NATS's heap and GC its own
	} else {
		e = newEnv(t, 1)
	}
	tn := e.orgs[0]
	for i := range keys {
		e.s3.Put(tn.bucket, fmt.Sprintf("big/obj-%07d.txt", i), "x")
	}
	e.s3.ListLatency.Store(int64(listLatency))
	e.s3.GetLatency.Store(int64(10 * time.Second))
	ctx := context.Background()
	tasks, err := e.js.Stream(ctx, schema.StreamTasks)
	if err != nil {
		t.Fatal(err)
	}
	depth := func() uint64 {
		info, err := tasks.Info(ctx)
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	// sample follows TASKS' depth until stop, keeping its peak.
	sample := func() (peak *atomic.Uint64, stop func()) {
		peak = new(atomic.Uint64)
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if d := depth(); d > peak.Load() {
					peak.Store(d)
				}
				select {
				case <-done:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
		return peak, func() { close(done); wg.Wait() }
	}
	ceiling := publishCeiling(t, e, min(keys, 200_000))
	configure := func(share int) func(*worker.Config) {
		return func(c *worker.Config) { c.TaskConcurrency, c.OrgTaskShare, c.ShutdownGrace = 1, share, time.Second }
	}

	stop := e.fleet(4, 1000, configure(2*keys))
	peak, stopSampling := sample()
	lists0, start, cpu0 := e.s3.Lists.Load(), time.Now(), e.cpu()
	e.submit(tn, "big", "big/")
	planned := func(st *schema.JobStatus) bool { return st.Planned() }
	e.until([]string{"big"}, planned, 30*time.Minute)
	took := time.Since(start)
	busy := (e.cpu() - cpu0).Seconds() / took.Seconds()
	stopSampling()
	st, _, err := e.jobs.Get(ctx, tn.org.ID, "big")
	if err != nil {
		t.Fatal(err)
	}
	if st.FilesTotal != int64(keys) {
		t.Fatalf("planned %d of %d keys", st.FilesTotal, keys)
	}
	if _, err := e.jobs.Cancel(ctx, tn.org.ID, "big"); err != nil {
		t.Fatal(err)
	}
	stop()
	rate := float64(keys) / took.Seconds()
	logf(t, "planning: a page took %s on average (its publish %s), its claim %s; %.2f cores busy (workers, NATS and the fakes)",
		e.meanDuration("stevedore_message_duration_seconds", "plan"), e.meanDuration("stevedore_publish_duration_seconds", ""), e.meanDuration("stevedore_claim_duration_seconds", "plan"), busy)
	logf(t, "planning: %d keys, LIST %s, 4 workers: %s = %.0f keys/s (%.1f × one lane's 20,000; %.0f%% of the same run's publish ceiling, %.0f tasks/s), %d LISTs over %d lanes, TASKS peak %d, RSS %d MiB",
		keys, listLatency, took.Round(100*time.Millisecond), rate, rate/20_000, 100*rate/ceiling, ceiling, e.s3.Lists.Load()-lists0, st.LanesDone, peak.Load(), rssMiB())

	// The window: a second job over the same keys with a tenth as the
	// org's share of TASKS, after the first's tasks are purged.
	if err := tasks.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	window := keys / 10
	stop = e.fleet(4, 1000, configure(window))
	defer stop()
	peak, stopSampling = sample()
	e.submit(tn, "windowed", "big/")
	// Planning reaches the window, then pauses: the total stops growing
	// short of the bucket (the tasks hang in their GETs, so nothing drains).
	e.until([]string{"windowed"}, func(st *schema.JobStatus) bool { return st.FilesTotal >= int64(window) }, 10*time.Minute)
	var last int64
	for steady := 0; steady < 20; time.Sleep(250 * time.Millisecond) {
		st, _, err := e.jobs.Get(ctx, tn.org.ID, "windowed")
		if err != nil {
			t.Fatal(err)
		}
		if st.FilesTotal > 0 && st.FilesTotal == last {
			steady++
		} else {
			steady = 0
		}
		last = st.FilesTotal
	}
	stopSampling()
	// Past the window: the pages 4 workers had claimed for the org when the
	// hold began, and a page per worker whose count had not reached the
	// hold yet (the workers learn of stored tasks from wake-up messages,
	// sent once a page's publishes are acknowledged: a worker that has just
	// finished a page may claim the next before its own wake-up arrives).
	slack := uint64(4 * (worker.PlanPerOrg + 1) * 1000)
	if peak.Load() > uint64(window)+slack || last >= int64(keys) {
		t.Fatalf("window %d: TASKS peaked at %d, planning reached %d of %d keys", window, peak.Load(), last, keys)
	}
	logf(t, "planning window: org share %d tasks: planning paused at %d of %d keys, TASKS peak %d", window, last, keys, peak.Load())
	if _, err := e.jobs.Cancel(ctx, tn.org.ID, "windowed"); err != nil {
		t.Fatal(err)
	}
}

// publishCeiling is the rate at which this run's NATS stores task-sized
// messages (400 bytes, each with its Nats-Msg-Id), published as the
// planner does: a page of 1,000 as one fast batch (schema.PublishAll).
func publishCeiling(t *testing.T, e *env, n int) float64 {
	t.Helper()
	ctx := context.Background()
	s, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAWPLAN", Subjects: []string{"rawplan.>"}, Storage: jetstream.FileStorage,
		Duplicates: 2 * time.Minute, AllowBatchPublish: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.js.DeleteStream(ctx, s.CachedInfo().Config.Name) }()
	body := []byte(strings.Repeat("x", 400))
	start := time.Now()
	for page := 0; page < n; page += 1000 {
		// schema.PublishAll's settings: acknowledgements every 250, and
		// never a wait for one before the commit.
		fp, err := jetstreamext.NewFastPublisher(e.js, jetstreamext.FastPublishFlowControl{Flow: 250, MaxOutstandingAcks: 1000})
		if err != nil {
			t.Fatal(err)
		}
		last := min(page+1000, n) - 1
		for i := page; i <= last; i++ {
			m := &nats.Msg{Subject: "rawplan.tasks", Data: body, Header: nats.Header{jetstream.MsgIDHeader: {fmt.Sprintf("raw:%d", i)}}}
			if i < last {
				_, err = fp.AddMsg(m)
			} else {
				_, err = fp.CommitMsg(ctx, m)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return float64(n) / time.Since(start).Seconds()
}
