package schema_test

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/natstest"
)

// pageOut is what a planner publishes for one listing page: n tasks (some
// as encoded Data, some as a Msg to encode), the next page, and an event
// whose stream sequence is wanted back.
func pageOut(n int, eventSeq *uint64) []schema.Out {
	var out []schema.Out
	for i := range n {
		task := &schema.Task{Op: schema.OpIndex, JobID: "job-1", Org: "org-1", Collection: "docs", Bucket: "b", Key: fmt.Sprintf("k/%05d", i)}
		m := schema.Out{Subject: schema.TaskSubject("org-1", "docs"), MsgID: schema.TaskMsgID("job-1", "b", task.Key, "", "")}
		if i%2 == 0 {
			data, err := schema.Encode(task)
			if err != nil {
				panic(err)
			}
			m.Data = data
		} else {
			m.Msg = task
		}
		out = append(out, m)
	}
	job := &schema.Job{JobID: "job-1", Org: "org-1", Collection: "docs", Kind: schema.JobBucket, Bucket: "b", Page: 1}
	out = append(out, schema.Out{Subject: schema.JobSubject("org-1", "docs"), MsgID: schema.JobPageMsgID("job-1", 1), Msg: job})
	ev := &schema.JobEvent{EventID: "ev-1", JobID: "job-1", Org: "org-1", Collection: "docs", Type: schema.JobPlanned, Tasks: n, At: time.Now().UTC()}
	return append(out, schema.Out{Subject: schema.JobEventSubject("org-1", "docs"), MsgID: ev.EventID, Msg: ev, Seq: eventSeq})
}

// updateTasks changes TASKS' configuration with change.
func updateTasks(t testing.TB, js jetstream.JetStream, change func(*jetstream.StreamConfig)) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, schema.StreamTasks)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	change(&cfg)
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// storedKeys returns the keys of the tasks in TASKS, in stream order.
func storedKeys(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, schema.StreamTasks)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		var task struct{ Key string }
		if err := json.Unmarshal(m.Data, &task); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, task.Key)
	}
	return keys
}

func wantKeys(t *testing.T, got []string, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d tasks stored, want %d", len(got), n)
	}
	for i, k := range got {
		if want := fmt.Sprintf("k/%05d", i); k != want {
			t.Fatalf("task %d is %s, want %s (in order, once each)", i, k, want)
		}
	}
}

// A page's tasks go as one fast batch: every task stored once and in
// order, the other messages beside them, the sequence asked for returned;
// the page published again (a redelivered job page), interleaved with one
// published before in part, stores nothing twice.
func TestPublishAllBatchesAPageOfTasks(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx := context.Background()
	half := pageOut(500, nil)[:500:500]
	odd := make([]schema.Out, 0, 250)
	for i := 1; i < len(half); i += 2 {
		odd = append(odd, half[i]) // every other task already stored before the page
	}
	if _, err := schema.PublishAll(ctx, js, odd); err != nil {
		t.Fatal(err)
	}
	var seq uint64
	p, err := schema.PublishAll(ctx, js, pageOut(1000, &seq))
	if err != nil || p.Unbatched != 0 || p.Duplicates != 0 {
		t.Fatalf("the page: %+v, %v; want it batched, and no duplicate among the job page and the event", p, err)
	}
	if seq == 0 {
		t.Fatal("the event's stream sequence was not returned")
	}
	if p, err = schema.PublishAll(ctx, js, pageOut(1000, &seq)); err != nil || p.Duplicates != 2 {
		t.Fatalf("the page again: %+v, %v; want the job page and the event counted as duplicates", p, err)
	}
	keys := storedKeys(t, js)
	if len(keys) != 1000 {
		t.Fatalf("%d tasks stored, want 1000", len(keys))
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			t.Fatalf("task %s stored twice", k)
		}
		seen[k] = true
	}
	jobs, err := js.Stream(ctx, schema.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := jobs.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("JOBS holds %v messages (err %v), want the next page once", info.State.Msgs, err)
	}
}

