package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
)

// bigVersion makes the stored version of key one of chunks chunks, as if a
// ~200 MB text had been indexed: its object state and commit say so, and
// CHUNKS holds every 100th of its chunks (published here directly: indexing
// 200 MB under the race detector would take minutes and prove nothing more;
// the sample spans every tombstone part). It returns the sampled IDs.
func (e *env) bigVersion(t *testing.T, key string, chunks int) map[string]bool {
	t.Helper()
	ctx := context.Background()
	kv, _ := e.js.KeyValue(ctx, schema.BucketObjects)
	stateKey := schema.ObjectKey(e.org.ID, "docs", bucket, key)
	entry, err := kv.Get(ctx, stateKey)
	if err != nil {
		t.Fatal(err)
	}
	var st schema.ObjectState
	if err := json.Unmarshal(entry.Value(), &st); err != nil {
		t.Fatal(err)
	}
	st.Chunks = chunks
	data, _ := json.Marshal(&st)
	if _, err := kv.Update(ctx, stateKey, data, entry.Revision()); err != nil {
		t.Fatal(err)
	}
	subject := schema.ChunkSubject(e.org.ID, "docs")
	ids := st.ChunkIDs(e.org.ID, "docs")
	commit := &schema.Commit{Org: e.org.ID, Collection: "docs", Bucket: bucket, Key: key, VersionID: st.VersionID, ETag: st.ETag,
		ExtractorVersion: st.ExtractorVersion, Chunks: chunks, At: time.Now().UTC()}
	if _, err := schema.PublishAll(ctx, e.js, []schema.Out{{Subject: subject, MsgID: "big:commit:" + key + st.ETag, Msg: commit}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(ids); i += 100_000 {
		var out []schema.Out
		for j := i; j < min(i+100_000, len(ids)); j += 100 {
			out = append(out, schema.Out{Subject: subject, MsgID: "big:" + ids[j], Msg: &schema.Chunk{ChunkID: ids[j], Org: e.org.ID, Collection: "docs",
				Bucket: bucket, Key: key, VersionID: st.VersionID, ETag: st.ETag, Index: j, Text: "x", TokenCount: 1, Encoding: "cl100k_base", ExtractorVersion: st.ExtractorVersion}})
		}
		if _, err := schema.PublishAll(ctx, e.js, out); err != nil {
			t.Fatal(err)
		}
	}
	sample := map[string]bool{}
	for j := 0; j < len(ids); j += 100 {
		sample[ids[j]] = true
	}
	return sample
}

// tombstoned reads CHUNKS: the largest message, the tombstone messages and
// the chunk IDs they list, and whether every tombstone came before the last
// commit.
func tombstoned(t *testing.T, e *env) (largest, tombstones int, ids map[string]bool, beforeCommit bool) {
	t.Helper()
	ids = map[string]bool{}
	lastTomb, lastCommit := 0, 0
	n := 0
	eachChunksMessage(t, e, func(data []byte) {
		n++
		largest = max(largest, len(data))
		if ts, err := schema.DecodeTombstone(data); err == nil && ts.Tombstone {
			tombstones, lastTomb = tombstones+1, n
			for _, id := range ts.ChunkIDs {
				ids[id] = true
			}
		}
		if c, err := schema.DecodeCommit(data); err == nil && c.Commit {
			lastCommit = n
		}
	})
	return largest, tombstones, ids, lastTomb < lastCommit
}

// TestBigObjectIsReplacedAndDeleted: a 100,000-chunk object's tombstone
// (3.8 MB of chunk IDs) was over the 1 MiB message cap, so a replace left
// both versions visible (the commit had gone first) and a delete left the
// document searchable; the job said aws_unavailable. Tombstones are split
// into parts under the cap and acknowledged before the new commit now.
func TestBigObjectIsReplacedAndDeleted(t *testing.T) {
	const chunks = 100_000
	e := setup(t, map[string]string{"big.txt": "version one of a big document\n"})
	e.indexFile(t, "job_1", "big.txt")
	if ids, _, _ := visible(t, e); len(ids) != 1 {
		t.Fatalf("%d visible after the first index", len(ids))
	}
	sample := e.bigVersion(t, "big.txt", chunks)
	if ids, _, _ := visible(t, e); len(ids) != len(sample) {
		t.Fatalf("%d visible before the replace, want the %d sampled", len(ids), len(sample))
	}

	// Replace: only the new version's chunks are visible.
	e.s3.Put(bucket, "big.txt", "version two, short\n")
	e.indexFile(t, "job_2", "big.txt")
	ids, _, commits := visible(t, e)
	st := e.state(t, "big.txt")
	newIDs := st.ChunkIDs(e.org.ID, "docs")
	if len(ids) != len(newIDs) || !ids[newIDs[0]] {
		t.Fatalf("after replacing a %d-chunk version: %d visible, want the new version's %d", chunks, len(ids), len(newIDs))
	}
	largest, parts, gone, first := tombstoned(t, e)
	t.Logf("replace of a %d-chunk object: %d visible chunks (the new version's), %d commits, %d tombstone messages listing %d IDs, all before the new commit: %v; largest CHUNKS message %d bytes",
		chunks, len(ids), commits, parts, len(gone), first, largest)
	if largest > schema.MaxMessageBytes || parts != (chunks+schema.TombstoneMaxIDs-1)/schema.TombstoneMaxIDs || len(gone) != chunks || !first {
		t.Fatalf("largest message %d bytes, %d tombstone parts, %d IDs tombstoned, before the commit %v", largest, parts, len(gone), first)
	}

	// Delete of a 100,000-chunk version: nothing stays visible.
	e.bigVersion(t, "big.txt", chunks)
	e.s3.Delete(bucket, "big.txt")
	e.notifyDelete(t, "big.txt", "0055AED6DCD90281E5")
	ids, _, _ = visible(t, e)
	largest, parts, gone, _ = tombstoned(t, e)
	t.Logf("delete of a %d-chunk object: %d visible chunks, %d tombstone messages in all listing %d IDs, largest CHUNKS message %d bytes", chunks, len(ids), parts, len(gone), largest)
	if len(ids) != 0 || len(gone) != 2*chunks || largest > schema.MaxMessageBytes {
		t.Fatalf("%d chunks still visible after the delete, %d IDs tombstoned", len(ids), len(gone))
	}
}
