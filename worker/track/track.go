// Package track is the handler of EVENTS: it folds per-object outcomes and
// job lifecycle events into job records (schema/jobs.Folder). The runner
// gives it one batch at a time, in stream order (runner.Ordered), from a
// consumer one worker of the fleet pulls at a time; a batch is
// acknowledged as a whole.
package track

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/schedules"
	"github.com/stevedore-dev/stevedore/worker/meter"
)

// Handler folds batches of EVENTS into job records; it is a
// runner.BatchHandler. Its consumer retries forever (MaxDeliver -1), so only
// an undecodable event is given up on (copied to DEAD).
type Handler struct {
	folder    *jobs.Folder
	schedules *schedules.Store
	m         *meter.Metrics
	log       *slog.Logger
}

// New returns a Handler folding into store's records; a scheduled sync's
// end is recorded on its schedule in sched.
func New(store *jobs.Store, sched *schedules.Store, m *meter.Metrics, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{folder: store.Folder(log), schedules: sched, m: m, log: log}
}

// Name is the stage label of the handler's metrics and logs.
func (h *Handler) Name() string { return "track" }

// concurrency is how many job records a batch folds at once.
const concurrency = 64

// HandleBatch folds msgs (in stream order) into their jobs. Jobs are
// separate records: they are folded side by side, so a batch of thousands
// of small jobs' events costs a few round trips, not two per job in a row.
// If one fails the whole batch is handed back; the jobs already folded
// skip those events next time (each records the last sequence folded).
func (h *Handler) HandleBatch(ctx context.Context, msgs []jetstream.Msg, giveUp func(jetstream.Msg, error) error) error {
	byJob := map[string][]jobs.Event{}
	var order []string
	for _, m := range msgs {
		jobID, ev, err := decode(m)
		if err != nil {
			// Unreadable: copied to DEAD, the rest folded; or, if that
			// cannot be done, the whole batch is handed back.
			if gerr := giveUp(m, err); gerr != nil {
				return fmt.Errorf("dead-letter an unreadable event: %w", gerr)
			}
			continue
		}
		if jobID == "" {
			continue // from an S3 notification: no job to fold into
		}
		if _, ok := byJob[jobID]; !ok {
			order = append(order, jobID)
		}
		byJob[jobID] = append(byJob[jobID], ev)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, jobID := range order {
		g.Go(func() error {
			st, err := h.folder.Fold(gctx, jobID, byJob[jobID])
			if st != nil {
				h.finished(gctx, st)
			}
			return err
		})
	}
	return g.Wait()
}

// finished counts a job that reached its final status and records a
// scheduled sync's end on its schedule. That record is not retried with
// the batch (the fold is done): a failure is logged and counted, and the
// schedule's next tick records it (worker/tick).
func (h *Handler) finished(ctx context.Context, st *schema.JobStatus) {
	h.m.JobsFinished.WithLabelValues(st.Status).Inc()
	h.m.JobDuration.WithLabelValues(st.Status).Observe(time.Since(st.CreatedAt).Seconds())
	if st.Schedule == "" || h.schedules == nil {
		return
	}
	if err := h.schedules.Finished(ctx, st); err != nil {
		h.m.ScheduleUpdatesFailed.Inc()
		h.log.Warn("could not record a scheduled sync's end; the next tick will", "org", st.Org, "collection", st.Collection, "job_id", st.JobID, "error", err)
	}
}

// decode is one EVENTS message's job and event.
func decode(msg jetstream.Msg) (string, jobs.Event, error) {
	md, err := msg.Metadata()
	if err != nil {
		return "", jobs.Event{}, schema.Errorf(schema.ClassPermanent, "event metadata: %w", err) // never readable: dead-letter it, fold the rest
	}
	jobID, ev, err := schema.DecodeEvent(msg.Subject(), msg.Data())
	if err != nil {
		return "", jobs.Event{}, err
	}
	return jobID, jobs.Event{Seq: md.Sequence.Stream, Event: ev}, nil
}
