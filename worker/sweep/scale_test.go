package sweep

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// TestSweepAtScale sweeps a scope of many held objects (2,000 in make test;
// STEVEDORE_SWEEP_OBJECTS=100000 in `make sweep-scale`) of which 10 are gone
// from S3, and reports the sweep's time and how much the process heap grew
// (the in-process nats-server's too: the subject index it builds for the
// watch, and the garbage collector's slack). The sweep streams the states;
// a heap profile at 200,000 shows its own live memory (nats.go's pending
// messages, the watch, decoding) at about 17 MB of that. It checks the
// counts, not the time.
func TestSweepAtScale(t *testing.T) {
	n := scale(t)
	x := newSweeper(t, 0.5)
	const gone = 10
	stateBytes := x.holdMany(t, n, gone)
	for i := range gone {
		x.env.S3.Delete(bucket, fmt.Sprintf("dir/%07d.txt", i))
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	res, tombstones, _ := x.sweep(t)
	took := time.Since(start)
	close(stop)
	<-sampled
	if res.Status != schema.SweepDone || res.Held != int64(n) || res.Candidates != gone || res.Deleted != gone || len(tombstones) != gone {
		t.Fatalf("sweep %+v, %d tombstones", res, len(tombstones))
	}
	grew := int64(peak.Load()) - int64(before.HeapInuse)
	t.Logf("sweep of %d held objects (%d gone): %s (%.0f states/s over two passes); process heap grew by at most %.1f MiB, in-process nats-server included (the states are %.1f MiB)",
		n, gone, took.Round(time.Millisecond), float64(2*n)/took.Seconds(), float64(grew)/(1<<20), float64(stateBytes)/(1<<20))
}

// holdMany stores n indexed states under dir/ seen by the sync, but the
// first gone, which the listing did not see; every object is in S3. It
// publishes to the KV's subjects asynchronously (a Put per state is slow
// past tens of thousands) and returns the states' total size.
func (x *sweeper) holdMany(t *testing.T, n, gone int) int64 {
	t.Helper()
	ctx := context.Background()
	var total int64
	futures := make([]jetstream.PubAckFuture, 0, 1024)
	wait := func() {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				t.Fatal(err)
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
		futures = futures[:0]
	}
	for i := range n {
		key := fmt.Sprintf("dir/%07d.txt", i)
		st := schema.ObjectState{Bucket: bucket, Key: key, ETag: `"0123456789abcdef0123456789abcdef"`, Status: schema.ObjectIndexed, Chunks: 3, Tokens: 900,
			ExtractorVersion: "v1", JobID: "job_first", UpdatedAt: time.Now()}
		if i >= gone {
			st.SeenBy = x.job.JobID
		}
		data, _ := json.Marshal(&st)
		total += int64(len(data))
		msg := nats.NewMsg("$KV." + schema.BucketObjects + "." + schema.ObjectKey(x.job.Org, x.job.Collection, bucket, key))
		msg.Data = data
		f, err := x.env.JS.PublishMsgAsync(msg)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
		if len(futures) == cap(futures) {
			wait()
		}
		x.env.S3.Put(bucket, key, "body")
	}
	wait()
	return total
}

// TestEraseAtScale wipes a collection of many documents (2,000 in make
// test; STEVEDORE_SWEEP_OBJECTS=100000 in `make sweep-scale`) through a real
// in-process nats-server — every tombstone and outcome published and
// acknowledged, every state purged — in pages, and reports the rate. It
// checks the counts, not the time.
func TestEraseAtScale(t *testing.T) {
	n := scale(t)
	x := newSweeper(t, 0.5)
	x.holdMany(t, n, 0)
	var published atomic.Int64
	x.h.cfg.Publish = func(ctx context.Context, msgs []schema.Out) error {
		published.Add(int64(len(msgs)))
		if _, err := schema.PublishAll(ctx, x.env.JS, msgs); err != nil {
			return err
		}
		return x.publish(ctx, msgs) // and collected, for erase's report
	}
	job := eraseJob(x, "job_wipe_scale", schema.JobWipe)
	start := time.Now()
	pages, erased := 0, 0
	for {
		e, err := x.erase(t, job)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		erased += len(e.keys)
		if e.ended {
			break
		}
		job = *e.next
	}
	took := time.Since(start)
	if erased != n {
		t.Fatalf("erased %d of %d", erased, n)
	}
	if s, err := x.env.Collections.Stats(context.Background(), x.job.Org, x.job.Collection); err != nil || s.Documents != 0 {
		t.Fatalf("left: %+v %v", s, err)
	}
	t.Logf("wipe of %d documents: %s in %d pages (%.0f documents/s; %d messages published and acknowledged, every state purged)",
		n, took.Round(time.Millisecond), pages, float64(n)/took.Seconds(), published.Load())
}

// scale is how many objects a scale test holds: 2,000, or
// STEVEDORE_SWEEP_OBJECTS (make sweep-scale: 100,000).
func scale(t *testing.T) int {
	t.Helper()
	v := os.Getenv("STEVEDORE_SWEEP_OBJECTS")
	if v == "" {
		return 2000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 20 {
		t.Fatalf("STEVEDORE_SWEEP_OBJECTS=%q: want a number ≥ 20", v)
	}
	return n
}
