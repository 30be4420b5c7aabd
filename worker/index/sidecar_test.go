package index

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
	"github.com/stevedore-dev/stevedore/worker/handlertest"
)

// Sidecars in Bedrock's and Kendra's shapes; anything else is refused
// with a reason that names the attribute.
func TestParseSidecar(t *testing.T) {
	tests := []struct {
		name, in, attrs, uri, err string
	}{
		{"bedrock", `{"metadataAttributes": {"year": 2024, "owner": "ops", "final": true, "tags": ["a", "b"]}}`, `{"final":true,"owner":"ops","tags":["a","b"],"year":2024}`, "", ""},
		{"bedrock typed", `{"metadataAttributes": {"year": {"value": {"type": "NUMBER", "numberValue": 2024}, "includeForEmbedding": true}}}`, `{"year":2024}`, "", ""},
		{"kendra", `{"DocumentId": "d1", "Attributes": {"_category": "report", "_source_uri": "https://intranet.example/r/1"}, "Title": "Q3"}`, `{"_category":"report"}`, "https://intranet.example/r/1", ""},
		{"not json", `{"metadataAttributes": `, "", "", "not a JSON object"},
		{"neither shape", `{"meta": {}}`, "", "", "neither"},
		{"nested object", `{"metadataAttributes": {"a": {"b": 1}}}`, "", "", `attribute "a": an object is allowed only`},
		{"null", `{"metadataAttributes": {"a": null}}`, "", "", `attribute "a": null`},
		{"list of objects", `{"metadataAttributes": {"a": [{"b": 1}]}}`, "", "", `attribute "a": item 0`},
		{"long value", `{"metadataAttributes": {"a": "` + strings.Repeat("x", MaxMetaValueBytes+1) + `"}}`, "", "", "over 1024 bytes"},
		{"source uri without scheme", `{"Attributes": {"_source_uri": "intranet/r/1"}}`, "", "", "a URI is a string with a scheme"},
		{"too large", `{"metadataAttributes": {"a": "` + strings.Repeat("x", schema.MaxSidecarBytes) + `"}}`, "", "", "over 10240 bytes"},
	}
	for _, tt := range tests {
		sc, err := parseSidecar([]byte(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		got, _ := json.Marshal(sc.attrs)
		if string(got) != tt.attrs || sc.sourceURI != tt.uri {
			t.Errorf("%s: attrs %s uri %q", tt.name, got, sc.sourceURI)
		}
	}
	many := map[string]int{}
	for i := range maxSidecarKeys + 1 {
		many[strings.Repeat("k", i+1)] = i
	}
	data, _ := json.Marshal(map[string]any{"metadataAttributes": many})
	if _, err := parseSidecar(data); err == nil || !strings.Contains(err.Error(), "33 attributes") {
		t.Errorf("too many attributes: %v", err)
	}
}

// A document's sidecar goes on its chunks (over its user metadata), and a
// Kendra sidecar's _source_uri is the URI its chunks cite; the state
// records the sidecar's ETag.
func TestSidecarGoesOnItsChunks(t *testing.T) {
	x := newIndexer(t)
	x.s3.PutMeta(bucket, "r/q3.txt", "A quarterly report.", map[string]string{"owner": "s3", "department": "legal"})
	x.s3.Put(bucket, "r/q3.txt.metadata.json", `{"metadataAttributes": {"year": 2024, "owner": "ops"}}`)
	chunks, _, _, ev := x.handle(t, "r/q3.txt")
	if len(chunks) != 1 || string(chunks[0].Metadata) != `{"department":"legal","owner":"ops","year":2024}` || ev.Outcome != schema.OutcomeIndexed {
		t.Fatalf("%d chunks, metadata %s, %+v", len(chunks), chunks[0].Metadata, ev)
	}
	if st := x.state(t, "r/q3.txt"); st.SidecarETag != awstest.ETag(`{"metadataAttributes": {"year": 2024, "owner": "ops"}}`) || st.MetaHash == "" {
		t.Fatalf("state %+v", st)
	}
	x.s3.Put(bucket, "k.txt", "A page of the intranet.")
	x.s3.Put(bucket, "k.txt.metadata.json", `{"Attributes": {"_source_uri": "https://intranet.example/k", "_category": "wiki"}}`)
	chunks, _, _, _ = x.handle(t, "k.txt")
	if len(chunks) != 1 || chunks[0].Source.URI != "https://intranet.example/k" || string(chunks[0].Metadata) != `{"_category":"wiki"}` {
		t.Fatalf("kendra: %+v %s", chunks[0].Source, chunks[0].Metadata)
	}
}

// A sidecar that is not metadata fails its document with code
// sidecar_invalid, and its reason names the sidecar.
func TestInvalidSidecarFailsItsDocument(t *testing.T) {
	x := newIndexer(t)
	x.s3.Put(bucket, "a.txt", "A document.")
	x.s3.Put(bucket, "a.txt.metadata.json", `{"metadataAttributes": {"a": {"b": 1}}}`)
	task := x.task
	task.Key = "a.txt"
	data, _ := schema.Encode(&task)
	err := x.h.Handle(context.Background(), handlertest.Msg{Body: data})
	f := creds.ClassifyError(err)
	if err == nil || f.Class != schema.ClassPermanent || f.Code != schema.CodeSidecarInvalid || !strings.Contains(err.Error(), "a.txt.metadata.json") {
		t.Fatalf("%v (%+v)", err, f)
	}
}

// The listing settles that a document has no sidecar: S3 is not asked.
// When it cannot (the sidecar would sort after the page's last key), S3 is.
func TestListedSidecarIsNotAskedFor(t *testing.T) {
	x := newIndexer(t)
	x.s3.Put(bucket, "a.txt", "A document.")
	x.task.SidecarKnown = true
	x.handle(t, "a.txt")
	if n := x.s3.SidecarGets.Load(); n != 0 {
		t.Fatalf("%d sidecar GETs for a listing that settled it", n)
	}
	x.task.SidecarKnown, x.task.JobID = false, "job_j"
	x.task.SkipExisting = false
	x.handle(t, "a.txt")
	if n := x.s3.SidecarGets.Load(); n != 1 {
		t.Fatalf("%d sidecar GETs, want 1", n)
	}
}

// A metadata-only change — the same bytes with new user metadata (a copy
// in place: new time, same ETag) — re-publishes the chunks with the new
// metadata under the same IDs, and commits again, without fetching the
// object; the next listing that shows nothing new changes nothing.
func TestMetadataOnlyChangeRepublishes(t *testing.T) {
	x := newIndexer(t)
	x.stream = true
	body := strings.Repeat("A report on crane productivity, with several chunks of text. ", 10)
	x.s3.PutMeta(bucket, "q3.txt", body, map[string]string{"department": "ops"})
	first, _, _, _ := x.handle(t, "q3.txt")
	if len(first) < 2 {
		t.Fatalf("%d chunks", len(first))
	}
	later := time.Now().Add(time.Hour)
	x.s3.PutMeta(bucket, "q3.txt", body, map[string]string{"department": "legal"})
	x.s3.Touch(bucket, "q3.txt", later)
	gets := x.s3.Gets.Load()
	x.task.JobID, x.task.ETag, x.task.LastModified, x.task.SidecarKnown = "job_j", awstest.ETag(body), &later, true
	chunks, commits, tombstones, ev := x.handle(t, "q3.txt")
	if ev.Outcome != schema.OutcomeIndexed || ev.Reason != schema.ReasonMetadataUpdated || len(chunks) != len(first) || len(commits) != 1 || len(tombstones) != 0 {
		t.Fatalf("%+v: %d chunks, %d commits, %d tombstones", ev, len(chunks), len(commits), len(tombstones))
	}
	for i, c := range chunks {
		if c.ChunkID != first[i].ChunkID || c.Text != first[i].Text || string(c.Metadata) != `{"department":"legal"}` || c.JobID != "job_j" ||
			!c.Source.LastModified.Equal(later.UTC().Truncate(time.Second)) {
			t.Fatalf("chunk %d: %s %s %s %+v", i, c.ChunkID, c.Metadata, c.JobID, c.Source)
		}
	}
	if n := x.s3.Gets.Load() - gets; n != 0 {
		t.Fatalf("%d GETs of the object for a metadata-only change", n)
	}
	// The chunks CHUNKS now holds are the republished ones: a reader of the
	// document sees the new metadata.
	st := x.state(t, "q3.txt")
	read, why, err := readChunks(x, st)
	if err != nil || why != "" || len(read) != len(first) || string(read[0].Metadata) != `{"department":"legal"}` {
		t.Fatalf("%d chunks read back (%q, %v)", len(read), why, err)
	}
	x.task.JobID = "job_k"
	chunks, commits, _, ev = x.handle(t, "q3.txt")
	if len(chunks) != 0 || len(commits) != 0 || ev.Reason != schema.ReasonAlreadyIndexed {
		t.Fatalf("nothing changed, yet %d chunks, %d commits, %+v", len(chunks), len(commits), ev)
	}
}

// A sidecar's notification re-publishes its document's metadata: added,
// changed, removed. A sidecar whose document does not exist is skipped.
func TestSidecarChangeRepublishesItsDocument(t *testing.T) {
	x := newIndexer(t)
	x.stream = true
	x.s3.Put(bucket, "a.txt", "A document.")
	x.task.JobID, x.task.Sequencer = "", "00A1"
	x.handle(t, "a.txt")
	steps := []struct {
		sidecar, want string
	}{
		{`{"metadataAttributes": {"year": 2024}}`, `{"year":2024}`},
		{`{"metadataAttributes": {"year": 2025}}`, `{"year":2025}`},
		{"", ""},
	}
	for i, s := range steps {
		if s.sidecar != "" {
			x.s3.Put(bucket, "a.txt.metadata.json", s.sidecar)
		} else {
			x.s3.Delete(bucket, "a.txt.metadata.json")
		}
		x.task.Sequencer = "00B" + string(rune('0'+i))
		chunks, commits, _, ev := x.handle(t, "a.txt.metadata.json")
		if ev.Key != "a.txt" || ev.Reason != schema.ReasonMetadataUpdated || len(chunks) != 1 || len(commits) != 1 || string(chunks[0].Metadata) != s.want {
			t.Fatalf("step %d: %+v, %d chunks (%s), %d commits", i, ev, len(chunks), chunks[0].Metadata, len(commits))
		}
	}
	x.s3.Put(bucket, "b.txt.metadata.json", `{"metadataAttributes": {"year": 2024}}`)
	x.task.Sequencer = "00C1"
	chunks, _, _, ev := x.handle(t, "b.txt.metadata.json")
	if len(chunks) != 0 || ev.Outcome != schema.OutcomeSkipped || ev.Reason != schema.ReasonSidecarWithoutDocument {
		t.Fatalf("%d chunks, %+v", len(chunks), ev)
	}
}

// With include_object_tags the object's tags go on its chunks, a tag-only
// change (S3 changes no listed field) is found by a sync and re-published,
// and a role that may not read tags fails the document with tags_denied.
func TestObjectTags(t *testing.T) {
	x := newIndexer(t)
	x.stream = true
	x.s3.Put(bucket, "a.txt", "A document.")
	x.s3.PutTags(bucket, "a.txt", map[string]string{"Classification": "internal"})
	x.task.ObjectTags = true
	chunks, _, _, _ := x.handle(t, "a.txt")
	if len(chunks) != 1 || string(chunks[0].Metadata) != `{"classification":"internal"}` {
		t.Fatalf("%+v", chunks)
	}
	x.s3.PutTags(bucket, "a.txt", map[string]string{"Classification": "public"})
	st := x.state(t, "a.txt")
	x.task.JobID, x.task.ETag, x.task.LastModified, x.task.SidecarKnown = "job_j", st.ETag, st.LastModified, true
	chunks, _, _, ev := x.handle(t, "a.txt")
	if ev.Reason != schema.ReasonMetadataUpdated || len(chunks) != 1 || string(chunks[0].Metadata) != `{"classification":"public"}` {
		t.Fatalf("%+v %d", ev, len(chunks))
	}
	x.s3.DenyTagging.Store(true)
	x.task.JobID = "job_k"
	task := x.task
	task.Key = "a.txt"
	data, _ := schema.Encode(&task)
	err := x.h.Handle(context.Background(), handlertest.Msg{Body: data})
	if f := creds.ClassifyError(err); f.Code != schema.CodeTagsDenied || !strings.Contains(PublicReason(f), "s3:GetObjectTagging") {
		t.Fatalf("%v (%+v)", err, f)
	}
}

// Chunks CHUNKS does not hold as the state recorded (here: never
// published to the stream) are not re-published from thin air: the object
// is indexed again from S3.
func TestMetadataChangeWithoutStoredChunksIndexesAgain(t *testing.T) {
	x := newIndexer(t)
	x.s3.PutMeta(bucket, "a.txt", "A document.", map[string]string{"v": "1"})
	x.handle(t, "a.txt")
	x.s3.PutMeta(bucket, "a.txt", "A document.", map[string]string{"v": "2"})
	gets := x.s3.Gets.Load()
	st := x.state(t, "a.txt")
	later := st.LastModified.Add(time.Minute)
	x.s3.Touch(bucket, "a.txt", later)
	x.task.JobID, x.task.ETag, x.task.LastModified, x.task.SidecarKnown = "job_j", st.ETag, &later, true
	chunks, _, _, ev := x.handle(t, "a.txt")
	if ev.Outcome != schema.OutcomeIndexed || ev.Reason != "" || len(chunks) != 1 || string(chunks[0].Metadata) != `{"v":"2"}` || x.s3.Gets.Load()-gets != 1 {
		t.Fatalf("%+v, %d chunks, %d GETs", ev, len(chunks), x.s3.Gets.Load()-gets)
	}
}

// readChunks reads a document's chunks back from CHUNKS as GET of the
// document does.
func readChunks(x *indexer, st *schema.ObjectState) ([]*schema.Chunk, string, error) {
	return collections.Chunks(context.Background(), x.env.JS, x.task.Org, x.task.Collection, st, 0, st.Chunks)
}

// An object a listing showed with its stored ETag but new metadata, gone
// by the time its metadata is checked, is deleted as a confirmed delete is
// on that one HEAD's word (no GET and second HEAD to learn it again).
func TestRefreshOfAGoneObjectDeletesIt(t *testing.T) {
	x := newIndexer(t)
	x.s3.PutMeta(bucket, "a.txt", "A document.", map[string]string{"v": "1"})
	x.handle(t, "a.txt")
	st := x.state(t, "a.txt")
	later := st.LastModified.Add(time.Minute)
	x.s3.Delete(bucket, "a.txt")
	heads := x.s3.Heads.Load()
	x.task.JobID, x.task.ETag, x.task.LastModified, x.task.SidecarKnown = "job_j", st.ETag, &later, true
	chunks, _, tombstones, ev := x.handle(t, "a.txt")
	if ev.Outcome != schema.OutcomeDeleted || len(chunks) != 0 || len(tombstones) != 1 || len(tombstones[0].ChunkIDs) != st.Chunks || x.s3.Heads.Load()-heads != 1 {
		t.Fatalf("%+v, %d chunks, tombstones %+v, %d HEADs", ev, len(chunks), tombstones, x.s3.Heads.Load()-heads)
	}
	if got := x.state(t, "a.txt"); got.Status != schema.ObjectDeleted {
		t.Fatalf("state %+v", got)
	}
}
