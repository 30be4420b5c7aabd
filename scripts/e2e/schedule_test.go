//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
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

// scheduled follows one collection's schedule from outside: the ticks the
// server stores (as the job IDs they name) and the sync jobs started.
type scheduled struct {
	t          *testing.T
	ctx        context.Context
	s          *stack.Stack
	org        *stack.Org
	collection string
	store      *jobs.Store
	mu         sync.Mutex
	ticks      map[string]bool
}

func followSchedule(t *testing.T, ctx context.Context, s *stack.Stack, org *stack.Org, collection string) *scheduled {
	t.Helper()
	nc, err := nats.Connect(s.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	f := &scheduled{t: t, ctx: ctx, s: s, org: org, collection: collection, ticks: map[string]bool{}}
	if f.store, err = jobs.Open(ctx, js, nil); err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, schema.StreamSchedules, jetstream.OrderedConsumerConfig{FilterSubjects: []string{schema.TickSubject(org.OrgID, collection)}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, _ := m.Metadata()
		name, _ := tick.Name(m, md.Sequence.Stream)
		f.mu.Lock()
		f.ticks[tick.JobID(org.OrgID, collection, name)] = true
		f.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return f
}

// syncs is the sync jobs the schedule started. Each read has its own
// deadline and is retried: a request lost while the client reconnects
// (a NATS node killed) is asked again, not waited on.
func (f *scheduled) syncs() map[string]*schema.JobStatus {
	var page *jobs.Page
	var err error
	for range 20 {
		ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
		page, err = f.store.List(ctx, f.org.OrgID, jobs.Filter{Collection: f.collection, Limit: 100})
		cancel()
		if err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]*schema.JobStatus{}
	for _, v := range page.Jobs {
		if strings.HasPrefix(v.JobID, "sync_") {
			out[v.JobID] = v.JobStatus
		}
	}
	return out
}

// waitSyncs waits until the schedule started n syncs.
func (f *scheduled) waitSyncs(n int) {
	f.t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); len(f.syncs()) < n; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			var sc map[string]any
			err := f.s.CLI(f.ctx, &sc, "schedule", "show", "--org", f.org.OrgID, "--collection", f.collection)
			for id, st := range f.syncs() {
				f.t.Logf("sync %s: %s, files %d/%d, sweep %+v", id, st.Status,
					st.FilesIndexed+st.FilesSkipped+st.FilesFailed, st.FilesTotal, st.Sweep)
			}
			f.queues()
			f.t.Fatalf("%d syncs, waiting for %d; the schedule: %v %v", len(f.syncs()), n, sc, err)
		}
	}
}

// queues logs what JOBS, TASKS, EVENTS and SCHEDULES hold and what each
// consumer has pending, for a failure's message.
func (f *scheduled) queues() {
	nc, err := nats.Connect(f.s.NATSURL)
	if err != nil {
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	for _, name := range []string{schema.StreamJobs, schema.StreamTasks, schema.StreamEvents, schema.StreamSchedules} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			continue
		}
		info, _ := st.Info(ctx, jetstream.WithSubjectFilter(">"))
		if info != nil {
			f.t.Logf("%s: %d messages %v", name, info.State.Msgs, info.State.Subjects)
		}
		for c := range st.ListConsumers(ctx).Info() {
			f.t.Logf("  %s: pending %d, ack pending %d, redelivered %d, waiting %d, delivered %d, ack floor %d", c.Name, c.NumPending, c.NumAckPending,
				c.NumRedelivered, c.NumWaiting, c.Delivered.Stream, c.AckFloor.Stream)
		}
	}
}

