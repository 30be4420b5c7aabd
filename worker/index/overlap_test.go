package index

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/token"
)

// Chunking asked for per task, over the corpus's text files: every chunk at
// most chunk_size_tokens, its token count exact (the tokenizer's count of
// its text), each chunk after the first beginning with the end of the one
// before — at most chunk_overlap_tokens of whole pre-tokens, and some —
// and the extractor version naming the chunking (chunk IDs never shared
// with another chunking).
func TestChunkOverlapOnTheCorpus(t *testing.T) {
	x := newIndexer(t)
	enc, _ := token.Get(token.Cl100kBase)
	x.task.ChunkTokens, x.task.ChunkOverlap = 96, 24
	files, _ := filepath.Glob("../../scripts/testdata/corpus/*/*.txt")
	md, _ := filepath.Glob("../../scripts/testdata/corpus/*/*.md")
	files = append(files, md...)
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !utf8.Valid(b) || len(b) < 2000 {
			continue
		}
		key := "corpus/" + filepath.Base(f)
		x.s3.Put(bucket, key, string(b))
		chunks, _, _, ev := x.handle(t, key)
		if ev.Outcome != schema.OutcomeIndexed || len(chunks) < 3 {
			t.Fatalf("%s: %+v, %d chunks", key, ev, len(chunks))
		}
		for i, c := range chunks {
			if c.TokenCount > 96 || c.TokenCount != enc.Count(c.Text) || !strings.HasSuffix(c.ExtractorVersion, "/t96o24") {
				t.Fatalf("%s chunk %d: %d tokens (counted %d), extractor %s", key, i, c.TokenCount, enc.Count(c.Text), c.ExtractorVersion)
			}
			if i == 0 {
				continue
			}
			prev := chunks[i-1]
			overlap := int(prev.ByteOffset + int64(len(prev.Text)) - c.ByteOffset)
			if overlap <= 0 || overlap > len(c.Text) || !strings.HasSuffix(prev.Text, c.Text[:overlap]) {
				t.Fatalf("%s chunk %d does not begin with the end of chunk %d (overlap %d bytes)", key, i, i-1, overlap)
			}
			if n := enc.Count(c.Text[:overlap]); n > 24 {
				t.Fatalf("%s chunk %d repeats %d tokens, over 24", key, i, n)
			}
		}
		checked++
	}
	if checked < 3 {
		t.Fatalf("only %d corpus files checked", checked)
	}
}

// An object indexed with one chunking is indexed again, not "unchanged",
// when asked for with another.
func TestChangedChunkingReindexes(t *testing.T) {
	x := newIndexer(t)
	x.s3.Put(bucket, "a.txt", strings.Repeat("A sentence of a document that needs a few chunks. ", 40))
	first, _, _, _ := x.handle(t, "a.txt")
	x.task.JobID, x.task.ChunkTokens = "job_j", 128
	second, _, tombstones, ev := x.handle(t, "a.txt")
	if ev.Outcome != schema.OutcomeIndexed || len(second) == 0 || len(tombstones) != 1 || len(tombstones[0].ChunkIDs) != len(first) {
		t.Fatalf("%+v: %d chunks, %d tombstones", ev, len(second), len(tombstones))
	}
	if st := x.state(t, "a.txt"); st.Chunking != "t128" {
		t.Fatalf("state chunking %q", st.Chunking)
	}
	x.task.JobID = "job_k"
	if _, _, _, ev := x.handle(t, "a.txt"); ev.Outcome != schema.OutcomeSkipped || ev.Reason != schema.ReasonAlreadyIndexed {
		t.Fatalf("same chunking again: %+v", ev)
	}
}
