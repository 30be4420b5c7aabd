package sweep

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/worker/extract"
)

// A retry job (schema.JobRetry) re-runs what its job (RetryOf) failed on,
// and what timed out being extracted (skipped extract_timeout): those
// objects' states still name that job, and only those are touched. It is
// planned from the collection's object states in one pass: per object an
// index task and a "queued" event (which counts it in the job's total),
// both with IDs derived from the retry job and the document, then the job's
// last "planned" event. A retried task saves its object's state under the
// retry job, so a pass redelivered after a crash queues only what was not
// retried yet, and what it queues again is dropped as a duplicate.

// retryBatch is how many objects' messages a retry publishes at once.
const retryBatch = 256

// retries reports whether st is one of what a retry of job orig re-runs.
func retries(st *schema.ObjectState, orig string) bool {
	return st.JobID == orig && (st.Status == schema.ObjectFailed ||
		(st.Status == schema.ObjectSkipped && strings.HasPrefix(st.Reason, extract.ReasonTimeout)))
}

// retry plans a retry job.
func (h *Handler) retry(ctx context.Context, job *schema.Job) error {
	var out []schema.Out
	queued := 0
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		err := h.cfg.Publish(ctx, out)
		out = out[:0]
		return err
	}
	err := collections.Each(ctx, h.cfg.JS, job.Org, job.Collection, func(_ jetstream.KeyValueEntry, st *schema.ObjectState) error {
		if !retries(st, job.RetryOf) {
			return nil
		}
		queued++
		out = append(out, retryMsgs(job, st)...)
		if len(out) >= 2*retryBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("retry: %w", err)
	}
	ev := &schema.JobEvent{EventID: schema.PlannedEventID(job.JobID, 0), JobID: job.JobID, Org: job.Org, Collection: job.Collection,
		Type: schema.JobPlanned, Page: 0, Last: true, At: time.Now().UTC()}
	if err := h.cfg.Publish(ctx, []schema.Out{{Subject: schema.JobEventSubject(job.Org, job.Collection), MsgID: ev.EventID, Msg: ev}}); err != nil {
		return err
	}
	h.log.Info("retry planned", "org", job.Org, "collection", job.Collection, "job_id", job.JobID, "retry_of", job.RetryOf, "queued_this_run", queued)
	return nil
}

// retryMsgs are the index task of st's object for retry job job, and the
// event that queues it.
func retryMsgs(job *schema.Job, st *schema.ObjectState) []schema.Out {
	scope := job.Prefix
	if job.Key != "" {
		scope = job.Key
	}
	task := &schema.Task{Op: schema.OpIndex, JobID: job.JobID, Org: job.Org, Collection: job.Collection, IntegrationID: job.IntegrationID,
		CredentialRef: job.CredentialRef, Bucket: st.Bucket, Region: job.Region, Key: st.Key, ScopePrefix: scope, OverwriteExisting: true,
		ReadSettings: job.ReadSettings}
	doc := schema.DocumentID(st.Bucket, st.Key)
	ev := &schema.JobEvent{EventID: schema.QueuedEventID(job.JobID, doc), JobID: job.JobID, Org: job.Org, Collection: job.Collection,
		Type: schema.JobQueued, Tasks: 1, At: time.Now().UTC()}
	return []schema.Out{
		{Subject: schema.TaskSubject(job.Org, job.Collection), MsgID: schema.TaskMsgID(job.JobID, st.Bucket, st.Key, "", "retry"), Msg: task},
		{Subject: schema.JobEventSubject(job.Org, job.Collection), MsgID: ev.EventID, Msg: ev},
	}
}
