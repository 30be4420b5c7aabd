package sweep

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/handlertest"
	"github.com/stevedore-dev/stevedore/worker/meter"
)

const bucket = handlertest.Bucket

// sweeper is a Handler on a real registry, STS and S3 (awstest) and
// object-state bucket, whose publishes are collected instead of sent.
type sweeper struct {
	h       *Handler
	env     *handlertest.Env
	m       *meter.Metrics
	objects jetstream.KeyValue
	job     schema.Job
	mu      sync.Mutex
	out     []schema.Out
}

func newSweeper(t *testing.T, maxShare float64) *sweeper {
	t.Helper()
	e := handlertest.Start(t)
	x := &sweeper{env: e, m: meter.New(nil), job: schema.Job{JobID: "job_sync", Org: e.Org.ID, Collection: "docs", IntegrationID: e.In.ID,
		Kind: schema.JobDirectory, Bucket: bucket, Region: "us-east-1", Prefix: "dir/", Page: 1, DeleteMissing: true, Sweep: true}}
	var err error
	x.h, err = New(context.Background(), Config{JS: e.JS, Publish: x.publish, Metrics: x.m, Resolver: e.Resolver, Registry: e.Registry, Collections: e.Collections,
		Jobs: e.Jobs.Cache(), MaxShare: maxShare})
	if err != nil {
		t.Fatal(err)
	}
	if x.objects, err = e.JS.KeyValue(context.Background(), schema.BucketObjects); err != nil {
		t.Fatal(err)
	}
	return x
}

func (x *sweeper) publish(ctx context.Context, msgs []schema.Out) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.out = append(x.out, msgs...)
	return nil
}

// hold stores the state of an object the collection holds: indexed with
// two chunks (or skipped), seen by the sync when seen; and puts it in S3
// when inS3.
func (x *sweeper) hold(t *testing.T, bkt, key string, status schema.ObjectStatus, seen, inS3 bool) {
	t.Helper()
	st := schema.ObjectState{Bucket: bkt, Key: key, ETag: `"e"`, Status: status, ExtractorVersion: "v1", UpdatedAt: time.Now()}
	if status == schema.ObjectIndexed {
		st.Chunks = 2
	}
	if seen {
		st.SeenBy = x.job.JobID
	}
	data, _ := json.Marshal(&st)
	if _, err := x.objects.Put(context.Background(), schema.ObjectKey(x.job.Org, x.job.Collection, bkt, key), data); err != nil {
		t.Fatal(err)
	}
	if inS3 {
		x.env.S3.Put(bkt, key, "body of "+key)
	}
}

// sweep handles the sync's sweep and returns what it published.
func (x *sweeper) sweep(t *testing.T) (res *schema.Sweep, tombstones []*schema.Tombstone, deleted []string) {
	t.Helper()
	x.out = nil
	data, _ := schema.Encode(&x.job)
	if err := x.h.Handle(context.Background(), handlertest.Msg{Body: data}); err != nil {
		t.Fatal(err)
	}
	for _, o := range x.out {
		switch m := o.Msg.(type) {
		case *schema.Tombstone:
			tombstones = append(tombstones, m)
		case *schema.ObjectEvent:
			if m.Outcome != schema.OutcomeDeleted || m.Reason != schema.ReasonSwept || m.JobID != x.job.JobID {
				t.Fatalf("object event %+v", m)
			}
			deleted = append(deleted, m.Key)
		case *schema.JobEvent:
			if m.Type != schema.JobSwept || m.EventID != schema.SweptEventID(x.job.JobID) {
				t.Fatalf("job event %+v", m)
			}
			res = m.Sweep
		}
	}
	if res == nil {
		t.Fatal("no swept event")
	}
	return res, tombstones, deleted
}

func (x *sweeper) status(t *testing.T, bkt, key string) schema.ObjectStatus {
	t.Helper()
	e, err := x.objects.Get(context.Background(), schema.ObjectKey(x.job.Org, x.job.Collection, bkt, key))
	if err != nil {
		t.Fatal(err)
	}
	var st schema.ObjectState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		t.Fatal(err)
	}
	return st.Status
}

