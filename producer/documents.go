package producer

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/stevedore-dev/stevedore/schema/collections"
)

// MaxDocumentWindow bounds offset+limit of a document listing: the page is
// cut from the collection's documents in key order, keeping that many at
// most (a filter by prefix narrows further).
const MaxDocumentWindow = 100_000

// listDocuments is GET /v2/collections/{name}/documents?limit&offset&status&prefix&bucket:
// the collection's documents in (bucket, key) order.
func (a *API) listDocuments(w http.ResponseWriter, r *http.Request) error {
	org, c, err := a.collection(r)
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
	f := collections.DocFilter{Status: q.Get("status"), Prefix: q.Get("prefix"), Bucket: q.Get("bucket")}
	if f.Status != "" && !collections.ValidDocStatus(f.Status) {
		return badRequest("invalid_status", "status must be indexed, skipped, failed or deleting", "")
	}
	docs, total, err := a.colls.Documents(r.Context(), org.ID, c.Name, f, limit, offset)
	if err != nil {
		return err
	}
	out := make([]*collections.DocumentView, 0, len(docs))
	for _, st := range docs {
		out = append(out, collections.View(c.Name, st))
	}
	writeJSON(w, http.StatusOK, map[string]any{"documents": out, "total_count": total, "limit": limit, "offset": offset})
	return nil
}

// documentWithChunks is GET /v2/collections/{name}/documents/{id}.
type documentWithChunks struct {
	*collections.DocumentView
	Chunks      []collections.ChunkView `json:"chunks"`
	ChunkOffset int                     `json:"chunk_offset"`
	// ChunksUnavailable says why the chunks are not shown although the
	// document has some.
	ChunksUnavailable string `json:"chunks_unavailable,omitempty"`
}

// getDocument is GET /v2/collections/{name}/documents/{document_id}
// ?chunk_offset&chunk_limit&include_chunks: the document with its visible
// chunks in order, read from CHUNKS by the sequences its state recorded
// (one read per chunk, whatever the collection's size).
func (a *API) getDocument(w http.ResponseWriter, r *http.Request) error {
	org, c, err := a.collection(r)
	if err != nil {
		return err
	}
	id := r.PathValue("document_id")
	st, err := a.colls.Document(r.Context(), org.ID, c.Name, id)
	if errors.Is(err, collections.ErrNotFound) {
		return documentNotFound(c.Name, id)
	}
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
	out := &documentWithChunks{DocumentView: collections.View(c.Name, st), Chunks: []collections.ChunkView{}, ChunkOffset: offset}
	if q.Get("include_chunks") != "false" {
		chunks, unavailable, err := collections.Chunks(r.Context(), a.cfg.JS, org.ID, c.Name, st, offset, limit)
		if err != nil {
			return err
		}
		out.ChunksUnavailable = unavailable
		for _, ch := range chunks {
			out.Chunks = append(out.Chunks, collections.ChunkViewOf(ch))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
