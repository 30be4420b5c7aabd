// Package tick is the handler of schedule ticks: each tick the server
// publishes from a collection's schedule (schema/schedules) starts one sync
// job, whose ID is the tick's — so a tick redelivered, or delivered again to
// a consumer made anew, starts nothing more.
package tick

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/schedules"
	"github.com/stevedore-dev/stevedore/worker/meter"
)

// Handler starts a sync per tick; it is a runner.Handler.
type Handler struct {
	jobs      *jobs.Store
	schedules *schedules.Store
	m         *meter.Metrics
	log       *slog.Logger
}

// New returns a Handler (log nil: discard).
func New(j *jobs.Store, s *schedules.Store, m *meter.Metrics, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{jobs: j, schedules: s, m: m, log: log}
}

// Name is the stage label of the handler's metrics and logs.
func (h *Handler) Name() string { return "tick" }

// JobID is the ID of the sync a tick starts: one per tick, whoever
// handles it and however often. A tick is named by the time of the tick
// after it (Nats-Schedule-Next, which the server derives from the
// schedule, not from when it fired), so a tick fired twice around a leader
// change is one sync too; by its stream sequence when it has none.
func JobID(org, collection, tick string) string {
	sum := sha256.Sum256([]byte(org + "\x00" + collection + "\x00" + tick))
	return "sync_" + hex.EncodeToString(sum[:12])
}

// Name names a tick (see JobID), at stream sequence seq, and gives the next
// tick's time (nil: not known).
func Name(msg jetstream.Msg, seq uint64) (string, *time.Time) {
	next := msg.Headers().Get("Nats-Schedule-Next")
	t, err := time.Parse(time.RFC3339Nano, next)
	if err != nil {
		return "seq:" + strconv.FormatUint(seq, 10), nil
	}
	return "next:" + t.UTC().Format(time.RFC3339Nano), &t
}

// Handle starts the sync of one tick. The schedule's record is read for
// what to sync (a tick of a schedule cleared since starts nothing). The
// previous sync's end is recorded first if the tracker could not (see
// schedules.Store.Finished).
func (h *Handler) Handle(ctx context.Context, msg jetstream.Msg) error {
	org, collection, ok := schema.OrgOfTickSubject(msg.Subject())
	if !ok {
		return schema.Errorf(schema.ClassPermanent, "tick on %q: not a tick subject", msg.Subject())
	}
	md, err := msg.Metadata()
	if err != nil {
		return schema.Errorf(schema.ClassPermanent, "tick metadata: %w", err)
	}
	sc, _, err := h.schedules.Get(ctx, org, collection)
	if errors.Is(err, schedules.ErrNotFound) {
		h.m.Ticks.WithLabelValues("cleared").Inc()
		h.log.Info("tick of a cleared schedule: no sync", "org", org, "collection", collection)
		return nil
	}
	if err != nil {
		return err
	}
	name, next := Name(msg, md.Sequence.Stream)
	id := JobID(org, collection, name)
	if running := h.recordLast(ctx, sc); running && sc.LastJobID != id {
		h.m.Ticks.WithLabelValues("overlap").Inc()
		h.log.Info("tick while the last scheduled sync runs: no second sync", "org", org, "collection", collection, "running", sc.LastJobID)
		return nil
	}
	job := *sc.Job
	job.V, job.JobID, job.Org, job.Collection, job.Schedule, job.Tick = schema.Version, id, org, collection, collection, name
	job.Page, job.Planned, job.ContinuationToken, job.CreatedAt = 0, 0, "", md.Timestamp.UTC()
	created, err := h.start(ctx, &job)
	if err != nil {
		return err
	}
	if err := h.schedules.Ticked(ctx, org, collection, job.JobID, md.Timestamp, next); err != nil {
		return err
	}
	if !created {
		h.m.Ticks.WithLabelValues("duplicate").Inc()
		return nil
	}
	h.m.Ticks.WithLabelValues("started").Inc()
	h.log.Info("scheduled sync started", "org", org, "collection", collection, "job_id", job.JobID, "next", next)
	return nil
}

// start creates the job's record and publishes its page 0, unless the
// record exists already and is past page 0 (this tick was handled). It
// reports whether it created the record.
func (h *Handler) start(ctx context.Context, job *schema.Job) (created bool, err error) {
	err = h.jobs.Create(ctx, schema.NewJobStatus(job))
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		st, _, gerr := h.jobs.Get(ctx, job.Org, job.JobID)
		if gerr != nil {
			return false, gerr
		}
		if st.Status != schema.JobStatusPending || st.PagesPlanned > 0 {
			return false, nil
		}
		// Created, page 0 perhaps not published: publish it (a duplicate is
		// dropped by its ID).
	case err != nil:
		return false, fmt.Errorf("start the scheduled sync: %w", err)
	default:
		created = true
	}
	return created, h.jobs.Publish(ctx, job)
}

// recordLast looks at the schedule's last sync: it reports whether it is
// still running (a tick then starts no second sync of the same scope), and
// records its end if the schedule does not have it (the tracker's update
// failed).
func (h *Handler) recordLast(ctx context.Context, sc *schedules.Schedule) (running bool) {
	if sc.LastJobID == "" || (sc.LastSync != nil && sc.LastSync.JobID == sc.LastJobID) {
		return false
	}
	st, _, err := h.jobs.Get(ctx, sc.Org, sc.LastJobID)
	if err != nil {
		return false // gone (deleted): nothing runs
	}
	if !st.Final() {
		return true
	}
	if err := h.schedules.Finished(ctx, st); err != nil {
		h.log.Warn("could not record the last scheduled sync", "org", sc.Org, "collection", sc.Collection, "job_id", st.JobID, "error", err)
	}
	return false
}

// GiveUp: a tick that could not start its sync is dropped (the next tick
// starts one); the dead letter says why.
func (h *Handler) GiveUp([]byte, *schema.ClassError) ([]schema.Out, error) { return nil, nil }
