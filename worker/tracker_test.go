package worker

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stevedore-dev/stevedore/schema"
)

// The tracker folds from the record it last wrote; when another writer (the
// producer's cancel, another tracker) changed it since, the compare-and-set
// fails, the record is read again and nothing either wrote is lost.
func TestTrackerCacheYieldsToOtherWriters(t *testing.T) {
	e := setup(t, nil)
	ctx := context.Background()
	w := e.w
	job := &schema.Job{JobID: "job_cached", Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Kind: schema.JobDirectory, Bucket: bucket}
	data, _ := json.Marshal(schema.NewJobStatus(job))
	if _, err := w.jobs.Create(ctx, job.JobID, data); err != nil {
		t.Fatal(err)
	}
	tr := newTracking()
	fold := func(seq uint64, ev any) {
		t.Helper()
		if err := w.foldJob(ctx, tr, job.JobID, []*foldable{{jobID: job.JobID, seq: seq, event: ev}}); err != nil {
			t.Fatal(err)
		}
	}
	fold(1, &schema.JobEvent{JobID: job.JobID, Type: schema.JobPlanned, Page: 0, Tasks: 2, Last: true})
	if _, ok := tr.records.Get(job.JobID); !ok {
		t.Fatal("the record the tracker wrote is not kept")
	}
	// Another writer changes the record behind the tracker's back.
	entry, err := w.jobs.Get(ctx, job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	var st schema.JobStatus
	_ = json.Unmarshal(entry.Value(), &st)
	st.CustomMetadata = json.RawMessage(`{"written":"elsewhere"}`)
	data, _ = json.Marshal(&st)
	if _, err := w.jobs.Update(ctx, job.JobID, data, entry.Revision()); err != nil {
		t.Fatal(err)
	}
	fold(2, &schema.ObjectEvent{JobID: job.JobID, Key: "a.txt", Outcome: schema.OutcomeIndexed, Chunks: 1, Tokens: 5})
	fold(2, &schema.ObjectEvent{JobID: job.JobID, Key: "a.txt", Outcome: schema.OutcomeIndexed, Chunks: 1, Tokens: 5}) // redelivered: skipped
	fold(3, &schema.ObjectEvent{JobID: job.JobID, Key: "b.txt", Outcome: schema.OutcomeIndexed, Chunks: 1, Tokens: 7})
	entry, err = w.jobs.Get(ctx, job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	st = schema.JobStatus{}
	_ = json.Unmarshal(entry.Value(), &st)
	if string(st.CustomMetadata) != `{"written":"elsewhere"}` || st.FilesIndexed != 2 || st.TokensUsed != 12 || !st.Final() || st.LastEventSeq != 3 {
		t.Fatalf("record after folding around another writer: %+v", st)
	}
	if _, ok := tr.records.Get(job.JobID); ok {
		t.Fatal("a final job's record is still kept")
	}
}
