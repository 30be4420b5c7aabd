//go:build faults

package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/extract"
	"github.com/stevedore-dev/stevedore/worker/faults"
	"github.com/stevedore-dev/stevedore/worker/sweep"
)

// TestCrashAtEveryPointLosesNothingAndDoublesNothing crashes the worker once
// at each named point for a quarter of the objects (the message is then not
// settled, exactly as after kill -9) and checks, after the redeliveries, that
// the job counts every object once and downstream sees exactly the expected
// chunks, none uncommitted, none twice.
func TestCrashAtEveryPointLosesNothingAndDoublesNothing(t *testing.T) {
	objects := map[string]string{}
	for i := 0; i < 24; i++ {
		objects[fmt.Sprintf("doc%02d.txt", i)] = strings.Repeat(fmt.Sprintf("Sentence %d of a document that spans several chunks. ", i), 40+i)
	}
	// Redeliver unsettled messages after one second, not a minute.
	e := setup(t, objects, func(c *Config) { c.Topology = schema.Topology{AckWait: time.Second} })
	points := []string{"after_download", "after_chunks", "after_state", "before_ack"}
	var mu sync.Mutex
	crashed := map[string]int{}
	rates := map[string]float64{}
	for _, p := range points {
		rates[p] = 1
	}
	t.Cleanup(faults.Inject(rates, func(point, key string) error {
		mu.Lock()
		defer mu.Unlock()
		i := -1
		if _, err := fmt.Sscanf(strings.TrimPrefix(key, "tasks."), "doc%02d.txt", &i); err != nil && point != "before_ack" {
			return nil
		}
		if point == "before_ack" { // the key is not known there: crash the first six tasks once each
			if crashed[point] < 6 {
				crashed[point]++
				return faults.ErrCrashed
			}
			return nil
		}
		if points[i%3] != point || crashed[point+key] > 0 {
			return nil
		}
		crashed[point+key]++
		crashed[point]++
		return faults.ErrCrashed
	}))
	e.submit(t, "job_crash", true)
	st := e.wait(t, "job_crash")
	if st.Status != schema.JobStatusCompleted || st.FilesIndexed != 24 || st.FilesFailed != 0 || st.FilesSkipped != 0 {
		t.Fatalf("status %+v", st)
	}
	// The expected chunk IDs, from an independent split of every object.
	want := map[string]bool{}
	for key, body := range objects {
		sp, _ := e.w.index.Splitter("")
		n := len(sp.Split(body))
		for i := 0; i < n; i++ {
			want[schema.ChunkID(e.org.ID, "docs", bucket, key, etagOf(t, e, key), extract.Version, i)] = true
		}
	}
	got, raw, commits := visible(t, e)
	if len(got) != len(want) {
		t.Fatalf("%d visible chunks, want %d", len(got), len(want))
	}
	for id := range want {
		if !got[id] {
			t.Fatalf("chunk %s missing", id)
		}
	}
	if raw != len(want) || commits != 24 {
		t.Fatalf("raw chunk messages %d (want %d: duplicates removed by Msg-Id), commits %d", raw, len(want), commits)
	}
	t.Logf("crashes: %d after_download, %d after_chunks, %d after_state, %d before_ack; %d chunks visible, %d raw chunk messages, %d commits",
		crashed["after_download"], crashed["after_chunks"], crashed["after_state"], crashed["before_ack"], len(got), raw, commits)
}

func etagOf(t *testing.T, e *env, key string) string {
	t.Helper()
	kv, _ := e.js.KeyValue(context.Background(), schema.BucketObjects)
	entry, err := kv.Get(context.Background(), schema.ObjectKey(e.org.ID, "docs", bucket, key))
	if err != nil {
		t.Fatalf("state of %s: %v", key, err)
	}
	var st schema.ObjectState
	if err := json.Unmarshal(entry.Value(), &st); err != nil {
		t.Fatal(err)
	}
	return st.ETag
}

// TestMaxDeliverMovesToDead crashes on every delivery of one object, so its
// handler never settles it; JetStream's MaxDeliver advisory moves it to DEAD
// and its failure is recorded so the job still completes with exact counts.
func TestMaxDeliverMovesToDead(t *testing.T) {
	e := setup(t, map[string]string{"ok.txt": "fine", "doomed.txt": "crashes every time"}, func(c *Config) {
		c.Topology = schema.Topology{AckWait: time.Second, MaxDeliver: 2}
	})
	t.Cleanup(faults.Inject(map[string]float64{"after_download": 1}, func(point, key string) error {
		if key == "doomed.txt" {
			return faults.ErrCrashed
		}
		return nil
	}))
	e.submit(t, "job_md", true)
	st := e.wait(t, "job_md")
	if st.Status != schema.JobStatusCompletedWithErrors || st.FilesIndexed != 1 || st.FilesFailed != 1 {
		t.Fatalf("status %+v", st)
	}
	ctx := context.Background()
	dead, _ := e.js.Stream(ctx, schema.StreamDead)
	m, err := dead.GetLastMsgForSubject(ctx, schema.DeadSubject(schema.StreamTasks))
	if err != nil {
		t.Fatal(err) // the job completes only through the advisory's failed event
	}
	dl, _ := schema.DecodeDeadLetter(m.Data)
	task, _ := schema.DecodeTask(dl.Payload)
	if dl.ErrorClass != "max_deliver" || dl.Deliveries != 2 || task.Key != "doomed.txt" {
		t.Fatalf("dead letter %+v", dl)
	}
	tasks, _ := e.js.Stream(ctx, schema.StreamTasks)
	if info, _ := tasks.Info(ctx); info.State.Msgs != 0 {
		t.Fatalf("%d messages left in TASKS", info.State.Msgs)
	}
}

