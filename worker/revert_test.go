package worker

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
)

// submitFile does what the producer does for POST …/index/s3/file.
func (e *env) submitFile(t *testing.T, id, key string, skip bool) {
	t.Helper()
	e.submitJob(t, &schema.Job{JobID: id, Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Kind: schema.JobFile, Bucket: bucket,
		Key: key, Region: "us-east-1", SkipExisting: skip, CreatedAt: time.Now()})
}

// state reads the object state of key (nil when there is none).
func (e *env) state(t *testing.T, key string) *schema.ObjectState {
	t.Helper()
	kv, _ := e.js.KeyValue(context.Background(), schema.BucketObjects)
	entry, err := kv.Get(context.Background(), schema.ObjectKey(e.org.ID, "docs", bucket, key))
	if err != nil {
		return nil
	}
	var s schema.ObjectState
	_ = json.Unmarshal(entry.Value(), &s)
	return &s
}

// indexFile runs a file job on key and requires it to index the object.
func (e *env) indexFile(t *testing.T, id, key string) {
	t.Helper()
	e.submitFile(t, id, key, true)
	if st := e.wait(t, id); st.Status != schema.JobStatusCompleted || st.FilesIndexed != 1 {
		t.Fatalf("%s: %+v", id, st)
	}
}

// notifyDelete publishes the task of a delete notification for key, as the
// SQS bridge does, and waits until the worker applied it.
func (e *env) notifyDelete(t *testing.T, key, sequencer string) *schema.Task {
	t.Helper()
	del := &schema.Task{Op: schema.OpDelete, Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Bucket: bucket, Key: key,
		Region: "us-east-1", Sequencer: sequencer}
	payload, _ := schema.Encode(del)
	if _, err := e.js.Publish(context.Background(), schema.TaskSubject(e.org.ID, "docs"), payload, jetstream.WithMsgID("delete:"+key+sequencer)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st := e.state(t, key); st != nil && st.Status == schema.ObjectDeleted {
			return del
		}
		if time.Now().After(deadline) {
			t.Fatalf("delete not applied: %+v", e.state(t, key))
		}
	}
}

// TestRevertedObjectStaysVisible is the revert bug: an object that returns
// to earlier content within the duplicate window (alpha → beta → alpha, and
// delete → re-upload) must be visible again downstream, and skip_existing
// must not skip it afterwards. Before message IDs carried the state's
// generation, the second alpha's chunks and commit were dropped as
// duplicates while beta's tombstone went through: 0 visible chunks.
func TestRevertedObjectStaysVisible(t *testing.T) {
	alpha := strings.Repeat("Alpha is the first version of this document. ", 30)
	beta := strings.Repeat("Beta replaced it for a while. ", 30)
	e := setup(t, map[string]string{"doc.txt": alpha})
	want := func(body string) map[string]bool {
		st := e.state(t, "doc.txt")
		if st == nil || st.Status != schema.ObjectIndexed || st.ETag != awstest.ETag(body) {
			t.Fatalf("state %+v", st)
		}
		ids := map[string]bool{}
		for _, id := range st.ChunkIDs(e.org.ID, "docs") {
			ids[id] = true
		}
		return ids
	}
	check := func(step string, wantIDs map[string]bool) {
		t.Helper()
		got, _, _ := visible(t, e)
		if len(wantIDs) == 0 && len(got) != 0 || !maps.Equal(got, wantIDs) {
			t.Fatalf("%s: %d visible chunks, want %d", step, len(got), len(wantIDs))
		}
	}

	e.indexFile(t, "job_alpha", "doc.txt")
	alphaIDs := want(alpha)
	if len(alphaIDs) < 2 {
		t.Fatalf("alpha should span several chunks, got %d", len(alphaIDs))
	}
	check("alpha", alphaIDs)
	e.s3.Put(bucket, "doc.txt", beta)
	e.indexFile(t, "job_beta", "doc.txt")
	check("beta", want(beta))
	e.s3.Put(bucket, "doc.txt", alpha)
	e.indexFile(t, "job_alpha_again", "doc.txt")
	check("alpha again", alphaIDs)

	// skip_existing now skips it, and it stays visible.
	e.submitFile(t, "job_skip", "doc.txt", true)
	if st := e.wait(t, "job_skip"); st.FilesSkipped != 1 {
		t.Fatalf("skip run %+v", st)
	}
	check("after skip", alphaIDs)

	// Delete (in S3, then its notification), then the same content uploaded again.
	e.s3.Delete(bucket, "doc.txt")
	del := e.notifyDelete(t, "doc.txt", "0055AED6DCD90281E5")
	check("deleted", map[string]bool{})
	e.s3.Put(bucket, "doc.txt", alpha)
	e.indexFile(t, "job_reupload", "doc.txt")
	check("re-uploaded", alphaIDs)
	if st := e.state(t, "doc.txt"); st.Sequencer != del.Sequencer {
		t.Fatalf("a job task erased the stored sequencer: %q, want %q", st.Sequencer, del.Sequencer)
	}
}

// TestFileJobOnAGoneKeyTombstones: a file job naming a key deleted from
// the bucket since it was indexed ended failed (no_such_key) and left its
// chunks visible. Once a HEAD confirms the key is gone, its chunks are
// tombstoned: outcome deleted, job completed. A key that was never indexed
// still fails no_such_key.
func TestFileJobOnAGoneKeyTombstones(t *testing.T) {
	e := setup(t, map[string]string{"doc.txt": strings.Repeat("A document that will be deleted. ", 40)})
	e.indexFile(t, "job_index", "doc.txt")
	if ids, _, _ := visible(t, e); len(ids) == 0 {
		t.Fatal("nothing visible after indexing")
	}
	e.s3.Delete(bucket, "doc.txt")
	e.submitFile(t, "job_gone", "doc.txt", true)
	st := e.wait(t, "job_gone")
	if st.Status != schema.JobStatusCompleted || st.FilesDeleted != 1 || st.FilesFailed != 0 {
		t.Fatalf("job on a gone key: %+v", st)
	}
	if ids, _, _ := visible(t, e); len(ids) != 0 {
		t.Fatalf("%d chunks still visible", len(ids))
	}
	if s := e.state(t, "doc.txt"); s == nil || s.Status != schema.ObjectDeleted {
		t.Fatalf("state %+v", s)
	}
	e.submitFile(t, "job_never", "never-there.txt", true)
	if st := e.wait(t, "job_never"); st.Status != schema.JobStatusFailed || st.FilesFailed != 1 || len(st.Errors) != 1 || st.Errors[0].ErrorCode != schema.CodeNoSuchKey {
		t.Fatalf("job on a key never indexed: %+v", st)
	}
}
