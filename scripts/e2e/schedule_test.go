//go:build e2e

package e2e

import (
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/scripts/stack"
	"github.com/stevedore-dev/stevedore/worker/tick"
)

// TestScheduleSurvivesAWorkerKilled: a schedule set with the CLI fires
// every 2 s on a fleet of three worker processes; one is killed with
// SIGKILL along the way. Every sync is one tick's (no tick starts two, none
// is invented), every sync completes, and syncs go on after the kill.
func TestScheduleSurvivesAWorkerKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The fleet's ack wait is short: what the killed worker held comes back in seconds.
	dir := t.TempDir()
	s, err := stack.Start(ctx, dir, t.Logf, stack.WithDevArgs("--workers", "0", "--ack-wait", "3s"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	org, in, err := s.Onboard(ctx, "Scheduled", roleARN, "demo-docs")
	if err != nil {
		t.Fatal(err)
	}
	var workers []*stack.Proc
	for _, name := range []string{"worker-a", "worker-b", "worker-c"} {
		w, _ := workerProc(t, s, dir, name, "--ack-wait", "3s")
		workers = append(workers, w)
	}
	nc, err := nats.Connect(s.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var mu sync.Mutex
	ticks := map[string]bool{}
	cons, err := js.OrderedConsumer(ctx, schema.StreamSchedules, jetstream.OrderedConsumerConfig{FilterSubjects: []string{schema.TickSubject(org.OrgID, "nightly")}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, _ := m.Metadata()
		name, _ := tick.Name(m, md.Sequence.Stream)
		mu.Lock()
		ticks[tick.JobID(org.OrgID, "nightly", name)] = true
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	var set map[string]any
	if err := s.CLI(ctx, &set, "schedule", "set", "--org", org.OrgID, "--collection", "nightly", "--integration", in.IntegrationID,
		"--bucket", "demo-docs", "--prefix", "licenses/", "--every", "2s"); err != nil {
		t.Fatal(err)
	}
	store, err := jobs.Open(ctx, js, nil)
	if err != nil {
		t.Fatal(err)
	}
	syncs := func() map[string]*schema.JobStatus {
		page, err := store.List(ctx, org.OrgID, jobs.Filter{Collection: "nightly", Limit: 100})
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
	waitSyncs := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Minute); len(syncs()) < n; time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d syncs, waiting for %d", len(syncs()), n)
			}
		}
	}
	waitSyncs(3)
	workers[0].Signal(syscall.SIGKILL, true)
	waitSyncs(len(syncs()) + 3)
	var cleared map[string]any
	if err := s.CLI(ctx, &cleared, "schedule", "clear", "--org", org.OrgID, "--collection", "nightly"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		final := true
		for _, st := range syncs() {
			final = final && st.Final()
		}
		if final {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("syncs not final: %+v", syncs())
		}
	}
	all := syncs()
	mu.Lock()
	defer mu.Unlock()
	for id, st := range all {
		if !ticks[id] {
			t.Errorf("sync %s is no tick's", id)
		}
		if st.Status != schema.JobStatusCompleted {
			t.Errorf("sync %s: %s %+v", id, st.Status, st.Error)
		}
	}
	t.Logf("%d ticks, %d syncs (a tick while a sync runs, or replaced by the next before a worker took it, starts none)", len(ticks), len(all))
}
