package producer

import (
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
)

// Document statuses as the API shows them.
const (
	docIndexed  = "indexed"  // its chunks are published and committed
	docSkipped  = "skipped"  // known, not indexed (Reason): nothing downstream
	docDeleting = "deleting" // an erase job is removing it
)

// documentStatus is the API's status of an object state ("" for states
// that are not documents: objects deleted from the bucket).
func documentStatus(st *schema.ObjectState) string {
	switch st.Status {
	case schema.ObjectIndexed:
		return docIndexed
	case schema.ObjectSkipped:
		return docSkipped
	case schema.ObjectErasing:
		return docDeleting
	}
	return ""
}

// documentView is a document as the API lists it (Captain's shape, with
// stevedore's status and counts).
type documentView struct {
	DocumentID     string       `json:"document_id"`
	CollectionName string       `json:"collection_name"`
	Status         string       `json:"status"`
	Reason         string       `json:"reason,omitempty"`
	ChunkCount     int          `json:"chunk_count"`
	TokenCount     int64        `json:"token_count"`
	Metadata       documentMeta `json:"metadata"`
	JobID          string       `json:"job_id,omitempty"` // the job that last wrote it (none for S3 notifications)
	UpdatedAt      time.Time    `json:"updated_at"`
}

// documentMeta is what is known of the document's object.
type documentMeta struct {
	Filename         string `json:"filename"`
	FileType         string `json:"file_type"`
	FileSize         int64  `json:"file_size,omitempty"`
	MimeType         string `json:"mime_type,omitempty"`
	URI              string `json:"uri"`
	Bucket           string `json:"bucket"`
	Key              string `json:"key"`
	ETag             string `json:"etag,omitempty"`
	VersionID        string `json:"version_id,omitempty"`
	ExtractorVersion string `json:"extractor_version,omitempty"`
	ProcessingType   string `json:"processing_type,omitempty"`
}

func newDocumentView(collection string, st *schema.ObjectState) *documentView {
	return &documentView{DocumentID: schema.DocumentID(st.Bucket, st.Key), CollectionName: collection, Status: documentStatus(st),
		Reason: st.Reason, ChunkCount: st.Chunks, TokenCount: st.Tokens, JobID: st.JobID, UpdatedAt: st.UpdatedAt,
		Metadata: documentMeta{Filename: path.Base(st.Key), FileType: strings.TrimPrefix(path.Ext(st.Key), "."), FileSize: st.Size,
			MimeType: st.ContentType, URI: "s3://" + st.Bucket + "/" + st.Key, Bucket: st.Bucket, Key: st.Key, ETag: st.ETag,
			VersionID: st.VersionID, ExtractorVersion: st.ExtractorVersion, ProcessingType: cmp.Or(st.ProcessingType, schema.ProcessingBasic)}}
}

// MaxDocumentWindow bounds offset+limit of a document listing: the page is
// cut from the collection's documents in key order, keeping that many at
// most (a filter by prefix narrows further).
const MaxDocumentWindow = 100_000