// clearAndCheck clears the schedule, waits for every sync to end, and
// checks that each is one tick's and completed.
func (f *scheduled) clearAndCheck() {
	f.t.Helper()
	var cleared map[string]any
	if err := f.s.CLI(f.ctx, &cleared, "schedule", "clear", "--org", f.org.OrgID, "--collection", f.collection); err != nil {
		f.t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		final := true
		for _, st := range f.syncs() {
			final = final && st.Final()
		}
		if final {
			break
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("syncs not final: %+v", f.syncs())
		}
	}
	all := f.syncs()
	f.mu.Lock()
	ticks := maps.Clone(f.ticks)
	f.mu.Unlock()
	// Each sync names the tick that started it, and its ID is that tick's:
	// one tick starts at most one sync, whether or not this observer saw
	// the tick (SCHEDULES keeps one message per subject, so an observer
	// reconnecting while a node is killed can miss one the fleet took).
	unseen := 0
	for id, st := range all {
		if !strings.HasPrefix(st.Tick, "next:") || tick.JobID(f.org.OrgID, f.collection, st.Tick) != id {
			f.t.Errorf("sync %s is no tick's (tick %q)", id, st.Tick)
		}
		if !ticks[id] {
			unseen++
		}
		if st.Status != schema.JobStatusCompleted {
			f.t.Errorf("sync %s: %s %+v", id, st.Status, st.Error)
		}
	}
	f.t.Logf("%d ticks seen, %d syncs, %d of them of ticks this observer missed (a tick while a sync runs, or replaced by the next before a worker took it, starts none)",
		len(ticks), len(all), unseen)
}

func (f *scheduled) set(integration string) {
	f.t.Helper()
	var set map[string]any
	if err := f.s.CLI(f.ctx, &set, "schedule", "set", "--org", f.org.OrgID, "--collection", f.collection, "--integration", integration,
		"--bucket", "demo-docs", "--prefix", "licenses/", "--every", "2s"); err != nil {
		f.t.Fatal(err)
	}
}

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
	f := followSchedule(t, ctx, s, org, "nightly")
	f.set(in.IntegrationID)
	f.waitSyncs(3)
	workers[0].Signal(syscall.SIGKILL, true)
	f.waitSyncs(len(f.syncs()) + 3)
	f.clearAndCheck()
}

// TestScheduleSurvivesLeaderLoss: on a 3-node NATS cluster (R3 streams),
// the node leading SCHEDULES — the one that fires the ticks — is killed
// with SIGKILL and restarted: another node goes on firing, and still every
// sync is one tick's (a tick fired twice around the change would name the
// same next tick, so the same job) and completes.
func TestScheduleSurvivesLeaderLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	s, err := stack.Start(ctx, dir, t.Logf, stack.WithoutDev())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	natsBin, err := stack.NATSServer(ctx, s.Root)
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := stack.StartCluster(ctx, dir, natsBin, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Stop()
	s.NATSURL = cluster.URLs
	s.Env = append(s.Env, "STEVEDORE_NATS_URL="+cluster.URLs, "STEVEDORE_REPLICAS=3", "STEVEDORE_ACK_WAIT=3s", "STEVEDORE_LOG_LEVEL=warn")
	port := freePort(t)
	producer, err := stack.StartProc("producer", dir, s.Bin, s.Env, "producer", "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Stop()
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
	w, _ := workerProc(t, s, dir, "worker")
	t.Cleanup(func() {
		if t.Failed() {
			w.Signal(syscall.SIGQUIT, true) // its goroutines, into its log
			if b, err := os.ReadFile(filepath.Join(dir, "worker.log")); err == nil {
				t.Logf("worker.log (last 64 KiB):\n%s", b[max(0, len(b)-64<<10):])
			}
		}
	})
	org, in, err := s.Onboard(ctx, "Leaderless", roleARN, "demo-docs")
	if err != nil {
		t.Fatal(err)
	}
	f := followSchedule(t, ctx, s, org, "nightly")
	f.set(in.IntegrationID)
	f.waitSyncs(2)

	nc, err := nats.Connect(cluster.URLs)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(ctx, schema.StreamSchedules)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("SCHEDULES info: %v %+v", err, info)
	}
	leader := info.Cluster.Leader
	node := cluster.Nodes[int(leader[len(leader)-1]-'0')] // nats-<i>
	node.Signal(syscall.SIGKILL, true)
	before := len(f.syncs())
	f.waitSyncs(before + 2) // ticks from another leader
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	f.waitSyncs(len(f.syncs()) + 2)
	if info, err := stream.Info(ctx); err == nil && info.Cluster != nil {
		t.Logf("SCHEDULES led by %s, then %s", leader, info.Cluster.Leader)
	}
	f.clearAndCheck()
}
