package sweep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/worker/handlertest"
)

// erased is what one run of an erase job published.
type erased struct {
	tombstones []*schema.Tombstone
	keys       []string // of the deleted outcomes, sorted
	ids        []string // every message ID, in order
	ended      bool
	next       *schema.Job // the next page
}

// erase runs job and returns what it published (and its error).
func (x *sweeper) erase(t *testing.T, job schema.Job) (erased, error) {
	t.Helper()
	x.out = nil
	data, _ := schema.Encode(&job)
	err := x.h.Handle(context.Background(), handlertest.Msg{Body: data})
	var e erased
	for _, o := range x.out {
		e.ids = append(e.ids, o.MsgID)
		switch m := o.Msg.(type) {
		case *schema.Tombstone:
			e.tombstones = append(e.tombstones, m)
		case *schema.ObjectEvent:
			if m.Outcome != schema.OutcomeDeleted || m.Reason != schema.ReasonErased || m.JobID != job.JobID {
				t.Fatalf("object event %+v", m)
			}
			e.keys = append(e.keys, m.Key)
		case *schema.Job:
			e.next = m
		case *schema.JobEvent:
			if m.Type == schema.JobPlanned && m.Last && m.EventID == schema.ErasedEventID(job.JobID) {
				e.ended = true
			} else {
				t.Fatalf("job event %+v", m)
			}
		}
	}
	slices.Sort(e.keys)
	return e, err
}

