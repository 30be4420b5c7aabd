package producer

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

// hold stores the state of a document of f's collection, as an index task
// leaves it; an indexed one with chunks has them published to CHUNKS first,
// their sequences recorded.
func (f *fixture) hold(t *testing.T, collection, key string, status schema.ObjectStatus, chunks int) string {
	t.Helper()
	ctx := context.Background()
	st := schema.ObjectState{Bucket: "acme-docs", Key: key, ETag: `"e1"`, Status: status, ExtractorVersion: "v1", ContentType: "text/plain",
		Size: 100, JobID: "job_x", UpdatedAt: time.Now().UTC()}
	if status == schema.ObjectSkipped {
		st.Reason = "unsupported_type: image/png"
	}
	if chunks > 0 {
		st.Chunks = chunks
		ids := st.ChunkIDs(f.org.ID, collection)
		seqs := make([]uint64, chunks)
		out := make([]schema.Out, chunks)
		for i := range out {
			c := &schema.Chunk{ChunkID: ids[i], Org: f.org.ID, Collection: collection, Bucket: st.Bucket, Key: key, ETag: st.ETag, Index: i,
				Total: chunks, Text: fmt.Sprintf("chunk %d of %s", i, key), TokenCount: 4, ExtractorVersion: "v1", CustomMetadata: json.RawMessage(`{"team":"a"}`)}
			out[i] = schema.Out{Subject: schema.ChunkSubject(f.org.ID, collection), MsgID: ids[i], Msg: c, Seq: &seqs[i]}
			st.Tokens += 4
		}
		if _, err := schema.PublishAll(ctx, f.js, out); err != nil {
			t.Fatal(err)
		}
		for _, s := range seqs {
			st.ChunkSeqs = schema.AppendSeq(st.ChunkSeqs, s)
		}
	}
	kv, err := f.js.KeyValue(ctx, schema.BucketObjects)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(&st)
	if _, err := kv.Put(ctx, schema.ObjectKey(f.org.ID, collection, st.Bucket, key), data); err != nil {
		t.Fatal(err)
	}
	return schema.DocumentID(st.Bucket, key)
}