// listDocuments is GET /v2/collections/{name}/documents?limit&offset&status&prefix&bucket:
// the collection's documents in (bucket, key) order.
func (a *API) listDocuments(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	c, err := a.collection(r, org.ID)
	if err != nil {
		return err
	}
	limit, offset, err := page(r, 50, 1000)
	if err != nil {
		return err
	}
	if offset+limit > MaxDocumentWindow {
		return badRequest("invalid_offset", fmt.Sprintf("offset + limit is over %d", MaxDocumentWindow), "narrow the listing with prefix=")
	}
	q := r.URL.Query()
	f := docFilter{status: q.Get("status"), prefix: q.Get("prefix"), bucket: q.Get("bucket")}
	if f.status != "" && f.status != docIndexed && f.status != docSkipped && f.status != docDeleting {
		return badRequest("invalid_status", "status must be indexed, skipped or deleting", "")
	}
	window := &docHeap{}
	total := 0
	err = collections.Each(r.Context(), a.colls.Objects(), org.ID, c.Name, func(_ jetstream.KeyValueEntry, st *schema.ObjectState) error {
		if !f.match(st) {
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
		return err
	}
	docs := []*schema.ObjectState(*window)
	slices.SortFunc(docs, docCompare)
	out := make([]*documentView, 0, limit)
	for _, st := range docs[min(offset, len(docs)):] {
		out = append(out, newDocumentView(c.Name, st))
	}
	writeJSON(w, http.StatusOK, map[string]any{"documents": out, "total_count": total, "limit": limit, "offset": offset})
	return nil
}

type docFilter struct{ status, prefix, bucket string }

func (f docFilter) match(st *schema.ObjectState) bool {
	s := documentStatus(st)
	return s != "" && (f.status == "" || f.status == s) && strings.HasPrefix(st.Key, f.prefix) && (f.bucket == "" || f.bucket == st.Bucket)
}

func docCompare(a, b *schema.ObjectState) int {
	return cmp.Or(strings.Compare(a.Bucket, b.Bucket), strings.Compare(a.Key, b.Key))
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

// chunkView is one visible chunk of a document.
type chunkView struct {
	ChunkIndex  int             `json:"chunk_index"`
	ChunkID     string          `json:"chunk_id"`
	Content     string          `json:"content"`
	TokenCount  int             `json:"token_count"`
	ByteOffset  int64           `json:"byte_offset"`
	PageStart   int             `json:"page_start,omitempty"`
	PageEnd     int             `json:"page_end,omitempty"`
	HeadingPath []string        `json:"heading_path,omitempty"`
	HeaderRow   string          `json:"header_row,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"` // the custom metadata the chunk carries
}

// documentWithChunks is GET /v2/collections/{name}/documents/{id}.
type documentWithChunks struct {
	*documentView
	Chunks      []chunkView `json:"chunks"`
	ChunkOffset int         `json:"chunk_offset"`
	// ChunksUnavailable says why the chunks are not shown although the
	// document has some.
	ChunksUnavailable string `json:"chunks_unavailable,omitempty"`
}

// chunkReads is how many chunks one request reads from CHUNKS at once.
const chunkReads = 32

// getDocument is GET /v2/collections/{name}/documents/{document_id}
// ?chunk_offset&chunk_limit&include_chunks: the document with its visible
// chunks in order, read from CHUNKS by the sequences its state recorded
// (one read per chunk, whatever the collection's size).
func (a *API) getDocument(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	c, err := a.collection(r, org.ID)
	if err != nil {
		return err
	}
	id := r.PathValue("document_id")
	st, err := a.documentState(r.Context(), org.ID, c.Name, id)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	offset, limit := 0, 1000
	if v := q.Get("chunk_offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return badRequest("invalid_chunk_offset", "chunk_offset must be a non-negative integer", "")
		}
	}
	if v := q.Get("chunk_limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 10_000 {
			return badRequest("invalid_chunk_limit", "chunk_limit must be an integer from 1 to 10000", "")
		}
	}
	out := &documentWithChunks{documentView: newDocumentView(c.Name, st), Chunks: []chunkView{}, ChunkOffset: offset}
	if q.Get("include_chunks") != "false" && st.Status == schema.ObjectIndexed && st.Chunks > offset {
		out.Chunks, out.ChunksUnavailable, err = a.readChunks(r.Context(), org.ID, c.Name, st, offset, limit)
		if err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// documentState is the state of org's document id in collection (404 when
// there is none, or it is not a document).
func (a *API) documentState(ctx context.Context, org, collection, id string) (*schema.ObjectState, error) {
	if !schema.ValidDocumentID(id) {
		return nil, documentNotFound(collection, id)
	}
	e, err := a.colls.Objects().Get(ctx, schema.ObjectKeyPrefix(org, collection)+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, documentNotFound(collection, id)
	}
	if err != nil {
		return nil, err
	}
	st, ok := collections.DecodeState(e)
	if !ok || documentStatus(st) == "" {
		return nil, documentNotFound(collection, id)
	}
	return st, nil
}

// readChunks reads chunks offset … offset+limit of the indexed document st
// from CHUNKS, each checked to be the one the state names (its ID). A
// chunk that is not there — older than CHUNKS keeps, or positions not
// recorded — is said, not guessed: unavailable.
func (a *API) readChunks(ctx context.Context, org, collection string, st *schema.ObjectState, offset, limit int) ([]chunkView, string, error) {
	if schema.SeqCount(st.ChunkSeqs) != st.Chunks {
		return []chunkView{}, "the chunks' positions in CHUNKS were not recorded (indexed by an earlier version, or too scattered); index the document again with overwrite_existing to record them", nil
	}
	seqs := schema.Seqs(st.ChunkSeqs, offset+limit)[offset:]
	ids := st.ChunkIDs(org, collection)
	stream, err := a.cfg.JS.Stream(ctx, schema.StreamChunks)
	if err != nil {
		return nil, "", err
	}
	out := make([]chunkView, len(seqs))
	missing := make([]bool, len(seqs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(chunkReads)
	for i, seq := range seqs {
		g.Go(func() error {
			msg, err := stream.GetMsg(gctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				missing[i] = true
				return nil
			}
			if err != nil {
				return err
			}
			ch, err := schema.DecodeChunk(msg.Data)
			if err != nil || ch.ChunkID != ids[offset+i] {
				missing[i] = true
				return nil
			}
			out[i] = chunkView{ChunkIndex: ch.Index, ChunkID: ch.ChunkID, Content: ch.Text, TokenCount: ch.TokenCount, ByteOffset: ch.ByteOffset,
				PageStart: ch.PageStart, PageEnd: ch.PageEnd, HeadingPath: ch.HeadingPath, HeaderRow: ch.HeaderRow, Metadata: ch.CustomMetadata}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, "", err
	}
	if slices.Contains(missing, true) {
		return []chunkView{}, "some of the document's chunks are no longer in CHUNKS (older than CHUNKS keeps messages: 7 days by default); they stay with the consumers that read them", nil
	}
	return out, "", nil
}
