package schema

import (
	"testing"
	"time"
)

func TestViewShowsOnlyCommittedChunks(t *testing.T) {
	chunk := func(key, etag string, i int) []byte {
		b, _ := Encode(&Chunk{ChunkID: ChunkID("org_1", "c", "b", key, etag, "text/1", i), Org: "org_1", Collection: "c", Bucket: "b", Key: key,
			ETag: etag, Index: i, Text: "x", TokenCount: 1, Encoding: "cl100k_base", ExtractorVersion: "text/1"})
		return b
	}
	commit := func(key, etag string, n int) []byte {
		b, _ := Encode(&Commit{Org: "org_1", Collection: "c", Bucket: "b", Key: key, ETag: etag, ExtractorVersion: "text/1", Chunks: n, At: time.Now()})
		return b
	}
	v := NewView()
	for _, m := range [][]byte{
		chunk("a", "e1", 0), chunk("a", "e1", 1), // committed below
		chunk("b", "e1", 0), // never committed: a worker died mid-object
		chunk("a", "e1", 2), // beyond the commit's count
		commit("a", "e1", 2),
		commit("c", "e1", 1), chunk("c", "e1", 0), // a chunk republished after its commit
	} {
		if err := v.Apply(m); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{ChunkID("org_1", "c", "b", "a", "e1", "text/1", 0), ChunkID("org_1", "c", "b", "a", "e1", "text/1", 1), ChunkID("org_1", "c", "b", "c", "e1", "text/1", 0)}
	if len(v.Visible()) != len(want) {
		t.Fatalf("visible %v", v.Visible())
	}
	for _, id := range want {
		if !v.Visible()[id] {
			t.Fatalf("%s not visible", id)
		}
	}
	ts, _ := Encode(&Tombstone{Org: "org_1", Collection: "c", Bucket: "b", Key: "a", ETag: "e1", ChunkIDs: want[:1], Reason: "deleted", At: time.Now()})
	if err := v.Apply(ts); err != nil || v.Visible()[want[0]] || len(v.Visible()) != 2 {
		t.Fatalf("after tombstone: %v %v", v.Visible(), err)
	}
	if v.Chunks != 5 || v.Commits != 2 {
		t.Fatalf("counted %d chunks, %d commits", v.Chunks, v.Commits)
	}
}
