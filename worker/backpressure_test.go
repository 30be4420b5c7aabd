package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// TestChunksFullWaitsInsteadOfDropping: CHUNKS at its byte limit refuses new
// chunks (DiscardNew); the job waits — no object fails, nothing is
// dead-lettered, nothing already in CHUNKS is dropped — and completes once
// downstream makes room (here: the stream is given a larger limit, as an
// operator would).
func TestChunksFullWaitsInsteadOfDropping(t *testing.T) {
	objects := map[string]string{}
	for _, k := range []string{"a.txt", "b.txt", "c.txt"} {
		objects[k] = strings.Repeat("The harbour master assigns a berth to every vessel. ", 2000) // ≈ 100 KB
	}
	e := setup(t, objects)
	ctx := context.Background()
	s, err := e.js.Stream(ctx, schema.StreamChunks)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Discard != jetstream.DiscardNew {
		t.Fatalf("CHUNKS discard policy %v, want DiscardNew", cfg.Discard)
	}
	// Room for about one object's chunks, not three.
	cfg.MaxBytes = 400 << 10
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	e.submit(t, "job_full", false)
	// The job stalls: it neither completes nor fails anything.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && e.metric(t, "stevedore_chunks_full") == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	if e.metric(t, "stevedore_chunks_full") != 1 {
		t.Fatal("the worker never saw CHUNKS full")
	}
	time.Sleep(6 * time.Second) // three of the gate's checks
	st := e.status(t, "job_full")
	if st.Status == schema.JobStatusCompleted || st.FilesFailed != 0 || st.FilesIndexed == 3 {
		t.Fatalf("while CHUNKS is full: %+v", st)
	}
	before, _ := s.Info(ctx)
	// Downstream makes room: the job completes, every object indexed once.
	cfg.MaxBytes = 64 << 20
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	st = e.wait(t, "job_full")
	if st.Status != schema.JobStatusCompleted || st.FilesIndexed != 3 || st.FilesFailed != 0 {
		t.Fatalf("after room was made: %+v", st)
	}
	after, _ := s.Info(ctx)
	if after.State.FirstSeq != before.State.FirstSeq {
		t.Fatalf("chunks were dropped: first sequence %d → %d", before.State.FirstSeq, after.State.FirstSeq)
	}
	ids, _, _ := visible(t, e)
	if len(ids) != int(st.ChunksProcessed) {
		t.Fatalf("%d visible chunks, job says %d", len(ids), st.ChunksProcessed)
	}
	if n := e.metric(t, "stevedore_dead_letters_total", "error_class", string(schema.ClassTransient)); n != 0 {
		t.Fatalf("%v dead letters", n)
	}
	if e.metric(t, "stevedore_chunks_full") != 0 {
		t.Fatal("the gate stayed closed")
	}
	if n := e.metric(t, "stevedore_chunks_full_waits_total"); n == 0 {
		t.Fatal("no publish was refused and retried: the test did not fill CHUNKS")
	}
}