// Collections and documents over the API, in Captain's shapes: created
// explicitly and implicitly, listed and shown with what they hold;
// documents listed in key order, filtered, shown with their chunks read
// from CHUNKS; deletes are jobs; another org sees none of it.
func TestCollectionsAndDocuments(t *testing.T) {
	f := setup(t)
	if code, out := f.do(t, "GET", "/v2/collections", "", nil); code != 200 || out["total_count"] != 0.0 {
		t.Fatalf("no collections yet: %d %v", code, out)
	}
	if code, out := f.do(t, "PUT", "/v2/collections/docs", "", nil); code != 201 || out["collection_name"] != "docs" || out["status"] != "active" || out["document_count"] != 0.0 {
		t.Fatalf("create: %d %v", code, out)
	}
	if code, _ := f.do(t, "PUT", "/v2/collections/docs", "", nil); code != 200 {
		t.Fatalf("create again: %d", code)
	}
	if code, out := f.do(t, "PUT", "/v2/collections/docs", `{"processing_type":"sideways"}`, nil); code != 400 || errCode(out) != "invalid_processing_type" {
		t.Fatalf("bad settings: %d %v", code, out)
	}
	if code, out := f.do(t, "PUT", "/v2/collections/docs", `{"processing_type":"advanced","custom_metadata":{"team":"legal"}}`, nil); code != 200 || out["processing_type"] != "advanced" {
		t.Fatalf("settings: %d %v", code, out)
	}
	// An index job into the collection defaults to its settings, and one
	// into a new collection creates it.
	if code, out := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(""), nil); code != 201 {
		t.Fatalf("index: %d %v", code, out)
	}
	if job := f.lastMsg(t, schema.JobSubject(f.org.ID, "docs")); job.ProcessingType != "advanced" || string(job.CustomMetadata) != `{"team":"legal"}` {
		t.Fatalf("the job did not take the collection's settings: %+v", job)
	}
	if code, _ := f.do(t, "POST", "/v2/collections/other/index/s3", f.body(""), nil); code != 201 {
		t.Fatalf("index into a new collection: %d", code)
	}
	a := f.hold(t, "docs", "b/a.txt", schema.ObjectIndexed, 3)
	f.hold(t, "docs", "a/z.png", schema.ObjectSkipped, 0)
	f.hold(t, "docs", "c/deleted.txt", schema.ObjectDeleted, 0) // gone from the bucket: not a document
	code, out := f.do(t, "GET", "/v2/collections", "", nil)
	list, _ := out["collections"].([]any)
	if code != 200 || out["total_count"] != 2.0 || len(list) != 2 {
		t.Fatalf("list: %d %v", code, out)
	}
	if c := list[0].(map[string]any); c["collection_name"] != "docs" || c["document_count"] != 2.0 || c["chunk_count"] != 3.0 || c["token_count"] != 12.0 ||
		c["indexed_count"] != 1.0 || c["skipped_count"] != 1.0 {
		t.Fatalf("docs: %v", c)
	}
	if code, out := f.do(t, "GET", "/v2/collections/docs", "", nil); code != 200 || out["last_job"] == nil || out["document_count"] != 2.0 {
		t.Fatalf("show: %d %v", code, out)
	}

	code, out = f.do(t, "GET", "/v2/collections/docs/documents?limit=1", "", nil)
	docs, _ := out["documents"].([]any)
	if code != 200 || out["total_count"] != 2.0 || len(docs) != 1 || docs[0].(map[string]any)["status"] != "skipped" {
		t.Fatalf("documents, first page: %d %v", code, out)
	}
	code, out = f.do(t, "GET", "/v2/collections/docs/documents?limit=1&offset=1", "", nil)
	docs, _ = out["documents"].([]any)
	d := docs[0].(map[string]any)
	meta, _ := d["metadata"].(map[string]any)
	if code != 200 || d["document_id"] != a || d["chunk_count"] != 3.0 || meta["uri"] != "s3://acme-docs/b/a.txt" || meta["filename"] != "a.txt" || meta["file_type"] != "txt" {
		t.Fatalf("documents, second page: %d %v", code, out)
	}
	for q, want := range map[string]float64{"status=skipped": 1, "status=indexed": 1, "prefix=b/": 1, "prefix=x/": 0, "bucket=other": 0} {
		if code, out := f.do(t, "GET", "/v2/collections/docs/documents?"+q, "", nil); code != 200 || out["total_count"] != want {
			t.Errorf("%s: %d %v", q, code, out)
		}
	}
	if code, out := f.do(t, "GET", "/v2/collections/docs/documents?status=gone", "", nil); code != 400 || errCode(out) != "invalid_status" {
		t.Fatalf("bad status: %d %v", code, out)
	}

	code, out = f.do(t, "GET", "/v2/collections/docs/documents/"+a, "", nil)
	chunks, _ := out["chunks"].([]any)
	if code != 200 || out["chunk_count"] != 3.0 || len(chunks) != 3 || out["chunks_unavailable"] != nil {
		t.Fatalf("document: %d %v", code, out)
	}
	for i, c := range chunks {
		c := c.(map[string]any)
		if c["chunk_index"] != float64(i) || c["content"] != fmt.Sprintf("chunk %d of b/a.txt", i) || c["token_count"] != 4.0 {
			t.Fatalf("chunk %d: %v", i, c)
		}
	}
	if code, out := f.do(t, "GET", "/v2/collections/docs/documents/"+a+"?chunk_offset=2&chunk_limit=5", "", nil); code != 200 || len(out["chunks"].([]any)) != 1 {
		t.Fatalf("chunk page: %d %v", code, out)
	}
	missing := schema.DocumentID("acme-docs", "c/deleted.txt")
	for _, p := range []string{"/v2/collections/docs/documents/" + missing, "/v2/collections/docs/documents/not-an-id", "/v2/collections/nope/documents/" + a} {
		if code, _ := f.do(t, "GET", p, "", nil); code != 404 {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}

	// Another org: 404 everywhere.
	ctx := context.Background()
	reg, _ := registry.Open(ctx, f.js, registry.Config{})
	other, key, _ := reg.CreateOrg(ctx, "test", "Other")
	hdr := map[string]string{"Authorization": "Bearer " + key.Reveal(), "X-Organization-ID": other.ID}
	for _, req := range [][2]string{{"GET", "/v2/collections/docs"}, {"GET", "/v2/collections/docs/documents"}, {"GET", "/v2/collections/docs/documents/" + a},
		{"DELETE", "/v2/collections/docs/documents/" + a}, {"DELETE", "/v2/collections/docs/documents"}, {"DELETE", "/v2/collections/docs"}} {
		if code, _ := f.do(t, req[0], req[1], "", hdr); code != 404 {
			t.Errorf("another org: %s %s: %d, want 404", req[0], req[1], code)
		}
	}
	if code, out := f.do(t, "GET", "/v2/collections", "", hdr); code != 200 || out["total_count"] != 0.0 {
		t.Errorf("another org lists: %d %v", code, out)
	}

	// Deletes are jobs: 202 with the job, published to the sweepers.
	code, out = f.do(t, "DELETE", "/v2/collections/docs/documents/"+a, "", nil)
	if code != 202 || out["kind"] != "delete_document" || out["document_id"] != a {
		t.Fatalf("delete document: %d %v", code, out)
	}
	if job := f.lastMsg(t, schema.SweepSubject(f.org.ID, "docs")); job.Kind != schema.JobDeleteDocument || job.Document != a || job.JobID != out["job_id"] {
		t.Fatalf("delete message: %+v", job)
	}
	if code, st := f.do(t, "GET", "/v2/jobs/"+out["job_id"].(string), "", nil); code != 200 || st["kind"] != "delete_document" || st["status"] != "pending" {
		t.Fatalf("delete job: %d %v", code, st)
	}
	if code, out := f.do(t, "DELETE", "/v2/collections/docs/documents", "", nil); code != 202 || out["kind"] != "wipe" {
		t.Fatalf("wipe: %d %v", code, out)
	}
	code, out = f.do(t, "DELETE", "/v2/collections/docs", "", nil)
	if code != 202 || out["kind"] != "delete_collection" {
		t.Fatalf("delete collection: %d %v", code, out)
	}
	if code, again := f.do(t, "DELETE", "/v2/collections/docs", "", nil); code != 202 || again["job_id"] != out["job_id"] {
		t.Fatalf("delete collection again: %d %v, want job %v", code, again, out["job_id"])
	}
	if code, out := f.do(t, "GET", "/v2/collections/docs", "", nil); code != 200 || out["status"] != "deleting" || out["delete_job_id"] == nil {
		t.Fatalf("deleting: %d %v", code, out)
	}
	for _, req := range [][3]string{{"POST", "/v2/collections/docs/index/s3", f.body("")}, {"PUT", "/v2/collections/docs", ""},
		{"DELETE", "/v2/collections/docs/documents", ""}, {"PUT", "/v2/collections/docs/schedule", f.body(`,"every":"1h"`)}} {
		if code, out := f.do(t, req[0], req[1], req[2], nil); code != 409 || errCode(out) != "collection_deleting" {
			t.Errorf("%s %s into a collection being deleted: %d %v", req[0], req[1], code, out)
		}
	}
}