// A TASKS made without batch publishing (an older topology) still gets
// every task, one by one, and the fallback is reported.
func TestPublishAllFallsBackWhereBatchesAreOff(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx := context.Background()
	updateTasks(t, js, func(c *jetstream.StreamConfig) { c.AllowBatchPublish = false })
	p, err := schema.PublishAll(ctx, js, pageOut(100, nil))
	if err != nil || p.Unbatched != 1 {
		t.Fatalf("%+v, %v; want 1 batch published one by one", p, err)
	}
	wantKeys(t, storedKeys(t, js), 100)
}

// With as many batches open on TASKS as the server allows, a page's tasks
// go one by one rather than fail.
func TestPublishAllFallsBackWhenTooManyBatchesAreOpen(t *testing.T) {
	// One open batch a stream, kept open however slow this machine is.
	_, _, js := natstest.Start(t, func(o *server.Options) {
		o.JetStreamLimits.MaxBatchInflightPerStream, o.JetStreamLimits.MaxBatchTimeout = 1, time.Hour
	})
	ctx := context.Background()
	open, err := jetstreamext.NewFastPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	// A batch begun and not committed: the stream's one.
	if _, err := open.AddMsg(&nats.Msg{Subject: schema.TaskSubject("org-1", "docs"), Data: []byte(`{}`), Header: nats.Header{jetstream.MsgIDHeader: {"open"}}}); err != nil {
		t.Fatal(err)
	}
	p, err := schema.PublishAll(ctx, js, pageOut(100, nil))
	if err != nil || p.Unbatched != 1 {
		t.Fatalf("%+v, %v; want 1 batch published one by one", p, err)
	}
	if got := storedKeys(t, js); len(got) != 101 { // the open batch's message and the page
		t.Fatalf("%d tasks stored, want 101", len(got))
	}
}

// A batch that fills TASKS fails as backpressure (the caller waits and
// retries); once there is room, the retry stores the rest, nothing twice.
func TestPublishAllBatchIntoAFullStream(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx := context.Background()
	updateTasks(t, js, func(c *jetstream.StreamConfig) { c.MaxMsgs = 300 })
	_, err := schema.PublishAll(ctx, js, pageOut(1000, nil))
	if err == nil || !schema.IsBackpressure(err) {
		t.Fatalf("publishing 1000 tasks into room for 300: %v, want backpressure", err)
	}
	if got := storedKeys(t, js); len(got) != 300 {
		t.Fatalf("%d tasks stored before the stream was full, want 300", len(got))
	}
	updateTasks(t, js, func(c *jetstream.StreamConfig) { c.MaxMsgs = -1 })
	if _, err := schema.PublishAll(ctx, js, pageOut(1000, nil)); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, storedKeys(t, js), 1000)
}

// BenchmarkPublishAllPage publishes a listing page (1,000 tasks, the next
// page, an event) into an in-process server, as one fast batch and, on a
// TASKS without batch publishing, one by one; cpu-µs/task counts the
// client's and the server's CPU (both in this process).
func BenchmarkPublishAllPage(b *testing.B) {
	for _, batched := range []bool{true, false} {
		name := map[bool]string{true: "batch", false: "one_by_one"}[batched]
		b.Run(name, func(b *testing.B) {
			_, _, js := natstest.Start(b)
			ctx := context.Background()
			updateTasks(b, js, func(c *jetstream.StreamConfig) { c.AllowBatchPublish = batched })
			pages := make([][]schema.Out, b.N)
			for i := range pages {
				pages[i] = pageOut(1000, nil)
				for j := range pages[i] {
					pages[i][j].MsgID += fmt.Sprintf("/%d", i) // a new page each time
				}
			}
			cpu0 := processCPU()
			b.ResetTimer()
			for i := range b.N {
				if _, err := schema.PublishAll(ctx, js, pages[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N*1000), "cpu-µs/task")
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
