package jobs

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/natstest"
)

func open(t *testing.T) (*Store, jetstream.JetStream) {
	t.Helper()
	_, _, js := natstest.Start(t)
	s, err := Open(context.Background(), js, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, js
}

// Submit does the whole sequence: the record, its list index entry, page 0
// in JOBS, and a wake signal for the planners.
func TestSubmit(t *testing.T) {
	s, js := open(t)
	ctx := context.Background()
	wakes := make(chan *nats.Msg, 4)
	sub, err := js.Conn().ChanSubscribe(schema.AllWakes("jobs"), wakes)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	job := &schema.Job{JobID: "job_sub", Org: "org_1", Collection: "docs", IntegrationID: "int_1", Kind: schema.JobBucket, Bucket: "bucket-b", Region: "us-east-1", CreatedAt: time.Now()}
	st, err := s.Submit(ctx, job)
	if err != nil || st.Status != schema.JobStatusPending {
		t.Fatalf("submit: %+v, %v", st, err)
	}
	if got, _, err := s.Get(ctx, "org_1", "job_sub"); err != nil || got.JobID != "job_sub" {
		t.Fatalf("record: %+v, %v", got, err)
	}
	if page, err := s.List(ctx, "org_1", Filter{}); err != nil || len(page.Jobs) != 1 {
		t.Fatalf("the index entry is missing: %+v, %v", page, err)
	}
	stream, _ := js.Stream(ctx, schema.StreamJobs)
	if raw, err := stream.GetLastMsgForSubject(ctx, schema.JobSubject("org_1", "docs")); err != nil {
		t.Fatalf("page 0: %v", err)
	} else if j, err := schema.DecodeJob(raw.Data); err != nil || j.JobID != "job_sub" || j.Page != 0 {
		t.Fatalf("page 0: %+v, %v", j, err)
	}
	select {
	case <-wakes:
	case <-time.After(10 * time.Second):
		t.Fatal("no wake signal")
	}
	if _, err := s.Submit(ctx, job); err == nil {
		t.Fatal("a job ID was taken twice")
	}
}

// A job whose page 0 cannot be published leaves no record behind.
func TestPublishFailureRemovesTheRecord(t *testing.T) {
	s, js := open(t)
	ctx := context.Background()
	if err := js.DeleteStream(ctx, schema.StreamJobs); err != nil {
		t.Fatal(err)
	}
	job := &schema.Job{JobID: "job_lost", Org: "org_1", Collection: "docs", Kind: schema.JobBucket, Bucket: "b", CreatedAt: time.Now()}
	if _, err := s.Submit(ctx, job); err == nil {
		t.Fatal("submitted without JOBS")
	}
	if _, _, err := s.Get(ctx, "org_1", "job_lost"); err != ErrNotFound {
		t.Fatalf("record left behind: %v", err)
	}
	if page, _ := s.List(ctx, "org_1", Filter{}); len(page.Jobs) != 0 {
		t.Fatalf("index entry left behind: %+v", page)
	}
}

// The Folder folds from the record it last wrote; when another writer (a
// cancel, another tracker) changed it since, the compare-and-set fails, the
// record is read again and nothing either wrote is lost.
func TestFolderYieldsToOtherWriters(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	job := &schema.Job{JobID: "job_cached", Org: "org_1", Collection: "docs", Kind: schema.JobDirectory, Bucket: "b"}
	if err := s.Create(ctx, schema.NewJobStatus(job)); err != nil {
		t.Fatal(err)
	}
	f := s.Folder(nil)
	var finished *schema.JobStatus
	fold := func(seq uint64, ev any) {
		t.Helper()
		st, err := f.Fold(ctx, job.JobID, []Event{{Seq: seq, Event: ev}})
		if err != nil {
			t.Fatal(err)
		}
		if st != nil {
			finished = st
		}
	}
	fold(1, &schema.JobEvent{JobID: job.JobID, Type: schema.JobPlanned, Page: 0, Tasks: 2, Last: true})
	if _, ok := f.records.Get(job.JobID); !ok {
		t.Fatal("the record the folder wrote is not kept")
	}
	// Another writer changes the record behind the folder's back.
	entry, err := s.kv.Get(ctx, job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	var st schema.JobStatus
	_ = json.Unmarshal(entry.Value(), &st)
	st.CustomMetadata = json.RawMessage(`{"written":"elsewhere"}`)
	data, _ := json.Marshal(&st)
	if _, err := s.kv.Update(ctx, job.JobID, data, entry.Revision()); err != nil {
		t.Fatal(err)
	}
	fold(2, &schema.ObjectEvent{JobID: job.JobID, Key: "a.txt", Outcome: schema.OutcomeIndexed, Chunks: 1, Tokens: 5})
	fold(2, &schema.ObjectEvent{JobID: job.JobID, Key: "a.txt", Outcome: schema.OutcomeIndexed, Chunks: 1, Tokens: 5}) // redelivered: skipped
	fold(3, &schema.ObjectEvent{JobID: job.JobID, Key: "b.txt", Outcome: schema.OutcomeIndexed, Chunks: 1, Tokens: 7})
	got, _, err := s.Get(ctx, "org_1", job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.CustomMetadata) != `{"written":"elsewhere"}` || got.FilesIndexed != 2 || got.TokensUsed != 12 || !got.Final() || got.LastEventSeq != 3 {
		t.Fatalf("record after folding around another writer: %+v", got)
	}
	if finished == nil || finished.Status != got.Status {
		t.Fatalf("the fold that finished the job did not say so: %+v", finished)
	}
	if _, ok := f.records.Get(job.JobID); ok {
		t.Fatal("a final job's record is still kept")
	}
}

// The Cache reads what tasks need (cancelled, custom metadata), and a
// cancel shows within its second.
func TestCacheSeesACancel(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	job := &schema.Job{JobID: "job_c", Org: "org_1", Collection: "docs", Kind: schema.JobBucket, Bucket: "b", CustomMetadata: json.RawMessage(`{"team":"a"}`)}
	if err := s.Create(ctx, schema.NewJobStatus(job)); err != nil {
		t.Fatal(err)
	}
	c := s.Cache()
	if r, err := c.Get(ctx, "job_c"); err != nil || r.Cancelled || string(r.CustomMetadata) != `{"team":"a"}` {
		t.Fatalf("record %+v, %v", r, err)
	}
	if _, err := s.Cancel(ctx, "org_1", "job_c"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !c.Cancelled(ctx, "job_c") {
		if time.Now().After(deadline) {
			t.Fatal("the cancel never showed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c.Cancelled(ctx, "") || c.Cancelled(ctx, "job_none") {
		t.Fatal("no job counts as cancelled")
	}
}
