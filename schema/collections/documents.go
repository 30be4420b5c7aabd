package collections

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/schema"
)

// Document statuses, as the API and the CLI show them.
const (
	DocIndexed  = "indexed"  // its chunks are published and committed
	DocSkipped  = "skipped"  // known, not indexed (Reason): nothing downstream
	DocDeleting = "deleting" // an erase job is removing it
	DocFailed   = "failed"   // its last task was given up (Reason, ErrorCode): nothing downstream
)

// DocStatus is the document status of an object state ("" for states that
// are not documents: objects deleted from the bucket).
func DocStatus(st *schema.ObjectState) string {
	switch st.Status {
	case schema.ObjectIndexed:
		return DocIndexed
	case schema.ObjectSkipped:
		return DocSkipped
	case schema.ObjectErasing:
		return DocDeleting
	case schema.ObjectFailed:
		return DocFailed
	}
	return ""
}

// ValidDocStatus reports whether s is a document status.
func ValidDocStatus(s string) bool {
	return s == DocIndexed || s == DocSkipped || s == DocFailed || s == DocDeleting
}

// DocFilter selects documents: by status, key prefix and bucket ("" for any).
type DocFilter struct{ Status, Prefix, Bucket string }

// Match reports whether st is a document f selects.
func (f DocFilter) Match(st *schema.ObjectState) bool {
	s := DocStatus(st)
	return s != "" && (f.Status == "" || f.Status == s) && strings.HasPrefix(st.Key, f.Prefix) && (f.Bucket == "" || f.Bucket == st.Bucket)
}

func docCompare(a, b *schema.ObjectState) int {
	return cmp.Or(strings.Compare(a.Bucket, b.Bucket), strings.Compare(a.Key, b.Key))
}

// Documents returns the page offset … offset+limit of the collection's
// documents f selects, in (bucket, key) order, and how many it selects in
// all: one streaming pass over the states, keeping offset+limit of them at
// most (without their chunk sequences).
func (s *Store) Documents(ctx context.Context, org, collection string, f DocFilter, limit, offset int) ([]*schema.ObjectState, int, error) {
	window := &docHeap{}
	total := 0
	err := Each(ctx, s.js, org, collection, func(_ jetstream.KeyValueEntry, st *schema.ObjectState) error {
		if !f.Match(st) {
			return nil
		}
		total++
		kept := *st
		kept.ChunkSeqs = nil
		heap.Push(window, &kept)
		if window.Len() > offset+limit {
			heap.Pop(window)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	docs := []*schema.ObjectState(*window)
	slices.SortFunc(docs, docCompare)
	return docs[min(offset, len(docs)):], total, nil
}

// docHeap keeps the first documents in key order: a max-heap, whose top
// (the last in order) is dropped when it holds one too many.
type docHeap []*schema.ObjectState

func (h docHeap) Len() int           { return len(h) }
func (h docHeap) Less(i, j int) bool { return docCompare(h[i], h[j]) > 0 }
func (h docHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *docHeap) Push(x any)        { *h = append(*h, x.(*schema.ObjectState)) }
func (h *docHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Document returns the state of org's document id in collection
// (ErrNotFound when there is none, or it is not a document).
func (s *Store) Document(ctx context.Context, org, collection, id string) (*schema.ObjectState, error) {
	if !schema.ValidID(collection) || !schema.ValidDocumentID(id) {
		return nil, ErrNotFound
	}
	e, err := s.objects.Get(ctx, schema.ObjectKeyPrefix(org, collection)+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	st, ok := DecodeState(e)
	if !ok || DocStatus(st) == "" {
		return nil, ErrNotFound
	}
	return st, nil
}

// chunkReads is how many chunks one call reads from CHUNKS at once.
const chunkReads = 32

// Why a document's chunks cannot be shown.
const (
	UnavailableNotRecorded = "the chunks' positions in CHUNKS were not recorded (indexed by an earlier version, or too scattered); index the document again with overwrite_existing to record them"
	UnavailableAged        = "some of the document's chunks are no longer in CHUNKS (older than CHUNKS keeps messages: 7 days by default); they stay with the consumers that read them"
)

// Chunks reads chunks offset … offset+limit of the indexed document st of
// org's collection from CHUNKS, by the sequences its state recorded (one
// read per chunk, whatever the collection's size), each checked to be the
// chunk the state names. When they cannot all be read, it returns none and
// why (Unavailable…): a chunk is never guessed.
func Chunks(ctx context.Context, js jetstream.JetStream, org, collection string, st *schema.ObjectState, offset, limit int) ([]*schema.Chunk, string, error) {
	if st.Status != schema.ObjectIndexed || offset >= st.Chunks {
		return nil, "", nil
	}
	if schema.SeqCount(st.ChunkSeqs) != st.Chunks {
		return nil, UnavailableNotRecorded, nil
	}
	seqs := schema.Seqs(st.ChunkSeqs, offset+limit)[offset:]
	ids := st.ChunkIDs(org, collection)
	stream, err := js.Stream(ctx, schema.StreamChunks)
	if err != nil {
		return nil, "", err
	}
	out := make([]*schema.Chunk, len(seqs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(chunkReads)
	for i, seq := range seqs {
		g.Go(func() error {
			msg, err := stream.GetMsg(gctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if ch, err := schema.DecodeChunk(msg.Data); err == nil && ch.ChunkID == ids[offset+i] {
				out[i] = ch
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, "", err
	}
	if slices.Contains(out, nil) {
		return nil, UnavailableAged, nil
	}
	return out, "", nil
}
