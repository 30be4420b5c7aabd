package jobs

import (
	"context"
	"fmt"

	"github.com/stevedore-dev/stevedore/schema"
)

// Submit starts job: its record and index entry (Create), then its page 0
// (Publish). It is what the API does for a job without an Idempotency-Key
// or quota; the API runs the same two steps with its checks between them.
func (j *Store) Submit(ctx context.Context, job *schema.Job) (*schema.JobStatus, error) {
	st := schema.NewJobStatus(job)
	if err := j.Create(ctx, st); err != nil {
		return nil, err
	}
	if err := j.Publish(ctx, job); err != nil {
		return nil, err
	}
	return st, nil
}

// Publish publishes job's page 0 to JOBS, which also wakes the planners
// (schema.PublishAll). If the publish fails, the job's record and index
// entry are removed, so no job waits for a page that never comes; the
// error says whether JOBS was full (schema.IsBackpressure).
func (j *Store) Publish(ctx context.Context, job *schema.Job) error {
	_, err := schema.PublishAll(ctx, j.js, []schema.Out{{Subject: schema.JobSubject(job.Org, job.Collection), MsgID: schema.JobPageMsgID(job.JobID, 0), Msg: job}})
	if err != nil {
		j.Delete(context.WithoutCancel(ctx), &schema.JobStatus{JobID: job.JobID, Org: job.Org, CreatedAt: job.CreatedAt})
		return fmt.Errorf("publish job: %w", err)
	}
	return nil
}
