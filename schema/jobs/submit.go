package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

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

// SubmitSweeper starts a job the sweepers run (an erase or a retry): its
// record, then its message on the org's sweeps subject with ID msgID. Both
// steps are idempotent (a record that exists is kept, the message ID is
// deterministic), so a start interrupted midway is completed by the next.
func (j *Store) SubmitSweeper(ctx context.Context, job *schema.Job, msgID string) (*schema.JobStatus, error) {
	if err := job.Validate(); err != nil {
		return nil, err
	}
	st := schema.NewJobStatus(job)
	if err := j.Create(ctx, st); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("create the %s job: %w", job.Kind, err)
	}
	out := schema.Out{Subject: schema.SweepSubject(job.Org, job.Collection), MsgID: msgID, Msg: job}
	if _, err := schema.PublishAll(ctx, j.js, []schema.Out{out}); err != nil {
		return nil, fmt.Errorf("publish the %s job: %w", job.Kind, err)
	}
	return st, nil
}

// Retry starts a retry of job prev (final, an index job): a new job that
// re-runs only the objects prev failed on or timed out extracting, read
// the same way (integration, credentials, processing type, tokenizer,
// custom metadata).
func (j *Store) Retry(ctx context.Context, prev *schema.JobStatus, jobID string) (*schema.JobStatus, error) {
	job := &schema.Job{JobID: jobID, Org: prev.Org, Collection: prev.Collection, IntegrationID: prev.IntegrationID, CredentialRef: prev.CredentialRef,
		Kind: schema.JobRetry, Bucket: prev.Bucket, Region: prev.Region, Prefix: prev.Prefix, Key: prev.Key, ReadSettings: prev.ReadSettings,
		CustomMetadata: prev.CustomMetadata, RetryOf: prev.JobID, CreatedAt: j.now().UTC()}
	return j.SubmitSweeper(ctx, job, schema.RetryMsgID(jobID, 0))
}

// NewID is a new random job ID.
func NewID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return "job_" + hex.EncodeToString(b)
}
