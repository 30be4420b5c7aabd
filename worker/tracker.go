package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// fold applies one EVENTS message to its job's status in the jobs KV. The
// tracker consumer delivers one event at a time in stream order
// (MaxAckPending 1), and the status records the stream sequence of the last
// event folded, so a redelivered event (crash between the KV update and the
// ack) is recognised and not counted twice. The update is a compare-and-set
// on the KV revision.
func (w *Worker) fold(ctx context.Context, msg jetstream.Msg) error {
	md, err := msg.Metadata()
	if err != nil {
		return permanentf(creds.ClassPermanent, "event metadata: %w", err)
	}
	var jobID string
	var apply func(*schema.JobStatus)
	switch {
	case strings.HasPrefix(msg.Subject(), "events.object."):
		ev, err := schema.DecodeObjectEvent(msg.Data())
		if err != nil {
			return err
		}
		jobID, apply = ev.JobID, func(s *schema.JobStatus) { applyObject(s, ev) }
	case strings.HasPrefix(msg.Subject(), "events.job."):
		ev, err := schema.DecodeJobEvent(msg.Data())
		if err != nil {
			return err
		}
		jobID, apply = ev.JobID, func(s *schema.JobStatus) { applyJob(s, ev) }
	default:
		return nil // not a job event
	}
	if jobID == "" {
		return nil // from an S3 notification: no job to fold into
	}
	for attempt := 0; attempt < 5; attempt++ {
		e, err := w.jobs.Get(ctx, jobID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			w.log.Warn("event for unknown job", "job_id", jobID)
			return nil
		}
		if err != nil {
			return fmt.Errorf("load job: %w", err)
		}
		var s schema.JobStatus
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			return permanentf(creds.ClassPermanent, "job %s status unreadable: %w", jobID, err)
		}
		if s.LastEventSeq >= md.Sequence.Stream {
			return nil // folded before a crash; do not count twice
		}
		apply(&s)
		s.LastEventSeq = md.Sequence.Stream
		now := time.Now().UTC()
		if s.StartedAt == nil {
			s.StartedAt = &now
		}
		if s.Status == schema.JobStatusPending {
			s.Status = schema.JobStatusRunning
		}
		if s.Status == schema.JobStatusRunning && s.Done() {
			s.Status, s.CompletedAt = schema.JobStatusCompleted, &now
		}
		data, err := json.Marshal(&s)
		if err != nil {
			return err
		}
		if _, err := w.jobs.Update(ctx, jobID, data, e.Revision()); err != nil {
			continue // lost a race with another writer (the producer); re-read
		}
		return nil
	}
	return fmt.Errorf("update job %s: too many concurrent updates", jobID)
}

func applyObject(s *schema.JobStatus, ev *schema.ObjectEvent) {
	switch ev.Outcome {
	case schema.OutcomeIndexed:
		s.FilesIndexed++
		s.ChunksProcessed += int64(ev.Chunks)
		s.TokensUsed += ev.Tokens
		s.BytesProcessed += ev.Bytes
	case schema.OutcomeSkipped:
		s.FilesSkipped++
		s.BytesProcessed += ev.Bytes
	case schema.OutcomeFailed:
		s.FilesFailed++
	case schema.OutcomeDeleted:
		return
	}
	if ev.Outcome == schema.OutcomeFailed || (ev.Outcome == schema.OutcomeSkipped && ev.Reason != "already_indexed" && ev.Reason != "unchanged_since_skipped") {
		if len(s.Errors) < schema.MaxJobFileErrors {
			s.Errors = append(s.Errors, schema.FileError{Key: ev.Key, Outcome: ev.Outcome, Reason: ev.Reason, ErrorClass: ev.ErrorClass})
		} else {
			s.ErrorsDropped++
		}
	}
}

func applyJob(s *schema.JobStatus, ev *schema.JobEvent) {
	switch ev.Type {
	case schema.JobPlanned:
		s.PagesPlanned++
		s.FilesTotal += int64(ev.Tasks)
		if ev.Last {
			s.LastPage = ev.Page
		}
	case schema.JobFailed:
		now := time.Now().UTC()
		s.Status, s.CompletedAt = schema.JobStatusFailed, &now
		s.Error = &schema.JobError{Reason: ev.Reason, ErrorClass: ev.ErrorClass, Hint: ev.Hint}
	}
}