func (x *sweeper) exists(t *testing.T, collection, key string) bool {
	t.Helper()
	_, err := x.objects.Get(context.Background(), schema.ObjectKey(x.job.Org, collection, bucket, key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func eraseJob(x *sweeper, id string, kind schema.JobKind) schema.Job {
	return schema.Job{JobID: id, Org: x.job.Org, Collection: x.job.Collection, Kind: kind, CreatedAt: time.Now().UTC()}
}

// A wipe tombstones every indexed document's chunks, publishes one deleted
// outcome per document (indexed or skipped), removes their states (and
// those of objects deleted before, which are not documents), leaves other
// collections alone, and ends the job; run again it finds nothing and
// publishes only the same end.
func TestWipeErasesEveryDocument(t *testing.T) {
	x := newSweeper(t, 0.5)
	x.hold(t, bucket, "a.txt", schema.ObjectIndexed, false, true)
	x.hold(t, bucket, "b.png", schema.ObjectSkipped, false, true)
	x.hold(t, bucket, "c.txt", schema.ObjectDeleted, false, false)
	other := x.job
	x.job.Collection = "other"
	x.hold(t, bucket, "a.txt", schema.ObjectIndexed, false, true)
	x.job = other

	e, err := x.erase(t, eraseJob(x, "job_wipe", schema.JobWipe))
	if err != nil {
		t.Fatal(err)
	}
	if !e.ended || strings.Join(e.keys, ",") != "a.txt,b.png" || len(e.tombstones) != 1 || len(e.tombstones[0].ChunkIDs) != 2 || e.tombstones[0].Key != "a.txt" {
		t.Fatalf("wipe published %+v", e)
	}
	for _, k := range []string{"a.txt", "b.png", "c.txt"} {
		if x.exists(t, "docs", k) {
			t.Errorf("%s: state left", k)
		}
	}
	if !x.exists(t, "other", "a.txt") {
		t.Fatal("another collection's document was erased")
	}
	if got := testutil.ToFloat64(x.m.Erased.WithLabelValues("wipe")); got != 2 {
		t.Fatalf("erased metric %v", got)
	}
	trail, err := x.env.Registry.AuditTrail(context.Background(), x.job.Org, time.Time{}, 100)
	if err != nil || len(trail) == 0 || trail[len(trail)-1].Action != "erase.done" {
		t.Fatalf("audit %+v %v", trail, err)
	}
	again, err := x.erase(t, eraseJob(x, "job_wipe", schema.JobWipe))
	if err != nil || !again.ended || len(again.keys) != 0 || len(again.tombstones) != 0 {
		t.Fatalf("again: %+v %v", again, err)
	}
}

// Killed midway (here: its publish fails after the state was marked), the
// erase is redelivered and finishes with the same message IDs: the tracker
// counts the document once. An index task meanwhile waits (the state is
// erasing).
func TestEraseRedeliveredPublishesTheSameIDs(t *testing.T) {
	x := newSweeper(t, 0.5)
	x.hold(t, bucket, "a.txt", schema.ObjectIndexed, false, true)
	job := eraseJob(x, "job_doc", schema.JobDeleteDocument)
	job.Document = schema.DocumentID(bucket, "a.txt")
	fail := errors.New("killed")
	publish := x.h.cfg.Publish
	x.h.cfg.Publish = func(ctx context.Context, msgs []schema.Out) error {
		_ = publish(ctx, msgs)
		return fail
	}
	first, err := x.erase(t, job)
	if !errors.Is(err, fail) {
		t.Fatalf("first run: %v", err)
	}
	e, _ := x.objects.Get(context.Background(), schema.ObjectKey(x.job.Org, x.job.Collection, bucket, "a.txt"))
	var st schema.ObjectState
	_ = json.Unmarshal(e.Value(), &st)
	if st.Status != schema.ObjectErasing || st.JobID != job.JobID {
		t.Fatalf("state after the crash: %+v", st)
	}
	x.h.cfg.Publish = publish
	second, err := x.erase(t, job)
	if err != nil || !second.ended {
		t.Fatalf("redelivered: %+v %v", second, err)
	}
	if !slices.Equal(first.ids, second.ids[:len(first.ids)]) {
		t.Fatalf("IDs differ:\n%v\n%v", first.ids, second.ids)
	}
	if x.exists(t, "docs", "a.txt") {
		t.Fatal("state left")
	}
}

// A document delete erases that one document; one the collection does not
// hold ends with nothing erased.
func TestDeleteDocumentErasesOne(t *testing.T) {
	x := newSweeper(t, 0.5)
	x.hold(t, bucket, "a.txt", schema.ObjectIndexed, false, true)
	x.hold(t, bucket, "b.txt", schema.ObjectIndexed, false, true)
	job := eraseJob(x, "job_doc", schema.JobDeleteDocument)
	job.Document = schema.DocumentID(bucket, "b.txt")
	e, err := x.erase(t, job)
	if err != nil || !e.ended || strings.Join(e.keys, ",") != "b.txt" || len(e.tombstones) != 1 {
		t.Fatalf("%+v %v", e, err)
	}
	if !x.exists(t, "docs", "a.txt") || x.exists(t, "docs", "b.txt") {
		t.Fatal("wrong document erased")
	}
	job.JobID, job.Document = "job_none", schema.DocumentID(bucket, "none.txt")
	if e, err := x.erase(t, job); err != nil || !e.ended || len(e.keys) != 0 {
		t.Fatalf("%+v %v", e, err)
	}
}

// A wipe for an integration (revoked with its data) erases only the
// documents read with it.
func TestWipeOfAnIntegration(t *testing.T) {
	x := newSweeper(t, 0.5)
	for key, in := range map[string]string{"mine.txt": "int_revoked", "theirs.txt": "int_other"} {
		st := schema.ObjectState{Bucket: bucket, Key: key, ETag: `"e"`, Status: schema.ObjectIndexed, Chunks: 1, ExtractorVersion: "v1", IntegrationID: in}
		data, _ := json.Marshal(&st)
		if _, err := x.objects.Put(context.Background(), schema.ObjectKey(x.job.Org, x.job.Collection, bucket, key), data); err != nil {
			t.Fatal(err)
		}
	}
	job := eraseJob(x, "job_int", schema.JobWipe)
	job.IntegrationID = "int_revoked"
	if e, err := x.erase(t, job); err != nil || strings.Join(e.keys, ",") != "mine.txt" {
		t.Fatalf("%+v %v", e, err)
	}
	if !x.exists(t, "docs", "theirs.txt") {
		t.Fatal("another integration's document was erased")
	}
}

// A collection delete erases every document in two passes, then removes the
// collection's record (only when it is this job's to remove).
func TestDeleteCollectionRemovesTheRecord(t *testing.T) {
	x := newSweeper(t, 0.5)
	erasePassGap = 10 * time.Millisecond
	t.Cleanup(func() { erasePassGap = 2*collections.CacheTTL + 500*time.Millisecond })
	ctx := context.Background()
	store := x.env.Collections
	if _, _, err := store.Ensure(ctx, x.job.Org, "docs"); err != nil {
		t.Fatal(err)
	}
	if _, marked, err := store.MarkDeleting(ctx, x.job.Org, "docs", "job_del", func(string) bool { return false }); err != nil || !marked {
		t.Fatalf("mark: %v %v", marked, err)
	}
	x.hold(t, bucket, "a.txt", schema.ObjectIndexed, false, true)
	e, err := x.erase(t, eraseJob(x, "job_del", schema.JobDeleteCollection))
	if err != nil || !e.ended || strings.Join(e.keys, ",") != "a.txt" {
		t.Fatalf("%+v %v", e, err)
	}
	if _, _, err := store.Get(ctx, x.job.Org, "docs"); !errors.Is(err, collections.ErrNotFound) {
		t.Fatalf("the record is left: %v", err)
	}
}

// An erase that cannot finish fails its job, with why.
func TestEraseGivenUpFailsTheJob(t *testing.T) {
	x := newSweeper(t, 0.5)
	job := eraseJob(x, "job_wipe", schema.JobWipe)
	data, _ := schema.Encode(&job)
	out, err := x.h.GiveUp(data, &schema.ClassError{Class: schema.ClassTransient, Err: errors.New("NATS was away")})
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := out[0].Msg.(*schema.JobEvent)
	if len(out) != 1 || ev == nil || ev.Type != schema.JobFailed || !strings.Contains(ev.Reason, "NATS was away") {
		t.Fatalf("%+v", ev)
	}
}

// A wipe larger than a page erases a page per message and hands on the
// rest: each page its own message (its own deliveries), the last one ends
// the job; every document erased once.
func TestWipeInPages(t *testing.T) {
	x := newSweeper(t, 0.5)
	ErasePageSize = 2
	t.Cleanup(func() { ErasePageSize = 10_000 })
	for i := range 5 {
		x.hold(t, bucket, fmt.Sprintf("%d.txt", i), schema.ObjectIndexed, false, true)
	}
	job := eraseJob(x, "job_pages", schema.JobWipe)
	var keys []string
	for page := 0; ; page++ {
		e, err := x.erase(t, job)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, e.keys...)
		if e.ended {
			if page != 2 || e.next != nil {
				t.Fatalf("ended on page %d (next %+v)", page, e.next)
			}
			break
		}
		if e.next == nil || e.next.Page != page+1 || len(e.keys) != 2 || e.ids[len(e.ids)-1] != schema.EraseMsgID(job.JobID, page+1) {
			t.Fatalf("page %d: %+v", page, e)
		}
		job = *e.next
	}
	slices.Sort(keys)
	if strings.Join(keys, ",") != "0.txt,1.txt,2.txt,3.txt,4.txt" {
		t.Fatalf("erased %v", keys)
	}
}

// A redelivered page whose job erased documents since the page started
// hands the rest to the next page (its deliveries counted afresh) instead
// of counting towards MaxDeliver; one that made no progress is retried.
func TestRedeliveredPageHandsOver(t *testing.T) {
	x := newSweeper(t, 0.5)
	x.hold(t, bucket, "a.txt", schema.ObjectIndexed, false, true)
	job := eraseJob(x, "job_handover", schema.JobWipe)
	job.Page, job.Planned = 3, 10
	st := schema.NewJobStatus(&job)
	st.FilesDeleted = 10
	if err := x.env.Jobs.Create(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	run := func() erased {
		x.out = nil
		data, _ := schema.Encode(&job)
		if err := x.h.Handle(context.Background(), handlertest.Msg{Body: data, Delivered: 2}); err != nil {
			t.Fatal(err)
		}
		var e erased
		for _, o := range x.out {
			if j, ok := o.Msg.(*schema.Job); ok {
				e.next = j
			}
			if ev, ok := o.Msg.(*schema.ObjectEvent); ok {
				e.keys = append(e.keys, ev.Key)
			}
		}
		return e
	}
	if e := run(); e.next != nil || len(e.keys) != 1 {
		t.Fatalf("no progress since the page started: want it retried as it is, got %+v", e)
	}
	job.Planned = 7 // the page started when 7 were erased; 10 are now
	x.hold(t, bucket, "b.txt", schema.ObjectIndexed, false, true)
	if e := run(); e.next == nil || e.next.Page != 4 || e.next.Planned != 10 || len(e.keys) != 0 {
		t.Fatalf("progress since the page started: want the next page, got %+v", e)
	}
}
