package index

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// S3 user metadata as chunks carry it: names normalised, RFC 2047 values
// decoded, values and counts bounded (tenant input).
func TestUserMetadataIsNormalisedAndBounded(t *testing.T) {
	got := userMetadata(map[string]string{"Department": "legal", "cost.center": "42", "title": "=?UTF-8?B?UmVwb3J0IMOcYmVyc2ljaHQ=?=",
		"long": strings.Repeat("é", 600), strings.Repeat("n", 100): "x"})
	if got["department"] != "legal" || got["cost_center"] != "42" || got["title"] != "Report Übersicht" {
		t.Fatalf("%v", got)
	}
	if v := got["long"]; len(v) > MaxMetaValueBytes || !strings.HasPrefix(v, "é") || strings.ContainsRune(v, '\uFFFD') {
		t.Fatalf("long value: %d bytes", len(v))
	}
	if _, ok := got[strings.Repeat("n", MaxMetaNameBytes)]; !ok {
		t.Fatalf("long name not cut: %v", got)
	}
	many := map[string]string{}
	for i := range 100 {
		many[fmt.Sprintf("k%03d", i)] = "v"
	}
	if got := userMetadata(many); len(got) != MaxMetaKeys {
		t.Fatalf("%d names kept", len(got))
	}
}

// Later wins: the job's custom metadata, the object's user metadata, its
// tags, its sidecar's attributes.
func TestDocumentMetadataPrecedence(t *testing.T) {
	m, err := documentMetadata(json.RawMessage(`{"team":"a","department":"ops","year":"x","owner":"c"}`), map[string]string{"department": "legal", "year": "u", "owner": "u"},
		map[string]string{"year": "t", "owner": "t"}, map[string]any{"owner": "sidecar"})
	if err != nil || string(m) != `{"department":"legal","owner":"sidecar","team":"a","year":"t"}` {
		t.Fatalf("%s %v", m, err)
	}
	if m, _ := documentMetadata(nil, nil, nil, nil); m != nil {
		t.Fatalf("%s", m)
	}
}

// Every chunk carries what S3 answered (URI, ETag, last modified, size,
// stored content type) and the document's metadata.
func TestChunksCarrySourceAndMetadata(t *testing.T) {
	x := newIndexer(t)
	x.task.CustomMetadata = json.RawMessage(`{"team":"a"}`)
	body := strings.Repeat("A report on crane productivity, with several chunks of text. ", 10)
	x.s3.PutMeta(bucket, "reports/q3.txt", body, map[string]string{"department": "legal"})
	chunks, _, _, _ := x.handle(t, "reports/q3.txt")
	if len(chunks) < 2 {
		t.Fatalf("%d chunks", len(chunks))
	}
	for _, c := range chunks {
		s := c.Source
		if s == nil || s.URI != "s3://"+bucket+"/reports/q3.txt" || s.ETag == "" || s.Size != int64(len(body)) || s.LastModified == nil ||
			time.Since(*s.LastModified) > time.Hour || string(c.Metadata) != `{"department":"legal","team":"a"}` {
			t.Fatalf("chunk %d: source %+v metadata %s", c.Index, s, c.Metadata)
		}
	}
}