// The objects of the scope the listing did not see are asked of S3: the
// gone ones are tombstoned (their stored version's chunks) and marked
// deleted, the one S3 still has is kept; objects outside the scope (other
// prefix, other bucket) and already deleted ones are not looked at. A second
// sweep finds nothing more to do.
func TestSweepDeletesWhatS3ConfirmsGone(t *testing.T) {
	x := newSweeper(t, 0.5)
	for i := range 7 {
		x.hold(t, bucket, fmt.Sprintf("dir/seen-%d.txt", i), schema.ObjectIndexed, true, true)
	}
	x.hold(t, bucket, "dir/gone-indexed.txt", schema.ObjectIndexed, false, false)
	x.hold(t, bucket, "dir/gone-skipped.bin", schema.ObjectSkipped, false, false)
	x.hold(t, bucket, "dir/written-after-listing.txt", schema.ObjectIndexed, false, true)
	x.hold(t, bucket, "dir/deleted-before.txt", schema.ObjectDeleted, false, false)
	x.hold(t, bucket, "other/gone.txt", schema.ObjectIndexed, false, false)
	x.hold(t, "another-bucket", "dir/gone.txt", schema.ObjectIndexed, false, false)

	res, tombstones, deleted := x.sweep(t)
	want := schema.Sweep{Status: schema.SweepDone, Held: 10, Candidates: 3, Deleted: 2, Kept: 1}
	if *res != want {
		t.Fatalf("sweep %+v, want %+v", *res, want)
	}
	if len(tombstones) != 1 || tombstones[0].Key != "dir/gone-indexed.txt" || len(tombstones[0].ChunkIDs) != 2 {
		t.Fatalf("tombstones %+v", tombstones)
	}
	if strings.Join(slices.Sorted(slices.Values(deleted)), ",") != "dir/gone-indexed.txt,dir/gone-skipped.bin" {
		t.Fatalf("deleted %v", deleted)
	}
	for key, want := range map[string]schema.ObjectStatus{"dir/gone-indexed.txt": schema.ObjectDeleted, "dir/gone-skipped.bin": schema.ObjectDeleted,
		"dir/written-after-listing.txt": schema.ObjectIndexed, "other/gone.txt": schema.ObjectIndexed, "dir/seen-0.txt": schema.ObjectIndexed} {
		if got := x.status(t, bucket, key); got != want {
			t.Errorf("%s: %s, want %s", key, got, want)
		}
	}
	if got := testutil.ToFloat64(x.m.SweepObjects.WithLabelValues("deleted")); got != 2 {
		t.Fatalf("deleted metric %v", got)
	}
	again, tombstones, _ := x.sweep(t)
	if again.Deleted != 0 || again.Candidates != 1 || again.Kept != 1 || len(tombstones) != 0 {
		t.Fatalf("second sweep %+v", again)
	}
}

// A HEAD that is not a clean 404 deletes nothing: S3 answering 503 leaves
// every candidate, and the sweep says so (incomplete).
func TestSweepDeletesNothingS3DoesNotConfirm(t *testing.T) {
	x := newSweeper(t, 0.5)
	for i := range 4 {
		x.hold(t, bucket, fmt.Sprintf("dir/seen-%d.txt", i), schema.ObjectIndexed, true, true)
	}
	x.hold(t, bucket, "dir/gone.txt", schema.ObjectIndexed, false, false)
	x.env.S3.FailHeads.Store(true)
	res, tombstones, deleted := x.sweep(t)
	if res.Status != schema.SweepIncomplete || res.Unconfirmed != 1 || res.Deleted != 0 || len(tombstones) != 0 || len(deleted) != 0 {
		t.Fatalf("sweep %+v, %d tombstones, deleted %v", res, len(tombstones), deleted)
	}
	if got := x.status(t, bucket, "dir/gone.txt"); got != schema.ObjectIndexed {
		t.Fatalf("state %s", got)
	}
	x.env.S3.FailHeads.Store(false)
	if res, _, _ := x.sweep(t); res.Status != schema.SweepDone || res.Deleted != 1 {
		t.Fatalf("the next sweep %+v", res)
	}
}

