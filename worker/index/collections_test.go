package index

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/worker/handlertest"
)

func (x *indexer) state(t *testing.T, key string) *schema.ObjectState {
	t.Helper()
	kv, err := x.env.JS.KeyValue(context.Background(), schema.BucketObjects)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), schema.ObjectKey(x.task.Org, x.task.Collection, bucket, key))
	if err != nil {
		t.Fatalf("state of %s: %v", key, err)
	}
	var st schema.ObjectState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// The state of an indexed object records where CHUNKS stored its chunks
// (the sequences of their acknowledgements, as runs), the integration it
// was read with and its size: GET of a document reads its chunks by them.
func TestStateRecordsWhereTheChunksAre(t *testing.T) {
	x := newIndexer(t)
	body := strings.Repeat("A document long enough for several chunks of sixteen tokens. ", 10)
	x.s3.Put(bucket, "a.txt", body)
	chunks, _, _, _ := x.handle(t, "a.txt")
	st := x.state(t, "a.txt")
	if len(chunks) < 3 || st.Chunks != len(chunks) || schema.SeqCount(st.ChunkSeqs) != len(chunks) || st.IntegrationID != x.task.IntegrationID ||
		st.Size != int64(len(body)) {
		t.Fatalf("%d chunks; state %+v", len(chunks), st)
	}
	seqs := schema.Seqs(st.ChunkSeqs, 0)
	for i := range chunks {
		if i > 0 && seqs[i] <= seqs[i-1] {
			t.Fatalf("sequences out of chunk order: %v", seqs)
		}
	}
}

