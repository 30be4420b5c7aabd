package schedules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// Store keeps schedules: their message schedules in SCHEDULES and their
// records in stevedore_schedules (both made by schema.Topology.Ensure).
type Store struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	stream jetstream.Stream
	now    func() time.Time
}

// Open binds to the schedules stream and bucket; now is the clock (nil:
// time.Now).
func Open(ctx context.Context, js jetstream.JetStream, now func() time.Time) (*Store, error) {
	kv, err := js.KeyValue(ctx, schema.BucketSchedules)
	if err != nil {
		return nil, fmt.Errorf("schedules: %w", err)
	}
	stream, err := js.Stream(ctx, schema.StreamSchedules)
	if err != nil {
		return nil, fmt.Errorf("schedules: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Store{js: js, kv: kv, stream: stream, now: now}, nil
}

// InvalidError is a schedule the server or the checks refused: the
// caller's mistake (the API answers 400).
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return "invalid schedule: " + e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// Set makes sc the collection's schedule (replacing one before, whose last
// sync it keeps) and returns the record. The message schedule is published
// first: a pattern the server refuses leaves nothing behind.
func (s *Store) Set(ctx context.Context, sc *Schedule) (*Schedule, error) {
	if sc.Job == nil || !schema.ValidID(sc.Org) || !schema.ValidID(sc.Collection) {
		return nil, &InvalidError{errors.New("a schedule needs an org, a collection and a job")}
	}
	pattern, err := sc.pattern()
	if err != nil {
		return nil, &InvalidError{err}
	}
	opts := []jetstream.PublishOpt{pattern, jetstream.WithScheduleTarget(schema.TickSubject(sc.Org, sc.Collection))}
	if sc.TimeZone != "" {
		opts = append(opts, jetstream.WithScheduleTimeZone(sc.TimeZone))
	}
	job := *sc.Job
	job.Org, job.Collection, job.Schedule, job.JobID = sc.Org, sc.Collection, sc.Collection, ""
	body, err := json.Marshal(&job)
	if err != nil {
		return nil, err
	}
	rec := *sc
	rec.Job = &job
	now := s.now().UTC()
	rec.CreatedAt, rec.UpdatedAt, rec.NextSyncAt = now, now, nil
	if old, _, err := s.Get(ctx, sc.Org, sc.Collection); err == nil {
		rec.CreatedAt, rec.LastTickAt, rec.LastJobID, rec.LastSyncedAt, rec.LastSync = old.CreatedAt, old.LastTickAt, old.LastJobID, old.LastSyncedAt, old.LastSync
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if _, err := s.js.Publish(ctx, schema.ScheduleSubject(sc.Org, sc.Collection), body, opts...); err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code == 400 {
			return nil, &InvalidError{fmt.Errorf("the schedule was refused: %s", apiErr.Description)}
		}
		return nil, fmt.Errorf("publish the schedule: %w", err)
	}
	if err := s.put(ctx, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// Get returns the collection's schedule and its record's revision.
func (s *Store) Get(ctx context.Context, org, collection string) (*Schedule, uint64, error) {
	e, err := s.kv.Get(ctx, key(org, collection))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("schedules: %w", err)
	}
	var sc Schedule
	if err := json.Unmarshal(e.Value(), &sc); err != nil {
		return nil, 0, fmt.Errorf("schedule %s: unreadable: %w", e.Key(), err)
	}
	return &sc, e.Revision(), nil
}

// List returns the org's schedules ("": every org's).
func (s *Store) List(ctx context.Context, org string) ([]*Schedule, error) {
	filter := ">"
	if org != "" {
		filter = org + ".*"
	}
	keys, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("schedules: %w", err)
	}
	var out []*Schedule
	for k := range keys.Keys() {
		sc, _, err := s.Get(ctx, orgOf(k), k[len(orgOf(k))+1:])
		if errors.Is(err, ErrNotFound) {
			continue // cleared meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	return out, nil
}

// Clear removes the collection's schedule: no tick follows (a tick already
// published but not yet taken starts no job: its record is gone).
func (s *Store) Clear(ctx context.Context, org, collection string) error {
	if _, _, err := s.Get(ctx, org, collection); err != nil {
		return err
	}
	for _, subject := range []string{schema.ScheduleSubject(org, collection), schema.TickSubject(org, collection)} {
		if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
			return fmt.Errorf("clear the schedule: %w", err)
		}
	}
	if err := s.kv.Delete(ctx, key(org, collection)); err != nil {
		return fmt.Errorf("clear the schedule: %w", err)
	}
	return nil
}

// Ticked records a tick: the job it started, when, and the next tick (nil:
// not known).
func (s *Store) Ticked(ctx context.Context, org, collection, jobID string, at time.Time, next *time.Time) error {
	return s.update(ctx, org, collection, func(sc *Schedule) bool {
		if sc.LastJobID == jobID {
			return false
		}
		at := at.UTC()
		sc.LastTickAt, sc.LastJobID, sc.NextSyncAt = &at, jobID, next
		return true
	})
}

// Finished records how a sync the schedule started ended.
func (s *Store) Finished(ctx context.Context, st *schema.JobStatus) error {
	if st.Schedule == "" || !st.Final() {
		return nil
	}
	return s.update(ctx, st.Org, st.Schedule, func(sc *Schedule) bool {
		if sc.LastSync != nil && sc.LastSync.JobID == st.JobID {
			return false
		}
		if sc.LastSync != nil && sc.LastSync.CompletedAt != nil && st.CompletedAt != nil && st.CompletedAt.Before(*sc.LastSync.CompletedAt) {
			return false // an older sync ended late: the newer one stands
		}
		last := &LastSync{JobID: st.JobID, Status: st.Status, FilesIndexed: st.FilesIndexed, FilesSkipped: st.FilesSkipped,
			FilesFailed: st.FilesFailed, FilesDeleted: st.FilesDeleted, CompletedAt: st.CompletedAt}
		if st.Sweep != nil {
			last.Sweep = st.Sweep.Status
		}
		sc.LastSync = last
		if Synced(st) {
			sc.LastSyncedAt = st.CompletedAt
		}
		return true
	})
}

// update applies change to the record with compare-and-set (a missing
// record — a cleared schedule — is left alone).
func (s *Store) update(ctx context.Context, org, collection string, change func(*Schedule) bool) error {
	for range 10 {
		sc, rev, err := s.Get(ctx, org, collection)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if !change(sc) {
			return nil
		}
		data, err := json.Marshal(sc)
		if err != nil {
			return err
		}
		if _, err := s.kv.Update(ctx, key(org, collection), data, rev); err == nil {
			return nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("schedules: %w", err)
		}
	}
	return fmt.Errorf("schedule %s/%s: too many concurrent updates", org, collection)
}

func (s *Store) put(ctx context.Context, sc *Schedule) error {
	data, err := json.Marshal(sc)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, key(sc.Org, sc.Collection), data); err != nil {
		return fmt.Errorf("schedules: %w", err)
	}
	return nil
}