// More candidates than MaxShare of the held objects: refused, nothing
// asked or deleted, audited; the same sweep with allow_mass_delete deletes.
func TestSweepRefusesAMassDelete(t *testing.T) {
	x := newSweeper(t, 0.5)
	for i := range 4 {
		x.hold(t, bucket, fmt.Sprintf("dir/seen-%d.txt", i), schema.ObjectIndexed, true, true)
	}
	for i := range 6 {
		x.hold(t, bucket, fmt.Sprintf("dir/gone-%d.txt", i), schema.ObjectIndexed, false, false)
	}
	heads := x.env.S3.Heads.Load()
	res, tombstones, _ := x.sweep(t)
	if res.Status != schema.SweepRefused || res.Held != 10 || res.Candidates != 6 || res.MaxShare != 0.5 || len(tombstones) != 0 ||
		!strings.Contains(res.Reason, "allow_mass_delete") || x.env.S3.Heads.Load() != heads {
		t.Fatalf("sweep %+v, %d tombstones, %d HEADs", res, len(tombstones), x.env.S3.Heads.Load()-heads)
	}
	trail, err := x.env.Registry.AuditTrail(context.Background(), x.job.Org, time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	audited := false
	for _, a := range trail {
		audited = audited || a.Action == "sync.sweep_refused"
	}
	if !audited {
		t.Fatalf("no audit record: %+v", trail)
	}
	x.job.AllowMassDelete = true
	if res, tombstones, _ := x.sweep(t); res.Status != schema.SweepDone || res.Deleted != 6 || len(tombstones) != 6 {
		t.Fatalf("allowed: %+v, %d tombstones", res, len(tombstones))
	}
}

// A cancelled job is not swept.
func TestSweepSkipsACancelledJob(t *testing.T) {
	x := newSweeper(t, 0.5)
	x.hold(t, bucket, "dir/gone.txt", schema.ObjectIndexed, false, false)
	ctx := context.Background()
	job := x.job
	job.Sweep = false
	if _, err := x.env.Jobs.Submit(ctx, &job); err != nil {
		t.Fatal(err)
	}
	if _, err := x.env.Jobs.Cancel(ctx, x.job.Org, x.job.JobID); err != nil {
		t.Fatal(err)
	}
	if res, tombstones, _ := x.sweep(t); res.Status != schema.SweepSkipped || len(tombstones) != 0 {
		t.Fatalf("sweep %+v", res)
	}
}

// A sync whose filters now exclude objects it holds removes them (without
// asking S3, which still has them): counted in deleted and excluded, their
// outcomes reason excluded_by_filter.
func TestSweepRemovesWhatFiltersNowExclude(t *testing.T) {
	x := newSweeper(t, 1)
	x.hold(t, bucket, "dir/keep.txt", schema.ObjectIndexed, true, true)
	x.hold(t, bucket, "dir/app.log", schema.ObjectIndexed, false, true)
	x.job.Filters = &schema.Filters{Exclude: []string{"*.log"}}
	heads := x.env.S3.Heads.Load()
	x.out = nil
	data, _ := schema.Encode(&x.job)
	if err := x.h.Handle(context.Background(), handlertest.Msg{Body: data}); err != nil {
		t.Fatal(err)
	}
	var res *schema.Sweep
	var reasons []string
	for _, o := range x.out {
		switch m := o.Msg.(type) {
		case *schema.JobEvent:
			res = m.Sweep
		case *schema.ObjectEvent:
			reasons = append(reasons, m.Key+" "+m.Reason)
		}
	}
	if res == nil || res.Deleted != 1 || res.Excluded != 1 || x.env.S3.Heads.Load() != heads || strings.Join(reasons, ",") != "dir/app.log "+schema.ReasonExcluded {
		t.Fatalf("sweep %+v, outcomes %v, %d HEADs", res, reasons, x.env.S3.Heads.Load()-heads)
	}
	if got := x.status(t, bucket, "dir/app.log"); got != schema.ObjectDeleted {
		t.Fatalf("state %s", got)
	}
}

// Two syncs over one scope at once (a bucket sync and a directory sync of
// one collection) each mark the objects their listings hold, and only the
// last mark stays: an object another sync saw after this one was created
// is not a candidate (it was there during this sync); one seen before it,
// by another sync, still is.
func TestSweepTrustsOverlappingSyncs(t *testing.T) {
	x := newSweeper(t, 1)
	x.job.CreatedAt = time.Now().Add(-time.Minute)
	mark := func(key string, by string, at time.Time, inS3 bool) {
		st := schema.ObjectState{Bucket: bucket, Key: key, ETag: `"e"`, Status: schema.ObjectIndexed, ExtractorVersion: "v1", Chunks: 1,
			UpdatedAt: at, SeenBy: by, SeenAt: &at}
		data, _ := json.Marshal(&st)
		if _, err := x.objects.Put(context.Background(), schema.ObjectKey(x.job.Org, x.job.Collection, bucket, key), data); err != nil {
			t.Fatal(err)
		}
		if inS3 {
			x.env.S3.Put(bucket, key, "body of "+key)
		}
	}
	for i := range 3 {
		mark(fmt.Sprintf("dir/other-sync-%d.txt", i), "job_bucket_sync", time.Now(), true) // the other sync's mark, after this one began
	}
	mark("dir/gone.txt", "job_last_week", x.job.CreatedAt.Add(-24*time.Hour), false) // an older sync's mark: gone since
	res, tombstones, deleted := x.sweep(t)
	if res.Status != schema.SweepDone || res.Held != 4 || res.Candidates != 1 || res.Deleted != 1 || len(tombstones) != 1 || len(deleted) != 1 || deleted[0] != "dir/gone.txt" {
		t.Fatalf("sweep %+v, deleted %v", res, deleted)
	}
}
