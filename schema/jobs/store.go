// Package jobs owns the job record (KV schema.BucketJobs): its creation
// with the list index entry, Submit (record, index entry, page 0, wake),
// reads for the API, the CLI and the worker's tasks, cancel, and the
// tracker's fold of EVENTS into it. Nothing else writes a job record.
package jobs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// Store creates, reads, cancels and folds job records. A Store is safe for
// concurrent use.
type Store struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	now func() time.Time
}

// Open binds to the jobs bucket (created by schema.Topology.Ensure). now is
// the clock of List's views and Cancel's times (nil: time.Now).
func Open(ctx context.Context, js jetstream.JetStream, now func() time.Time) (*Store, error) {
	kv, err := js.KeyValue(ctx, schema.BucketJobs)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Store{js: js, kv: kv, now: now}, nil
}

// ErrNotFound: no such job in the org.
var ErrNotFound = errors.New("job not found")

// ErrFinished: the job reached a final status before it was cancelled.
var ErrFinished = errors.New("job already finished")

// Create stores a new job record and its index entry. It returns
// jetstream.ErrKeyExists when the job ID is taken.
func (j *Store) Create(ctx context.Context, st *schema.JobStatus) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := j.kv.Create(ctx, st.JobID, data); err != nil {
		return err
	}
	if _, err := j.kv.Put(ctx, schema.JobIndexKey(st.Org, st.CreatedAt, st.JobID), []byte(st.JobID)); err != nil {
		return fmt.Errorf("index job: %w", err)
	}
	return nil
}

// Get returns org's job id (ErrNotFound for another org's).
func (j *Store) Get(ctx context.Context, org, id string) (*schema.JobStatus, uint64, error) {
	if !schema.ValidID(id) {
		return nil, 0, ErrNotFound
	}
	e, err := j.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	var s schema.JobStatus
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return nil, 0, err
	}
	if s.Org != org {
		return nil, 0, ErrNotFound // never reveal another org's job
	}
	return &s, e.Revision(), nil
}

// Delete removes a job record and its index entry (a job whose first page
// could not be published, or that went over its org's quota).
func (j *Store) Delete(ctx context.Context, st *schema.JobStatus) {
	_ = j.kv.Delete(ctx, st.JobID)
	_ = j.kv.Delete(ctx, schema.JobIndexKey(st.Org, st.CreatedAt, st.JobID))
}

// Filter selects jobs of List.
type Filter struct {
	Collection string // "" for any
	Status     string // "" for any
	Limit      int    // 1–100; default 20
	Cursor     string // from the previous page's NextCursor (opaque)
}

// ErrBadCursor: the cursor is not one List returned for this org.
var ErrBadCursor = errors.New("invalid cursor")

// ErrBadStatus: the filter's status is not a job status.
var ErrBadStatus = errors.New("invalid status: must be pending, running, completed, completed_with_errors, failed or cancelled")

// Page is one page of List, newest first.
type Page struct {
	Jobs       []schema.JobView `json:"jobs"`
	NextCursor string           `json:"next_cursor,omitempty"`
}

// List returns org's jobs, newest first, a page at a time.
func (j *Store) List(ctx context.Context, org string, f Filter) (*Page, error) {
	if f.Limit <= 0 {
		f.Limit = 20
	}
	f.Limit = min(f.Limit, 100)
	if f.Status != "" && !schema.ValidJobStatus(f.Status) {
		return nil, ErrBadStatus
	}
	lister, err := j.kv.ListKeysFiltered(ctx, schema.JobIndexPrefix(org)+">")
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	after := ""
	if f.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil || !strings.HasPrefix(string(b), schema.JobIndexPrefix(org)) {
			return nil, ErrBadCursor
		}
		after = string(b)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	page := &Page{Jobs: []schema.JobView{}}
	now := j.now()
	last := ""
	for _, k := range keys {
		if after != "" && k <= after {
			continue
		}
		id := k[strings.LastIndexByte(k, '.')+1:]
		st, _, err := j.Get(ctx, org, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if (f.Collection != "" && st.Collection != f.Collection) || (f.Status != "" && st.Status != f.Status) {
			continue
		}
		if len(page.Jobs) == f.Limit {
			page.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(last)) // there is more: resume after the last one shown
			break
		}
		page.Jobs = append(page.Jobs, st.View(now))
		last = k
	}
	return page, nil
}

// Cancel cancels org's job id: no more pages are planned, tasks not yet
// claimed are skipped ("cancelled"), tasks in flight finish, and counters
// stay exact. Cancelling a cancelled job is a no-op; a finished job is
// ErrFinished.
func (j *Store) Cancel(ctx context.Context, org, id string) (*schema.JobStatus, error) {
	for range 10 {
		st, rev, err := j.Get(ctx, org, id)
		if err != nil {
			return nil, err
		}
		switch st.Status {
		case schema.JobStatusCancelled:
			return st, nil
		case schema.JobStatusCompleted, schema.JobStatusCompletedWithErrors, schema.JobStatusFailed:
			return st, ErrFinished
		}
		now := j.now().UTC()
		st.Status, st.CompletedAt = schema.JobStatusCancelled, &now
		data, err := json.Marshal(st)
		if err != nil {
			return nil, err
		}
		if _, err := j.kv.Update(ctx, id, data, rev); err == nil {
			return st, nil
		}
		// lost a race with the tracker: read again
	}
	return nil, fmt.Errorf("cancel job %s: too many concurrent updates", id)
}