// TestTrackerCrashCostsSecondsNotAckWait: a tracker that dies holding a
// batch (nothing folded or settled, as after kill -9) delays job progress
// by the tracker's own short ack wait, not the fleet's: here the fleet's is
// ten minutes, and the job still completes.
func TestTrackerCrashCostsSecondsNotAckWait(t *testing.T) {
	var mu sync.Mutex
	crashes := 0
	restore := faults.Inject(map[string]float64{"before_fold": 1}, func(point, key string) error {
		mu.Lock()
		defer mu.Unlock()
		if crashes > 0 {
			return nil
		}
		crashes++
		return faults.ErrCrashed
	})
	t.Cleanup(restore) // after the worker stops (cleanups run last first)
	e := setup(t, map[string]string{"a.txt": "alpha", "b.txt": "beta"}, func(c *Config) { c.Topology = schema.Topology{AckWait: 10 * time.Minute} })
	start := time.Now()
	e.submit(t, "job_tracker_crash", false)
	st := e.wait(t, "job_tracker_crash")
	if st.Status != schema.JobStatusCompleted || st.FilesIndexed != 2 {
		t.Fatalf("status %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if crashes != 1 {
		t.Fatalf("%d tracker crashes, want 1", crashes)
	}
	t.Logf("job completed %s after submission with one tracker crash (tracker ack wait %s, fleet's 10m)", time.Since(start).Round(100*time.Millisecond), schema.TrackerAckWait)
}

// TestWipeCrashedLosesNothingAndDoublesNothing crashes the worker in the
// middle of erasing (after a document's state is marked, and after its
// tombstone and outcome are published) for a third of the documents, over
// pages of 7: the redelivered pages finish; the job counts every document
// once, and a consumer folding CHUNKS sees none of them.
func TestWipeCrashedLosesNothingAndDoublesNothing(t *testing.T) {
	objects := map[string]string{}
	for i := 0; i < 30; i++ {
		objects[fmt.Sprintf("docs/%02d.txt", i)] = strings.Repeat(fmt.Sprintf("Sentence %d of a document. ", i), 20)
	}
	e := setup(t, objects, func(c *Config) { c.Topology = schema.Topology{AckWait: time.Second} })
	e.submitJob(t, e.syncJob("job_fill"))
	if st := e.wait(t, "job_fill"); st.FilesIndexed != 30 {
		t.Fatalf("fill: %+v", st)
	}
	sweep.ErasePageSize = 7
	t.Cleanup(func() { sweep.ErasePageSize = 10_000 })
	var mu sync.Mutex
	crashed := map[string]int{}
	t.Cleanup(faults.Inject(map[string]float64{"erase_marked": 1, "erase_published": 1}, func(point, key string) error {
		mu.Lock()
		defer mu.Unlock()
		i := -1
		if _, err := fmt.Sscanf(key, "docs/%02d.txt", &i); err != nil || crashed[point+key] > 0 {
			return nil
		}
		if (point == "erase_marked" && i%3 == 0) || (point == "erase_published" && i%3 == 1) {
			crashed[point+key]++
			crashed[point]++
			return faults.ErrCrashed
		}
		return nil
	}))
	st, err := e.eraser(t).Wipe(context.Background(), e.org.ID, "docs", "")
	if err != nil {
		t.Fatal(err)
	}
	end := e.wait(t, st.JobID)
	if end.Status != schema.JobStatusCompleted || end.FilesDeleted != 30 || end.FilesTotal != 30 {
		t.Fatalf("wipe: %+v", end)
	}
	if got := visibleIn(t, e, "docs"); got != 0 {
		t.Fatalf("%d chunks visible after the wipe", got)
	}
	if crashed["erase_marked"] == 0 || crashed["erase_published"] == 0 {
		t.Fatalf("no crash: %v", crashed)
	}
	t.Logf("crashes: %d after marking, %d after publishing", crashed["erase_marked"], crashed["erase_published"])
}
