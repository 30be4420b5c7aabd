package worker

import (
	"context"
	"fmt"
	"testing"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/schedules"
)

func (e *env) eraser(t *testing.T) *collections.Eraser {
	t.Helper()
	ctx := context.Background()
	colls, err := collections.Open(ctx, e.js, nil)
	if err != nil {
		t.Fatal(err)
	}
	j, err := jobs.Open(ctx, e.js, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := schedules.Open(ctx, e.js, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := e.w.cfg.Registry
	return &collections.Eraser{JS: e.js, Store: colls, Jobs: j, Schedules: sc, Registry: reg}
}

// visibleIn is how many chunks of collection a consumer folding CHUNKS sees.
func visibleIn(t *testing.T, e *env, collection string) int {
	t.Helper()
	view, err := collections.Fold(context.Background(), e.js, e.org.ID, collection, false)
	if err != nil {
		t.Fatal(err)
	}
	return len(view.Visible())
}

// A document, then the rest of the collection, then the collection itself,
// erased through a running worker: each a job with exact counts, every
// chunk invisible to a consumer folding CHUNKS, the states gone, the
// collection's schedule removed, new index jobs refused while it is deleted.
func TestEraseJobsThroughTheWorker(t *testing.T) {
	objects := map[string]string{}
	for i := range 12 {
		objects[fmt.Sprintf("docs/%02d.txt", i)] = fmt.Sprintf("Document number %d, with enough words to be a chunk or two of text.", i)
	}
	objects["docs/image.png"] = "\x89PNG\r\n\x1a\n not text"
	e := setup(t, objects)
	ctx := context.Background()
	er := e.eraser(t)
	if _, _, err := er.Store.Ensure(ctx, e.org.ID, "docs"); err != nil { // as the API does
		t.Fatal(err)
	}
	e.submitJob(t, e.syncJob("job_index"))
	if st := e.wait(t, "job_index"); st.FilesIndexed != 12 || st.FilesSkipped != 1 {
		t.Fatalf("index: %+v", st)
	}
	all := visibleIn(t, e, "docs")
	stats, err := er.Store.Stats(ctx, e.org.ID, "docs")
	if err != nil || stats.Documents != 13 || stats.Chunks != int64(all) {
		t.Fatalf("stats %+v (%d visible) %v", stats, all, err)
	}

	// One document.
	doc := schema.DocumentID(bucket, "docs/03.txt")
	st, err := er.DeleteDocument(ctx, e.org.ID, "docs", doc)
	if err != nil {
		t.Fatal(err)
	}
	end := e.wait(t, st.JobID)
	chunks03 := e.state(t, "docs/04.txt").Chunks // the documents are alike: as many chunks
	if end.Status != schema.JobStatusCompleted || end.FilesDeleted != 1 || end.FilesTotal != 1 || end.ChunksDeleted != int64(chunks03) {
		t.Fatalf("delete document: %+v", end)
	}
	if got := visibleIn(t, e, "docs"); got != all-chunks03 {
		t.Fatalf("%d chunks visible after the delete, want %d", got, all-chunks03)
	}
	if _, err := er.Store.Document(ctx, e.org.ID, "docs", doc); err == nil {
		t.Fatal("the deleted document is still listed")
	}

	// The rest: a wipe.
	st, err = er.Wipe(ctx, e.org.ID, "docs", "")
	if err != nil {
		t.Fatal(err)
	}
	if end := e.wait(t, st.JobID); end.Status != schema.JobStatusCompleted || end.FilesDeleted != 12 || end.FilesTotal != 12 {
		t.Fatalf("wipe: %+v", end)
	}
	if got := visibleIn(t, e, "docs"); got != 0 {
		t.Fatalf("%d chunks visible after the wipe", got)
	}

	// Index again, then delete the collection (with a schedule).
	e.submitJob(t, e.syncJob("job_again"))
	if st := e.wait(t, "job_again"); st.FilesIndexed != 12 {
		t.Fatalf("index again: %+v", st)
	}
	if _, err := er.Schedules.Set(ctx, &schedules.Schedule{Org: e.org.ID, Collection: "docs", Every: "1h", Job: e.syncJob("")}); err != nil {
		t.Fatal(err)
	}
	st, started, err := er.DeleteCollection(ctx, "test", e.org.ID, "docs")
	if err != nil || !started {
		t.Fatalf("delete collection: %v %v", started, err)
	}
	if _, _, err := er.Store.Ensure(ctx, e.org.ID, "docs"); err != collections.ErrDeleting {
		t.Fatalf("a collection being deleted takes new jobs: %v", err)
	}
	end = e.wait(t, st.JobID)
	if end.Status != schema.JobStatusCompleted || end.FilesDeleted != 13 {
		t.Fatalf("delete collection: %+v", end)
	}
	if got := visibleIn(t, e, "docs"); got != 0 {
		t.Fatalf("%d chunks visible after the collection delete", got)
	}
	if _, _, err := er.Store.Get(ctx, e.org.ID, "docs"); err != collections.ErrNotFound {
		t.Fatalf("the collection is left: %v", err)
	}
	if _, _, err := er.Schedules.Get(ctx, e.org.ID, "docs"); err != schedules.ErrNotFound {
		t.Fatalf("the schedule is left: %v", err)
	}
	if s, err := er.Store.Stats(ctx, e.org.ID, "docs"); err != nil || s.Documents != 0 {
		t.Fatalf("states left: %+v %v", s, err)
	}
	waitFor(t, func() bool { return e.metric(t, "stevedore_erase_jobs_total", "kind", "delete_collection") == 1 })
}

// A retry re-runs only what its job failed on: an object gone when the job
// ran (NoSuchKey) is back; the retry fetches that one object and nothing
// else, and counts exactly it.
func TestRetryTouchesOnlyWhatFailed(t *testing.T) {
	e := setup(t, corpus())
	e.s3.Gone(bucket, "e/gone.txt")
	e.submit(t, "job_1", true)
	if st := e.wait(t, "job_1"); st.FilesFailed != 1 || st.FilesIndexed != 4 {
		t.Fatalf("job %+v", st)
	}
	if st := e.state(t, "e/gone.txt"); st.Status != schema.ObjectFailed || st.ErrorCode != schema.CodeNoSuchKey {
		t.Fatalf("failed state %+v", st)
	}
	e.s3.Put(bucket, "e/gone.txt", "Back again.")
	store, _ := jobs.Open(context.Background(), e.js, nil)
	prev := e.status(t, "job_1")
	gets := e.s3.Gets.Load()
	if _, err := store.Retry(context.Background(), prev, "job_retry"); err != nil {
		t.Fatal(err)
	}
	st := e.wait(t, "job_retry")
	if st.Status != schema.JobStatusCompleted || st.FilesTotal != 1 || st.FilesIndexed != 1 || st.Kind != schema.JobRetry || e.s3.Gets.Load()-gets != 1 {
		t.Fatalf("retry %+v, %d GETs", st, e.s3.Gets.Load()-gets)
	}
	if st := e.state(t, "e/gone.txt"); st.Status != schema.ObjectIndexed || st.JobID != "job_retry" {
		t.Fatalf("state %+v", st)
	}
}
