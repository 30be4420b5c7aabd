//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/scripts/stack"
	"github.com/stevedore-dev/stevedore/worker/extract"
)

func freePort(t *testing.T) int {
	t.Helper()
	p, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rootS3 is MinIO's root user, standing in for the customer's own writes.
func rootS3(s *stack.Stack) *s3.Client { return s.RootS3() }

// jetStream connects to url for the rest of the test.
func jetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	if err := stack.WaitOK(url, 90*time.Second); err != nil {
		t.Fatal(err)
	}
}

// committedChunks folds a collection's CHUNKS with schema.View (the
// downstream contract) and returns the visible chunk IDs, the raw number of
// chunk messages and the number of commits.
func committedChunks(t *testing.T, js jetstream.JetStream, org, collection string) (visible map[string]bool, raw, commits int) {
	t.Helper()
	view, err := collections.Fold(context.Background(), js, org, collection, false)
	if err != nil {
		t.Fatal(err)
	}
	return view.Visible(), view.Chunks, view.Commits
}

// TestFleetLosesNothingUnderFaults runs a 3-node NATS cluster (R3 streams),
// MinIO, the producer and three workers (built with the fault hooks) as
// separate processes; indexes 5,000 small objects (plus 3 poisonous ones)
// while killing a random worker every few seconds, letting the fault hooks
// crash workers at named points inside tasks, and restarting one NATS node;
// then checks that nothing was lost or doubled.
//
// STEVEDORE_FAULT_OBJECTS sets the object count (`make fault-run`: 100,000).
func TestFleetLosesNothingUnderFaults(t *testing.T) {
	const poison = 3
	objects := scaleOf(t, "STEVEDORE_FAULT_OBJECTS", 5000)
	// Generous bounds (not timings): minutes plus a second per 25 objects.
	budget := 10*time.Minute + time.Duration(objects/25)*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*budget)
	defer cancel()
	dir := t.TempDir()
	s, err := stack.Start(ctx, dir, t.Logf, stack.WithoutDev(), stack.WithBuildTags("faults"))
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
	t.Logf("3-node JetStream cluster up: %s", cluster.URLs)
	s.NATSURL = cluster.URLs
	env := append(s.Env, "STEVEDORE_NATS_URL="+cluster.URLs, "STEVEDORE_REPLICAS=3", "STEVEDORE_ACK_WAIT=6s", "STEVEDORE_POISON=poison",
		"STEVEDORE_LOG_LEVEL=warn")
	apiPort, metricsPort := freePort(t), freePort(t)
	producer, err := stack.StartProc("producer", dir, s.Bin, env, "producer", "--listen", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Stop()
	s.API, s.Metric = fmt.Sprintf("http://127.0.0.1:%d", apiPort), fmt.Sprintf("http://127.0.0.1:%d", metricsPort)
	waitHTTP(t, s.Metric+"/readyz")
	faults := "STEVEDORE_FAULTS=after_download=0.002,after_chunks=0.002,after_state=0.002,before_ack=0.002,erase_marked=0.0003,erase_published=0.0003"
	var workers []*stack.Proc
	var workerMetrics []string
	for i := 0; i < 3; i++ {
		port := freePort(t)
		w, err := stack.StartProc(fmt.Sprintf("worker-%d", i), dir, s.Bin, append(env, faults), "worker",
			"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", port), "--shutdown-grace", "2s")
		if err != nil {
			t.Fatal(err)
		}
		workers = append(workers, w)
		workerMetrics = append(workerMetrics, fmt.Sprintf("http://127.0.0.1:%d", port))
		defer w.Stop()
	}
	// Duplicates seen: publishes JetStream dropped by Msg-Id, and claims of
	// redelivered messages, summed over every worker process's life (read
	// every tick; a process's last reading counts when it is restarted).
	type seen struct{ dup, redelivered float64 }
	last, total := make([]seen, len(workers)), seen{}
	scrape := func(i int) {
		m := &stack.Stack{Metric: workerMetrics[i]}
		if v, err := m.MetricSum("stevedore_publish_duplicates_total"); err == nil {
			last[i].dup = v
		}
		if v, err := m.MetricSum("stevedore_messages_redelivered_total"); err == nil {
			last[i].redelivered = v
		}
	}
	restarted := func(i int) {
		total.dup += last[i].dup
		total.redelivered += last[i].redelivered
		last[i] = seen{}
	}

	// The objects (and the poisonous ones) under load/.
	client := rootS3(s)
	etags := map[string]string{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := 0; i < objects+poison; i++ {
		key := fmt.Sprintf("load/obj-%05d.txt", i)
		if i >= objects {
			key = fmt.Sprintf("load/poison-%d.txt", i-objects)
		}
		body := fmt.Sprintf("Object %d of the fault-injection run. It must be indexed exactly once.\n", i)
		g.Go(func() error {
			out, err := client.PutObject(gctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(key), Body: strings.NewReader(body)})
			if err != nil {
				return err
			}
			mu.Lock()
			etags[key] = aws.ToString(out.ETag)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	org, _, err := s.Onboard(ctx, "Chaos", roleARN, "demo-docs")
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		JobID string `json:"job_id"`
	}
	start := time.Now()
	if code, err := s.Call(ctx, org, "POST", "/v2/collections/chaos/index/s3/directory", map[string]any{"bucket_name": "demo-docs", "directory_path": "load/",
		"auth": map[string]string{"type": "assume_role", "role_arn": roleARN, "external_id": org.ExternalID}}, &created); err != nil || code != 201 {
		t.Fatalf("index request: %d %v", code, err)
	}

	// Chaos until the job is done.
	var kills, faultCrashes, natsRestarts atomic.Int64
	startChaos := func(restartNATS bool) (stop func()) {
		chaosCtx, stopChaos := context.WithCancel(ctx)
		var chaos sync.WaitGroup
		chaos.Add(1)
		go func() {
			defer chaos.Done()
			rng := rand.New(rand.NewPCG(42, 7))
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			next := time.Now().Add(3 * time.Second)
			natsAt := time.Now().Add(8 * time.Second)
			for {
				select {
				case <-chaosCtx.Done():
					return
				case <-tick.C:
				}
				for i, w := range workers { // a fault hook crashed it: restart
					if w.Exited() {
						faultCrashes.Add(1)
						restarted(i)
						if err := w.Start(); err != nil {
							t.Error(err)
						}
					} else {
						scrape(i)
					}
				}
				if time.Now().After(next) {
					i := rng.IntN(len(workers))
					w := workers[i]
					scrape(i)
					w.Signal(syscall.SIGKILL, true)
					restarted(i)
					kills.Add(1)
					if err := w.Start(); err != nil {
						t.Error(err)
					}
					next = time.Now().Add(3 * time.Second)
				}
				if restartNATS && natsRestarts.Load() == 0 && time.Now().After(natsAt) {
					node := cluster.Nodes[1]
					node.Signal(syscall.SIGKILL, true)
					time.Sleep(time.Second)
					if err := node.Start(); err != nil {
						t.Error(err)
					}
					natsRestarts.Add(1)
				}
			}
		}()
		return func() { stopChaos(); chaos.Wait() }
	}
	stopChaos := startChaos(true)
	wctx, wcancel := context.WithTimeout(ctx, budget)
	defer wcancel()
	st, err := s.WaitJob(wctx, org, created.JobID, nil)
	stopChaos()
	if err != nil {
		t.Fatal(err)
	}
	for i := range workers {
		scrape(i)
		restarted(i)
	}
	took := time.Since(start)
	if st.Status != schema.JobStatusCompletedWithErrors || st.FilesTotal != int64(objects+poison) || st.FilesIndexed != int64(objects) || st.FilesFailed != poison {
		t.Fatalf("job %+v", st)
	}

	nc, err := nats.Connect(cluster.URLs)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	visible, raw, commits := committedChunks(t, js, org.OrgID, "chaos")
	want := map[string]bool{}
	for key, etag := range etags {
		if !strings.Contains(key, "poison") {
			want[schema.ChunkID(org.OrgID, "chaos", "demo-docs", key, etag, extract.Version, 0)] = true
		}
	}
	missing, extra := 0, 0
	for id := range want {
		if !visible[id] {
			missing++
		}
	}
	for id := range visible {
		if !want[id] {
			extra++
		}
	}
	if missing != 0 || extra != 0 || len(visible) != objects {
		t.Fatalf("visible chunks %d: %d missing, %d unexpected (%d raw chunk messages, %d commits)", len(visible), missing, extra, raw, commits)
	}
	// DEAD holds exactly the poisonous objects' tasks.
	// Read by sequence (a direct get per message): an ordered consumer's
	// first fetch can come back empty while the cluster settles after the
	// node restart.
	var dead []string
	deadStream, err := js.Stream(ctx, schema.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	dinfo, err := deadStream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := dinfo.State.FirstSeq; dinfo.State.Msgs > 0 && seq <= dinfo.State.LastSeq; seq++ {
		m, err := deadStream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("DEAD message %d: %v", seq, err)
		}
		dl, _ := schema.DecodeDeadLetter(m.Data)
		key := dl.Subject + " " + dl.ErrorClass
		if task, err := schema.DecodeTask(dl.Payload); err == nil {
			key = task.Key
		}
		dead = append(dead, key)
	}
	for _, d := range dead {
		if !strings.Contains(d, "poison") {
			t.Errorf("unexpected dead letter: %s", d)
		}
	}
	if len(dead) != poison {
		t.Fatalf("dead letters %v, want the %d poisonous objects", dead, poison)
	}
	report := fmt.Sprintf("fault-injection run: %d objects + %d poisonous in %s; %d workers killed with SIGKILL and restarted, %d fault-hook crashes restarted, %d NATS node restarted; "+
		"job: %d indexed, %d failed (the poisonous), exact; %.0f redelivered claims and %.0f duplicate publishes seen and removed by Msg-Id; CHUNKS: %d chunk messages raw, %d visible after commits, %d commit records; DEAD: %d",
		objects, poison, took.Round(time.Second), kills.Load(), faultCrashes.Load(), natsRestarts.Load(), st.FilesIndexed, st.FilesFailed, total.redelivered, total.dup, raw, len(visible), commits, len(dead))
	t.Log(report)
	appendReport(report)

	// Wipe the collection under the same SIGKILLs (and erase fault-hook
	// crashes): every document erased once, no chunk visible.
	killsBefore, crashesBefore := kills.Load(), faultCrashes.Load()
	start = time.Now()
	stopChaos = startChaos(false)
	if code, err := s.Call(ctx, org, "DELETE", "/v2/collections/chaos/documents", nil, &created); err != nil || code != 202 {
		stopChaos()
		t.Fatalf("wipe request: %d %v", code, err)
	}
	wctx, wcancel = context.WithTimeout(ctx, budget)
	defer wcancel()
	wiped, err := s.WaitJob(wctx, org, created.JobID, nil)
	stopChaos()
	if err != nil {
		t.Fatal(err)
	}
	took = time.Since(start)
	// The poisonous objects are documents too (failed, no chunks).
	if wiped.Status != schema.JobStatusCompleted || wiped.FilesDeleted != int64(objects+poison) || wiped.FilesTotal != int64(objects+poison) || wiped.ChunksDeleted != int64(objects) {
		t.Fatalf("wipe %+v", wiped)
	}
	visible, raw, commits = committedChunks(t, js, org.OrgID, "chaos")
	if len(visible) != 0 {
		t.Fatalf("%d chunks visible after the wipe", len(visible))
	}
	report = fmt.Sprintf("wipe under faults: %d documents erased in %s (%.0f documents/s), exact; %d workers killed with SIGKILL and %d fault-hook crashes meanwhile; 0 chunks visible after it",
		wiped.FilesDeleted, took.Round(time.Second), float64(wiped.FilesDeleted)/took.Seconds(), kills.Load()-killsBefore, faultCrashes.Load()-crashesBefore)
	t.Log(report)
	appendReport(report)
}

func appendReport(line string) {
	if out := os.Getenv("STEVEDORE_E2E_REPORT"); out != "" {
		f, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(f, line)
			f.Close()
		}
	}
}
