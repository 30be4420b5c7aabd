package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

func collectionNotFound(name string) error {
	return &apiError{http.StatusNotFound, "collection_not_found", "no collection " + name + " in this organization",
		"create it with PUT /v2/collections/" + name + ", or index into it"}
}

func collectionDeleting(name string) error {
	return &apiError{http.StatusConflict, "collection_deleting", "collection " + name + " is being deleted",
		"wait for its delete job (GET /v2/collections/" + name + " names it) to finish, then create it again"}
}

// collectionDefaults fills what an index request into org's collection
// does not say from the collection's settings (processing type, tokenizer,
// custom metadata); a collection being deleted is refused.
func (a *API) collectionDefaults(ctx context.Context, org, name string, kind schema.JobKind, req *indexRequest) error {
	c, _, err := a.colls.Get(ctx, org, name)
	if errors.Is(err, collections.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.Status == collections.StatusDeleting {
		return collectionDeleting(name)
	}
	if req.ProcessingType == "" {
		req.ProcessingType = c.ProcessingType
	}
	if req.Encoding == "" {
		req.Encoding = c.Encoding
	}
	if len(req.CustomMetadata) == 0 {
		req.CustomMetadata = c.CustomMetadata
	}
	if req.ChunkTokens == 0 && req.ChunkOverlap == 0 {
		req.ChunkTokens, req.ChunkOverlap = c.ChunkTokens, c.ChunkOverlap
	}
	if req.ObjectTags == nil {
		req.ObjectTags = &c.ObjectTags
	}
	if req.OCRLanguages == "" {
		req.OCRLanguages = c.OCRLanguages
	}
	if f := c.Filters; req.filters() == nil && f != nil && kind != schema.JobFile {
		req.IncludePatterns, req.ExcludePatterns, req.MaxFileSize, req.ModifiedAfter = f.Include, f.Exclude, f.MaxFileSize, f.ModifiedAfter
	}
	return nil
}

// ensureCollection makes org's collection name exist (a route, schedule or
// index job that names it creates it); one being deleted is 409.
func (a *API) ensureCollection(ctx context.Context, org, name string) error {
	if !schema.ValidID(name) {
		return badRequest("invalid_collection", "collection name must be 1-64 characters of A-Z a-z 0-9 _ -", "rename the collection")
	}
	_, _, err := a.colls.Ensure(ctx, org, name)
	if errors.Is(err, collections.ErrDeleting) {
		return collectionDeleting(name)
	}
	return err
}

// collectionView is a collection as the API shows it: the record, what it
// holds (counted from its documents' states as of the request), its last
// job and its schedule's last sync.
type collectionView struct {
	*collections.Collection
	collections.Stats
	LastJob      *lastJob   `json:"last_job,omitempty"`
	LastSyncedAt *time.Time `json:"last_synced_at,omitempty"`
	NextSyncAt   *time.Time `json:"next_sync_at,omitempty"`
}

type lastJob struct {
	JobID       string     `json:"job_id"`
	Kind        string     `json:"kind"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"created_at"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
}

func (a *API) collectionView(ctx context.Context, c *collections.Collection) (*collectionView, error) {
	stats, err := a.colls.Stats(ctx, c.Org, c.Name)
	if err != nil {
		return nil, err
	}
	v := &collectionView{Collection: c, Stats: *stats}
	page, err := a.jobs.List(ctx, c.Org, jobs.Filter{Collection: c.Name, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(page.Jobs) > 0 {
		j := page.Jobs[0]
		v.LastJob = &lastJob{JobID: j.JobID, Kind: string(j.Kind), Status: j.Status, CreatedAt: j.CreatedAt, CompletedAt: j.CompletedAt}
	}
	if sc, _, err := a.schedules.Get(ctx, c.Org, c.Name); err == nil {
		v.LastSyncedAt, v.NextSyncAt = sc.LastSyncedAt, sc.NextSyncAt
	}
	return v, nil
}

// page reads limit (1–max, default def) and offset (≥ 0) from the query.
func page(r *http.Request, def, most int) (limit, offset int, err error) {
	q := r.URL.Query()
	limit, offset = def, 0
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 || limit > most {
			return 0, 0, badRequest("invalid_limit", fmt.Sprintf("limit must be an integer from 1 to %d", most), "")
		}
	}
	if o := q.Get("offset"); o != "" {
		if offset, err = strconv.Atoi(o); err != nil || offset < 0 {
			return 0, 0, badRequest("invalid_offset", "offset must be a non-negative integer", "")
		}
	}
	return limit, offset, nil
}

// listCollections is GET /v2/collections?limit&offset: the org's
// collections by name, each with what it holds.
func (a *API) listCollections(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	limit, offset, err := page(r, 50, 100)
	if err != nil {
		return err
	}
	all, err := a.colls.List(r.Context(), org.ID)
	if err != nil {
		return err
	}
	shown := all[min(offset, len(all)):min(offset+limit, len(all))]
	out, err := each(shown, func(c *collections.Collection) (*collectionView, error) { return a.collectionView(r.Context(), c) })
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"collections": out, "total_count": len(all), "limit": limit, "offset": offset})
	return nil
}

// collectionRequest is the body of PUT /v2/collections/{name}.
type collectionRequest struct {
	Description string `json:"description"`
	settingsRequest
}

// putCollection is PUT /v2/collections/{name}: creates the collection (201)
// or, with a body, replaces its settings (200); idempotent.
func (a *API) putCollection(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if !schema.ValidID(name) {
		return badRequest("invalid_collection", "collection name must be 1-64 characters of A-Z a-z 0-9 _ -", "rename the collection")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body over %d bytes", MaxBodyBytes), "send a smaller body"}
	}
	var c *collections.Collection
	created := false
	if len(strings.TrimSpace(string(body))) == 0 {
		c, created, err = a.colls.Ensure(r.Context(), org.ID, name)
	} else {
		var req collectionRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return jsonError(err)
		}
		set, err2 := checkSettings(&req)
		if err2 != nil {
			return err2
		}
		c, created, err = a.colls.Put(r.Context(), org.ID, name, set)
	}
	if errors.Is(err, collections.ErrDeleting) {
		return collectionDeleting(name)
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		a.audit(r.Context(), org.ID, "collection.create", "ok", name)
	}
	v, err := a.collectionView(r.Context(), c)
	if err != nil {
		return err
	}
	writeJSON(w, status, v)
	return nil
}

// checkSettings checks a collection's settings as an index request's
// options are checked.
func checkSettings(req *collectionRequest) (collections.Settings, error) {
	ir := indexRequest{settingsRequest: req.settingsRequest}
	if _, err := checkOptions(&ir); err != nil {
		return collections.Settings{}, err
	}
	if len(req.Description) > 1024 {
		return collections.Settings{}, badRequest("invalid_description", "description is over 1024 bytes", "")
	}
	if req.ProcessingType == "" {
		ir.ProcessingType = "" // not set (checkOptions made it basic): index requests decide
	}
	return collections.Settings{Description: req.Description, ReadSettings: ir.readSettings(), CustomMetadata: req.CustomMetadata, Filters: ir.filters()}, nil
}

// collection authenticates the caller and reads its collection named in
// the path (404 when it has none).
func (a *API) collection(r *http.Request) (*registry.Org, *collections.Collection, error) {
	org, err := a.authenticate(r)
	if err != nil {
		return nil, nil, err
	}
	name := r.PathValue("name")
	c, _, err := a.colls.Get(r.Context(), org.ID, name)
	if errors.Is(err, collections.ErrNotFound) {
		return nil, nil, collectionNotFound(name)
	}
	return org, c, err
}

// getCollection is GET /v2/collections/{name}.
func (a *API) getCollection(w http.ResponseWriter, r *http.Request) error {
	_, c, err := a.collection(r)
	if err != nil {
		return err
	}
	v, err := a.collectionView(r.Context(), c)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// erasing answers a started erase job: 202 with the job to poll.
func erasing(w http.ResponseWriter, st *schema.JobStatus) {
	writeJSON(w, http.StatusAccepted, map[string]any{"job_id": st.JobID, "kind": st.Kind, "status": st.Status, "collection_name": st.Collection,
		"document_id": st.Document, "poll": "/v2/jobs/" + st.JobID})
}

// deleteCollection is DELETE /v2/collections/{name}: 202 with the
// delete_collection job; asked again while it runs, the same job.
func (a *API) deleteCollection(w http.ResponseWriter, r *http.Request) error {
	org, _, err := a.collection(r)
	if err != nil {
		return err
	}
	st, _, err := a.eraser.DeleteCollection(r.Context(), "api", org.ID, r.PathValue("name"))
	if errors.Is(err, collections.ErrNotFound) {
		return collectionNotFound(r.PathValue("name"))
	}
	if err != nil {
		return err
	}
	erasing(w, st)
	return nil
}

// wipeDocuments is DELETE /v2/collections/{name}/documents: 202 with the
// wipe job; the collection stays.
func (a *API) wipeDocuments(w http.ResponseWriter, r *http.Request) error {
	org, c, err := a.collection(r)
	if err != nil {
		return err
	}
	if c.Status == collections.StatusDeleting {
		return collectionDeleting(c.Name)
	}
	st, err := a.eraser.Wipe(r.Context(), org.ID, c.Name, "")
	if err != nil {
		return err
	}
	a.audit(r.Context(), org.ID, "collection.wipe", "started", c.Name+" job "+st.JobID)
	erasing(w, st)
	return nil
}

func documentNotFound(collection, id string) error {
	return &apiError{http.StatusNotFound, "document_not_found", "no document " + id + " in collection " + collection,
		"list the collection's documents: GET /v2/collections/" + collection + "/documents"}
}

// deleteDocument is DELETE /v2/collections/{name}/documents/{document_id}:
// 202 with the delete_document job (an erasure request). A later sync of
// a bucket that still has the object indexes it again.
func (a *API) deleteDocument(w http.ResponseWriter, r *http.Request) error {
	org, c, err := a.collection(r)
	if err != nil {
		return err
	}
	id := r.PathValue("document_id")
	st, err := a.eraser.DeleteDocument(r.Context(), org.ID, c.Name, id)
	if errors.Is(err, collections.ErrNotFound) {
		return documentNotFound(c.Name, id)
	}
	if err != nil {
		return err
	}
	a.audit(r.Context(), org.ID, "document.delete", "started", c.Name+"/"+id+" job "+st.JobID)
	erasing(w, st)
	return nil
}
