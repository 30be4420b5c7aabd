package worker

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/text/encoding/charmap"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
	"github.com/stevedore-dev/stevedore/worker/extract"
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
	ctx := context.Background()
	e.s3.Delete(bucket, "doc.txt")
	del := &schema.Task{Op: schema.OpDelete, Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Bucket: bucket, Key: "doc.txt",
		Region: "us-east-1", Sequencer: "0055AED6DCD90281E5"}
	payload, _ := schema.Encode(del)
	if _, err := e.js.Publish(ctx, schema.TaskSubject(e.org.ID, "docs"), payload, jetstream.WithMsgID("delete-1")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st := e.state(t, "doc.txt"); st != nil && st.Status == schema.ObjectDeleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delete not applied: %+v", e.state(t, "doc.txt"))
		}
	}
	check("deleted", map[string]bool{})
	e.s3.Put(bucket, "doc.txt", alpha)
	e.indexFile(t, "job_reupload", "doc.txt")
	check("re-uploaded", alphaIDs)
	if st := e.state(t, "doc.txt"); st.Sequencer != del.Sequencer {
		t.Fatalf("a job task erased the stored sequencer: %q, want %q", st.Sequencer, del.Sequencer)
	}
}

// TestCancelledJobPlansNothingAndSkipsItsTasks: a job cancelled while its
// first page and three tasks wait plans nothing more, its unclaimed tasks
// are skipped as "cancelled" without an S3 call, the counters stay exact,
// and the job stays cancelled.
func TestCancelledJobPlansNothingAndSkipsItsTasks(t *testing.T) {
	e := setup(t, map[string]string{"a.txt": "a", "b.txt": "b", "c.txt": "c"})
	ctx := context.Background()
	job := &schema.Job{JobID: "job_cancel", Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Kind: schema.JobBucket, Bucket: bucket,
		Region: "us-east-1", CreatedAt: time.Now()}
	st := schema.NewJobStatus(job)
	now := time.Now().UTC()
	st.Status, st.CompletedAt = schema.JobStatusCancelled, &now
	data, _ := json.Marshal(st)
	kv, _ := e.js.KeyValue(ctx, schema.BucketJobs)
	if _, err := kv.Create(ctx, job.JobID, data); err != nil {
		t.Fatal(err)
	}
	var out []outMsg
	for _, k := range []string{"a.txt", "b.txt", "c.txt"} {
		out = append(out, taskMsg(&schema.Task{Op: schema.OpIndex, JobID: job.JobID, Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Bucket: bucket, Key: k}))
	}
	payload, _ := schema.Encode(job)
	out = append(out, outMsg{Subject: schema.JobSubject(e.org.ID, "docs"), MsgID: schema.JobPageMsgID(job.JobID, 0), Msg: json.RawMessage(payload)})
	if _, err := schema.PublishAll(ctx, e.js, out); err != nil {
		t.Fatal(err)
	}
	var got schema.JobStatus
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		entry, _ := kv.Get(ctx, job.JobID)
		_ = json.Unmarshal(entry.Value(), &got)
		if got.FilesSkipped == 3 || time.Now().After(deadline) {
			break
		}
	}
	if got.Status != schema.JobStatusCancelled || got.FilesSkipped != 3 || got.FilesIndexed != 0 || got.PagesPlanned != 0 || len(got.Errors) != 0 {
		t.Fatalf("cancelled job %+v", got)
	}
	if n := e.s3.Gets.Load() + e.s3.Lists.Load(); n != 0 {
		t.Fatalf("a cancelled job made %d S3 calls", n)
	}
	dead, _ := e.js.Stream(ctx, schema.StreamDead)
	jobs, _ := e.js.Stream(ctx, schema.StreamJobs)
	di, _ := dead.Info(ctx)
	ji, _ := jobs.Info(ctx)
	if di.State.Msgs != 0 || ji.State.Msgs != 0 {
		t.Fatalf("%d dead letters, %d pages left: the page was not simply acknowledged", di.State.Msgs, ji.State.Msgs)
	}
}

// TestDocumentsThroughTheWorker: a windows-1252 CSV and an HTML page are
// indexed (they were skipped as not_utf8 and indexed as markup before);
// chunks, commits and object state carry the detected type and extractor.
func TestDocumentsThroughTheWorker(t *testing.T) {
	csv, _ := charmap.Windows1252.NewEncoder().String(strings.Repeat("nom;ville\nRené;Orléans\nZoë;Besançon\nFrançois;Périgueux\n", 20))
	html := "<html><head><script>var x = 1;</script></head><body><h1>Título</h1><p>Hola <b>mundo</b>.</p></body></html>"
	var docx bytes.Buffer
	zw := zip.NewWriter(&docx)
	w, _ := zw.Create("word/document.xml")
	w.Write([]byte(`<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Contract terms.</w:t></w:r></w:p></w:body></w:document>`))
	zw.Close()
	e := setup(t, map[string]string{"clients.csv": csv, "page.html": html, "contract.docx": docx.String()})
	e.submit(t, "job_docs", true)
	st := e.wait(t, "job_docs")
	if st.Status != schema.JobStatusCompleted || st.FilesIndexed != 3 {
		t.Fatalf("%+v", st)
	}
	byKey := map[string]string{}
	for _, c := range e.chunks(t) {
		byKey[c.Key] += c.Text
		if c.Key == "page.html" && (c.ExtractorVersion != extract.HTMLVersion || c.ContentType != "text/html") {
			t.Fatalf("html chunk %+v", c)
		}
		if c.Key == "clients.csv" && (c.ExtractorVersion != extract.LegacyVersion || c.ContentType != "text/plain; charset=windows-1252") {
			t.Fatalf("csv chunk %+v", c)
		}
	}
	if !strings.Contains(byKey["clients.csv"], "René;Orléans") || byKey["page.html"] != "Título\nHola mundo.\n" || byKey["contract.docx"] != "Contract terms.\n" {
		t.Fatalf("texts %q", byKey)
	}
	if s := e.state(t, "page.html"); s.ContentType != "text/html" || s.ExtractorVersion != extract.HTMLVersion {
		t.Fatalf("state %+v", s)
	}
}