// A collection being deleted takes no new documents: its tasks are
// skipped (collection_deleted), nothing published, no state written.
func TestTasksOfADeletedCollectionAreSkipped(t *testing.T) {
	x := newIndexer(t)
	ctx := context.Background()
	store := x.env.Collections
	if _, _, err := store.Ensure(ctx, x.task.Org, x.task.Collection); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.MarkDeleting(ctx, x.task.Org, x.task.Collection, "job_del", func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	x.s3.Put(bucket, "a.txt", "A document.")
	chunks, commits, _, ev := x.handle(t, "a.txt")
	if len(chunks) != 0 || len(commits) != 0 || ev.Outcome != schema.OutcomeSkipped || ev.Reason != schema.ReasonCollectionDeleted {
		t.Fatalf("%d chunks, %d commits, %+v", len(chunks), len(commits), ev)
	}
	kv, _ := x.env.JS.KeyValue(ctx, schema.BucketObjects)
	if _, err := kv.Get(ctx, schema.ObjectKey(x.task.Org, x.task.Collection, bucket, "a.txt")); err == nil {
		t.Fatal("a state was written into a collection being deleted")
	}
}

// A document an erase job is removing is not indexed over it: the task
// is retried (transient) until the erase has removed it.
func TestErasingDocumentIsWaitedFor(t *testing.T) {
	x := newIndexer(t)
	x.s3.Put(bucket, "a.txt", "A document.")
	x.handle(t, "a.txt")
	st := x.state(t, "a.txt")
	st.Status, st.JobID = schema.ObjectErasing, "job_wipe"
	data, _ := json.Marshal(st)
	kv, _ := x.env.JS.KeyValue(context.Background(), schema.BucketObjects)
	if _, err := kv.Put(context.Background(), schema.ObjectKey(x.task.Org, x.task.Collection, bucket, "a.txt"), data); err != nil {
		t.Fatal(err)
	}
	task := x.task
	task.Key, task.JobID = "a.txt", "job_k"
	msg, _ := schema.Encode(&task)
	err := x.h.Handle(context.Background(), handlertest.Msg{Body: msg})
	var ce *schema.ClassError
	if !errors.As(err, &ce) || ce.Class != schema.ClassTransient || !strings.Contains(err.Error(), "being erased") {
		t.Fatalf("want a transient error, got %v", err)
	}
}

// A task given up leaves its document's status: failed, with the reason
// and the stable code — unless an indexed version stands, which keeps its
// state (its chunks stay visible).
func TestGivenUpTaskRecordsAFailedDocument(t *testing.T) {
	x := newIndexer(t)
	task := x.task
	task.Key = "denied.txt"
	data, _ := schema.Encode(&task)
	out, err := x.h.GiveUp(data, &schema.ClassError{Class: schema.ClassTenantPermission, Code: schema.CodeAccessDenied, Err: errors.New("GetObject: AccessDenied")})
	if len(out) != 1 || err != nil {
		t.Fatalf("%+v, %v", out, err)
	}
	st := x.state(t, "denied.txt")
	if st.Status != schema.ObjectFailed || st.ErrorCode != schema.CodeAccessDenied || st.Reason == "" || st.Chunks != 0 {
		t.Fatalf("failed state %+v", st)
	}
	x.s3.Put(bucket, "a.txt", "A document.")
	x.handle(t, "a.txt")
	task.Key = "a.txt"
	data, _ = schema.Encode(&task)
	if _, err := x.h.GiveUp(data, &schema.ClassError{Class: schema.ClassTransient, Err: errors.New("later")}); err != nil {
		t.Fatal(err)
	}
	if st := x.state(t, "a.txt"); st.Status != schema.ObjectIndexed {
		t.Fatalf("an indexed document was marked failed: %+v", st)
	}
	// The next task of the failed one tries again, and indexes it.
	x.s3.Put(bucket, "denied.txt", "Readable now.")
	if _, _, _, ev := x.handle(t, "denied.txt"); ev.Outcome != schema.OutcomeIndexed {
		t.Fatalf("retry after a failure: %+v", ev)
	}
}

// A give-up whose failed status cannot be written fails: the runner keeps
// the task (retried, or left for the MaxDeliver advisory), so no object is
// counted failed in its job while its document shows no failure.
func TestGiveUpFailsWhenTheStatusCannotBeWritten(t *testing.T) {
	x := newIndexer(t)
	task := x.task
	task.Key = "denied.txt"
	data, _ := schema.Encode(&task)
	if err := x.env.JS.DeleteKeyValue(context.Background(), schema.BucketObjects); err != nil {
		t.Fatal(err)
	}
	out, err := x.h.GiveUp(data, &schema.ClassError{Class: schema.ClassTenantPermission, Code: schema.CodeAccessDenied, Err: errors.New("GetObject: AccessDenied")})
	if err == nil || len(out) != 0 {
		t.Fatalf("status unwritable: outcome %+v, error %v; want an error and no outcome", out, err)
	}
}

// A notification's object its collection's filters exclude is skipped,
// nothing fetched; a job's tasks were filtered when planned.
func TestNotificationsPassTheCollectionsFilters(t *testing.T) {
	x := newIndexer(t)
	ctx := context.Background()
	if _, _, err := x.env.Collections.Put(ctx, x.task.Org, x.task.Collection, collections.Settings{Filters: &schema.Filters{Exclude: []string{"*.log"}}}); err != nil {
		t.Fatal(err)
	}
	x.s3.Put(bucket, "app.log", "a log line")
	x.task.JobID, x.task.Sequencer = "", "00A1"
	gets := x.s3.Gets.Load()
	chunks, _, _, ev := x.handle(t, "app.log")
	if len(chunks) != 0 || ev.Outcome != schema.OutcomeSkipped || !strings.HasPrefix(ev.Reason, schema.ReasonExcluded) || x.s3.Gets.Load() != gets {
		t.Fatalf("%d chunks, %+v, %d GETs", len(chunks), ev, x.s3.Gets.Load()-gets)
	}
	x.s3.Put(bucket, "a.txt", "A document.")
	if _, _, _, ev := x.handle(t, "a.txt"); ev.Outcome != schema.OutcomeIndexed {
		t.Fatalf("%+v", ev)
	}
}

// A notification whose route gives no custom metadata carries its
// collection's.
func TestNotificationsCarryTheCollectionsMetadata(t *testing.T) {
	x := newIndexer(t)
	if _, _, err := x.env.Collections.Put(context.Background(), x.task.Org, x.task.Collection, collections.Settings{CustomMetadata: json.RawMessage(`{"team":"quay"}`)}); err != nil {
		t.Fatal(err)
	}
	x.s3.Put(bucket, "a.txt", "A document.")
	x.task.JobID, x.task.Sequencer = "", "00A1"
	chunks, _, _, _ := x.handle(t, "a.txt")
	if len(chunks) != 1 || string(chunks[0].CustomMetadata) != `{"team":"quay"}` {
		t.Fatalf("%+v", chunks)
	}
}
