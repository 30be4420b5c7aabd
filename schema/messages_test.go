package schema

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

var at = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func samples() map[string]any {
	return map[string]any{
		"job": &Job{JobID: "job_0123456789abcdef", Org: "org_1a2b3c4d5e6f7a8b", Collection: "my_documents", IntegrationID: "int_0011223344556677",
			Kind: JobDirectory, Bucket: "acme-docs", Region: "us-east-1", Prefix: "reports/2026/", ContinuationToken: "1Sj3cbcKvs==",
			Page: 2, Planned: 2000, MaxFiles: 5000, SkipExisting: true, ReadSettings: ReadSettings{ProcessingType: "advanced"},
			CustomMetadata: json.RawMessage(`{"team":"legal"}`), CreatedAt: at},
		"task": &Task{Op: OpIndex, JobID: "job_0123456789abcdef", Org: "org_1a2b3c4d5e6f7a8b", Collection: "my_documents", IntegrationID: "int_0011223344556677",
			Bucket: "acme-docs", Region: "us-east-1", Key: "reports/2026/q3 summary+final.txt", ScopePrefix: "reports/2026/", ETag: `"9b2cf535f27731c974343645a3985328"`, Size: 18234, SkipExisting: true,
			ReadSettings: ReadSettings{ProcessingType: ProcessingAdvanced, Encoding: EncodingO200k}},
		"chunk": &Chunk{ChunkID: ChunkID("org_1a2b3c4d5e6f7a8b", "my_documents", "acme-docs", "a.txt", `"etag"`, "text/1", 0),
			Org: "org_1a2b3c4d5e6f7a8b", Collection: "my_documents", JobID: "job_0123456789abcdef", Bucket: "acme-docs", Key: "a.txt", ETag: `"etag"`,
			Index: 0, Total: 3, ByteOffset: 0, Text: "Hello, world.\n\n", TokenCount: 5, Encoding: "cl100k_base", ExtractorVersion: "text/1"},
		// A chunk of a document read with processing_type advanced: pages,
		// heading path, detected type, the request's metadata, what S3 said
		// of the object, and the document's metadata (the request's
		// overlaid by the object's S3 user metadata).
		"chunk_document": &Chunk{ChunkID: ChunkID("org_1a2b3c4d5e6f7a8b", "my_documents", "acme-docs", "handbook.pdf", `"etag"`, "pdf/1+structured", 4),
			Org: "org_1a2b3c4d5e6f7a8b", Collection: "my_documents", JobID: "job_0123456789abcdef", Bucket: "acme-docs", Key: "handbook.pdf", ETag: `"etag"`,
			Index: 4, ByteOffset: 9120, Text: "## Crane Productivity\nThe terminal measures productivity in moves per crane hour.\n", TokenCount: 16,
			Encoding: "cl100k_base", ExtractorVersion: "pdf/1+structured", ContentType: "application/pdf", PageStart: 3, PageEnd: 4,
			HeadingPath: []string{"Cargo Handling", "Crane Productivity"}, CustomMetadata: json.RawMessage(`{"team":"legal"}`),
			Source:   &Source{URI: "s3://acme-docs/handbook.pdf", ETag: `"etag"`, LastModified: &at, Size: 482133, ContentType: "application/pdf"},
			Metadata: json.RawMessage(`{"department":"legal","team":"legal"}`)},
		// A CSV chunk after the first: the header row repeated.
		"chunk_csv": &Chunk{ChunkID: ChunkID("org_1a2b3c4d5e6f7a8b", "my_documents", "acme-docs", "suppliers.csv", `"etag"`, "text-legacy/1@o200k_base", 1),
			Org: "org_1a2b3c4d5e6f7a8b", Collection: "my_documents", Bucket: "acme-docs", Key: "suppliers.csv", ETag: `"etag"`,
			Index: 1, ByteOffset: 2048, Text: "Peña Hermanos,José Muñoz,A Coruña,shackles\n", TokenCount: 14, Encoding: "o200k_base",
			ExtractorVersion: "text-legacy/1@o200k_base", ContentType: "text/csv; charset=windows-1252", HeaderRow: "supplier,contact,city,product"},
		"tombstone": &Tombstone{Org: "org_1a2b3c4d5e6f7a8b", Collection: "my_documents", Bucket: "acme-docs", Key: "a.txt", ETag: `"etag"`,
			ChunkIDs: []string{"ch_1", "ch_2"}, Reason: "deleted", At: at},
		"commit": &Commit{Commit: true, Org: "org_1a2b3c4d5e6f7a8b", Collection: "my_documents", JobID: "job_0123456789abcdef", Bucket: "acme-docs",
			Key: "a.txt", ETag: `"etag"`, ExtractorVersion: "text/1", Chunks: 3, Tokens: 1200, At: at},
		"object_event": &ObjectEvent{EventID: ObjectEventID("job_0123456789abcdef", OpIndex, "acme-docs", "a.txt", ""), JobID: "job_0123456789abcdef",
			Org: "org_1a2b3c4d5e6f7a8b", Collection: "my_documents", Bucket: "acme-docs", Key: "a.txt", ETag: `"etag"`, Outcome: OutcomeIndexed, Chunks: 3, Tokens: 1200, Bytes: 5000, At: at},
		"job_event": &JobEvent{EventID: PlannedEventID("job_0123456789abcdef", 0), JobID: "job_0123456789abcdef", Org: "org_1a2b3c4d5e6f7a8b",
			Collection: "my_documents", Type: JobPlanned, Page: 0, Tasks: 1000, Last: false, At: at},
		"dead_letter": &DeadLetter{Stream: StreamTasks, Subject: "tasks.org_1.c", Sequence: 42, Deliveries: 8, Reason: "decode task: invalid_json",
			ErrorClass: "permanent", Payload: []byte("{not json"), At: at},
	}
}

