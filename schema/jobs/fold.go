package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	lru "github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// Event is one EVENTS message of a job, decoded: its stream sequence and an
// *schema.ObjectEvent or *schema.JobEvent.
type Event struct {
	Seq   uint64
	Event any
}

// Folder folds EVENTS into job records. It keeps the records it last wrote,
// with their revisions: folding a job's next events needs no read while
// nobody else wrote it (the compare-and-set still checks; on a mismatch the
// record is read again). One tracker uses one Folder; it is safe for
// concurrent use on different jobs.
type Folder struct {
	store   *Store
	log     *slog.Logger
	records *lru.LRU[string, record]
}

type record struct {
	data     []byte
	revision uint64
}

const (
	foldCacheSize = 10_000
	foldCacheIdle = 10 * time.Minute
	foldAttempts  = 5
)

// Folder returns a new Folder on the store; log receives events for jobs
// that have no record (nil discards).
func (j *Store) Folder(log *slog.Logger) *Folder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Folder{store: j, log: log, records: lru.NewLRU[string, record](foldCacheSize, nil, foldCacheIdle)}
}

// Fold applies one job's events, in stream order, with compare-and-set,
// skipping those at or below the job's last folded sequence (a batch
// redelivered after a crash is not counted twice). It returns the record
// when this fold made it final (nil otherwise), for the caller's metrics.
func (f *Folder) Fold(ctx context.Context, jobID string, evs []Event) (finished *schema.JobStatus, err error) {
	for attempt := 0; attempt < foldAttempts; attempt++ {
		cur, cached := f.records.Get(jobID)
		if !cached || attempt > 0 {
			e, err := f.store.kv.Get(ctx, jobID)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				f.log.Warn("events for unknown job", "job_id", jobID, "events", len(evs))
				f.records.Remove(jobID)
				return nil, nil
			}
			if err != nil {
				return nil, fmt.Errorf("load job: %w", err)
			}
			cur = record{data: e.Value(), revision: e.Revision()}
		}
		var s schema.JobStatus
		if err := json.Unmarshal(cur.data, &s); err != nil {
			return nil, schema.Errorf(schema.ClassPermanent, "job %s status unreadable: %w", jobID, err)
		}
		changed, wasFinal, wasSweeping := false, s.Final(), s.Sweeping()
		now := time.Now().UTC()
		for _, ev := range evs {
			if s.Apply(ev.Seq, ev.Event, now) {
				changed = true
			}
		}
		if !changed {
			return nil, nil // folded before a crash; do not count twice
		}
		if s.Sweeping() && !wasSweeping {
			// Every listed object has an outcome: sweep. Published before
			// the record says so, with a deterministic ID, so a crash in
			// between publishes it again rather than never.
			if _, err := schema.PublishAll(ctx, f.store.js, []schema.Out{{Subject: schema.SweepSubject(s.Org, s.Collection), MsgID: schema.SweepMsgID(s.JobID), Msg: s.SweepJob()}}); err != nil {
				return nil, fmt.Errorf("publish the sweep of job %s: %w", jobID, err)
			}
		}
		data, err := json.Marshal(&s)
		if err != nil {
			return nil, err
		}
		rev, err := f.store.kv.Update(ctx, jobID, data, cur.revision)
		if err != nil {
			// Lost a race with another writer (a cancel, or another
			// tracker), or the cached copy was old: read it again.
			f.records.Remove(jobID)
			continue
		}
		if s.Final() {
			f.records.Remove(jobID) // no more events to fold
		} else {
			f.records.Add(jobID, record{data: data, revision: rev})
		}
		if !wasFinal && s.Final() {
			return &s, nil
		}
		return nil, nil
	}
	return nil, fmt.Errorf("update job %s: too many concurrent updates", jobID)
}