// lastMsg is the last job message on subject in JOBS.
func (f *fixture) lastMsg(t *testing.T, subject string) *schema.Job {
	t.Helper()
	s, err := f.js.Stream(context.Background(), schema.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(context.Background(), subject)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	job, err := schema.DecodeJob(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// Revoking an integration with data=delete wipes, in each collection, the
// documents read with it; retain (the default) keeps them.
func TestRevokeWithItsData(t *testing.T) {
	f := setup(t)
	for _, c := range []string{"docs", "more"} {
		if code, _ := f.do(t, "PUT", "/v2/collections/"+c, "", nil); code != 201 {
			t.Fatalf("create %s: %d", c, code)
		}
	}
	path := "/v2/integrations/" + f.in.ID
	if code, out := f.do(t, "DELETE", path+"?data=shred", "", nil); code != 400 || errCode(out) != "invalid_data_policy" {
		t.Fatalf("bad policy: %d %v", code, out)
	}
	code, out := f.do(t, "DELETE", path+"?data=delete", "", nil)
	jobs, _ := out["wipe_jobs"].([]any)
	if code != 200 || out["status"] != "revoked" || len(jobs) != 2 {
		t.Fatalf("revoke: %d %v", code, out)
	}
	job := f.lastMsg(t, schema.SweepSubject(f.org.ID, "docs"))
	if job.Kind != schema.JobWipe || job.IntegrationID != f.in.ID {
		t.Fatalf("wipe message %+v", job)
	}
}

// Filters: given on an index request they ride on the job; a collection's
// are what its jobs default to; bad patterns and filters on a file job are
// 400.
func TestIndexFilters(t *testing.T) {
	f := setup(t)
	if code, out := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(`,"exclude_patterns":["[bad"]`), nil); code != 400 || errCode(out) != "invalid_filters" {
		t.Fatalf("bad pattern: %d %v", code, out)
	}
	if code, out := f.do(t, "POST", "/v2/collections/docs/index/s3/file", f.body(`,"file_uri":"s3://acme-docs/a.txt","exclude_patterns":["*.log"]`), nil); code != 400 || errCode(out) != "invalid_option" {
		t.Fatalf("filters on a file job: %d %v", code, out)
	}
	if code, out := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(`,"exclude_patterns":["*.log"],"max_file_size":1048576,"modified_after":"2026-01-01T00:00:00Z"`), nil); code != 201 {
		t.Fatalf("index: %d %v", code, out)
	}
	if job := f.lastMsg(t, schema.JobSubject(f.org.ID, "docs")); job.Filters == nil || job.Filters.Exclude[0] != "*.log" || job.Filters.MaxFileSize != 1<<20 || job.Filters.ModifiedAfter == nil {
		t.Fatalf("job filters %+v", job.Filters)
	}
	if code, out := f.do(t, "PUT", "/v2/collections/logs", `{"include_patterns":["**/*.pdf"]}`, nil); code != 201 || out["filters"] == nil {
		t.Fatalf("collection filters: %d %v", code, out)
	}
	if code, _ := f.do(t, "POST", "/v2/collections/logs/index/s3", f.body(""), nil); code != 201 {
		t.Fatal("index")
	}
	if job := f.lastMsg(t, schema.JobSubject(f.org.ID, "logs")); job.Filters == nil || job.Filters.Include[0] != "**/*.pdf" {
		t.Fatalf("the collection's filters were not the job's default: %+v", job.Filters)
	}
}

// POST /v2/jobs/{id}/retry: 409 while the job runs; once it is final, a
// retry job published to the sweepers; 404 for another org's job.
func TestRetryJob(t *testing.T) {
	f := setup(t)
	code, out := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(`,"processing_type":"advanced"`), nil)
	if code != 201 {
		t.Fatalf("index: %d %v", code, out)
	}
	id := out["job_id"].(string)
	if code, out := f.do(t, "POST", "/v2/jobs/"+id+"/retry", "", nil); code != 409 || errCode(out) != "job_running" {
		t.Fatalf("retry of a pending job: %d %v", code, out)
	}
	if code, _ := f.do(t, "POST", "/v2/jobs/"+id+"/cancel", "", nil); code != 200 {
		t.Fatal("cancel")
	}
	code, out = f.do(t, "POST", "/v2/jobs/"+id+"/retry", "", nil)
	if code != 201 || out["retry_of"] != id {
		t.Fatalf("retry: %d %v", code, out)
	}
	job := f.lastMsg(t, schema.SweepSubject(f.org.ID, "docs"))
	if job.Kind != schema.JobRetry || job.RetryOf != id || job.ProcessingType != schema.ProcessingAdvanced || job.IntegrationID != f.in.ID {
		t.Fatalf("retry message %+v", job)
	}
	if code, st := f.do(t, "GET", "/v2/jobs/"+out["job_id"].(string), "", nil); code != 200 || st["kind"] != "retry" || st["retry_of"] != id {
		t.Fatalf("retry job: %d %v", code, st)
	}
	if code, _ := f.do(t, "POST", "/v2/jobs/job_nope/retry", "", nil); code != 404 {
		t.Fatalf("unknown job: %d", code)
	}
}

// Chunking asked for: validated (size 64-8192, overlap at most half, only
// with a size); a collection's is what its jobs default to.
func TestIndexChunking(t *testing.T) {
	f := setup(t)
	for _, bad := range []string{`,"chunk_size_tokens":10`, `,"chunk_overlap_tokens":10`, `,"chunk_size_tokens":100,"chunk_overlap_tokens":60`} {
		if code, out := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(bad), nil); code != 400 || errCode(out) != "invalid_chunking" {
			t.Fatalf("%s: %d %v", bad, code, out)
		}
	}
	if code, _ := f.do(t, "PUT", "/v2/collections/docs", `{"chunk_size_tokens":256,"chunk_overlap_tokens":32}`, nil); code != 201 {
		t.Fatal("collection")
	}
	if code, _ := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(""), nil); code != 201 {
		t.Fatal("index")
	}
	if job := f.lastMsg(t, schema.JobSubject(f.org.ID, "docs")); job.ChunkTokens != 256 || job.ChunkOverlap != 32 {
		t.Fatalf("job chunking %d/%d", job.ChunkTokens, job.ChunkOverlap)
	}
}