func decodeAny(typ string, data []byte) (any, error) {
	switch typ {
	case "job":
		return DecodeJob(data)
	case "task":
		return DecodeTask(data)
	case "chunk", "chunk_document", "chunk_csv":
		return DecodeChunk(data)
	case "tombstone":
		return DecodeTombstone(data)
	case "commit":
		return DecodeCommit(data)
	case "object_event":
		return DecodeObjectEvent(data)
	case "job_event":
		return DecodeJobEvent(data)
	case "dead_letter":
		return DecodeDeadLetter(data)
	}
	panic(typ)
}

func TestGolden(t *testing.T) {
	for typ, msg := range samples() {
		t.Run(typ, func(t *testing.T) {
			data, err := Encode(msg)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", typ+".golden.json")
			if *update {
				if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(data) + "\n"; got != string(want) {
				t.Fatalf("wire format changed:\n got  %s\n want %s", got, want)
			}
			back, err := decodeAny(typ, want)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, msg) {
				t.Fatalf("round trip:\n got  %+v\n want %+v", back, msg)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	valid, _ := Encode(samples()["task"])
	tests := []struct {
		name, data, reason string
	}{
		{"invalid json", `{"v":1,`, "invalid_json"},
		{"not an object", `[1,2]`, "invalid_json"},
		{"missing version", `{"op":"index"}`, "missing_field"},
		{"future major", strings.Replace(string(valid), `"v":1`, `"v":2`, 1), "unsupported_version"},
		{"missing key", strings.Replace(string(valid), `"key":"reports/2026/q3 summary+final.txt"`, `"key":""`, 1), "invalid_field"},
		{"bad op", strings.Replace(string(valid), `"op":"index"`, `"op":"explode"`, 1), "invalid_field"},
		{"forged org token", strings.Replace(string(valid), `"org":"org_1a2b3c4d5e6f7a8b"`, `"org":"org.*"`, 1), "invalid_field"},
		{"too large", `{"v":1,"pad":"` + strings.Repeat("x", MaxMessageBytes) + `"}`, "too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeTask([]byte(tc.data))
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason != tc.reason {
				t.Fatalf("err = %v, want reason %s", err, tc.reason)
			}
			if !errors.Is(err, ErrPermanent) {
				t.Fatalf("decode error is not permanent: %v", err)
			}
		})
	}
	// Unknown fields are accepted (forward compatibility within a major version).
	extra := strings.Replace(string(valid), `{"v":1,`, `{"v":1,"added_in_1_1":true,`, 1)
	if _, err := DecodeTask([]byte(extra)); err != nil {
		t.Fatalf("unknown field rejected: %v", err)
	}
}

func TestChunkIDDeterministic(t *testing.T) {
	a := ChunkID("o", "c", "b", "k", "e", "x", 1)
	if a != ChunkID("o", "c", "b", "k", "e", "x", 1) {
		t.Fatal("not deterministic")
	}
	for _, other := range []string{ChunkID("o", "c", "b", "k", "e", "x", 2), ChunkID("o", "c", "b", "k2", "e", "x", 1), ChunkID("o", "c", "b", "k", "e2", "x", 1), ChunkID("o", "c2", "b", "k", "e", "x", 1)} {
		if other == a {
			t.Fatal("collision on a differing field")
		}
	}
	// NUL separation: ("ab","c") and ("a","bc") differ.
	if ChunkID("o", "c", "ab", "c", "e", "x", 0) == ChunkID("o", "c", "a", "bc", "e", "x", 0) {
		t.Fatal("ambiguous join")
	}
}

func fuzzDecoder(f *testing.F, typ string) {
	golden, err := os.ReadFile(filepath.Join("testdata", typ+".golden.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := decodeAny(typ, data)
		if err != nil {
			if !errors.Is(err, ErrPermanent) {
				t.Fatalf("non-permanent decode error: %v", err)
			}
			return
		}
		// Whatever decodes re-encodes and decodes to the same value.
		again, err := Encode(msg)
		if err != nil {
			t.Fatal(err)
		}
		msg2, err := decodeAny(typ, again)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(t, msg), normalize(t, msg2)) {
			t.Fatalf("unstable: %+v vs %+v", msg, msg2)
		}
	})
}

// normalize compares through JSON so that equivalent raw metadata compares equal.
func normalize(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func FuzzDecodeJob(f *testing.F)         { fuzzDecoder(f, "job") }
func FuzzDecodeTask(f *testing.F)        { fuzzDecoder(f, "task") }
func FuzzDecodeChunk(f *testing.F)       { fuzzDecoder(f, "chunk") }
func FuzzDecodeTombstone(f *testing.F)   { fuzzDecoder(f, "tombstone") }
func FuzzDecodeCommit(f *testing.F)      { fuzzDecoder(f, "commit") }
func FuzzDecodeObjectEvent(f *testing.F) { fuzzDecoder(f, "object_event") }
func FuzzDecodeJobEvent(f *testing.F)    { fuzzDecoder(f, "job_event") }
func FuzzDecodeDeadLetter(f *testing.F)  { fuzzDecoder(f, "dead_letter") }

// TestValidProcessingTypeAndEncoding: what requests and routes may name.
func TestValidProcessingTypeAndEncoding(t *testing.T) {
	for p, want := range map[string]bool{"": true, "basic": true, "advanced": true, "ocr": false, "Advanced": false} {
		if ValidProcessingType(p) != want {
			t.Errorf("ValidProcessingType(%q) = %v", p, !want)
		}
	}
	for e, want := range map[string]bool{"": true, "cl100k_base": true, "o200k_base": true, "p50k_base": false} {
		if ValidEncoding(e) != want {
			t.Errorf("ValidEncoding(%q) = %v", e, !want)
		}
	}
}
