package worker

import (
	"context"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// planStage plans JOBS pages; giving a page up fails its job.
func (w *Worker) planStage() stage {
	return stage{name: "plan", handle: w.plan, giveUp: w.jobFailed, maxDeliver: w.cfg.Topology.MaxDeliver}
}

// plan handles one page of an index job: list up to PageSize keys, publish a
// task per object, a continuation job for the next page, and a "planned"
// event. Every publish has a deterministic ID, so a crash anywhere in here
// followed by redelivery redoes the page without duplicating anything.
func (w *Worker) plan(ctx context.Context, msg jetstream.Msg) error {
	job, err := schema.DecodeJob(msg.Data())
	if err != nil {
		return err
	}
	if w.jobCancelled(ctx, job.JobID) {
		w.log.Info("job cancelled: page not planned", "org", job.Org, "job_id", job.JobID, "page", job.Page)
		return nil
	}
	return w.planPage(ctx, job)
}

// jobFailed is the planner's give-up outcome: the job failed, with why, so
// GET /v2/jobs shows it.
func (w *Worker) jobFailed(data []byte, f *schema.ClassError) []outMsg {
	job, err := schema.DecodeJob(data)
	if err != nil {
		return nil // undecodable: no job to tell
	}
	ev := &schema.JobEvent{EventID: schema.JobFailedEventID(job.JobID), JobID: job.JobID, Org: job.Org, Collection: job.Collection,
		Type: schema.JobFailed, Page: job.Page, Reason: schema.Bound(creds.PublicMessage(f.Err)), ErrorClass: string(f.Class), ErrorCode: f.Code, Hint: f.Hint, At: time.Now().UTC()}
	return []outMsg{{Subject: schema.JobEventSubject(job.Org, job.Collection), MsgID: ev.EventID, Msg: ev}}
}

func (w *Worker) planPage(ctx context.Context, job *schema.Job) error {
	scopeKey := job.Prefix
	if job.Kind == schema.JobFile {
		scopeKey = job.Key
	}
	t, err := w.res.Tenant(ctx, job.Org, job.IntegrationID, job.Bucket, scopeKey)
	if err != nil {
		return err
	}
	t.CredentialRef = job.CredentialRef
	base := schema.Task{Op: schema.OpIndex, JobID: job.JobID, Org: job.Org, Collection: job.Collection, IntegrationID: job.IntegrationID, CredentialRef: job.CredentialRef,
		Bucket: job.Bucket, Region: job.Region, SkipExisting: job.SkipExisting, OverwriteExisting: job.OverwriteExisting, ProcessingType: job.ProcessingType, Encoding: job.Encoding}
	var out []outMsg
	last := true
	switch job.Kind {
	case schema.JobFile:
		task := base
		task.Key, task.ScopePrefix = job.Key, job.Key
		out = append(out, taskMsg(&task))
	default:
		prefix := job.Prefix
		req, err := w.res.Request(t, job.JobID, job.Bucket, prefix)
		if err != nil {
			return err
		}
		maxKeys := w.cfg.PageSize
		if job.MaxFiles > 0 && int32(job.MaxFiles-job.Planned) < maxKeys {
			maxKeys = int32(job.MaxFiles - job.Planned)
		}
		var page *s3.ListObjectsV2Output
		err = w.res.WithS3(ctx, t, req, job.Region, func(c *s3.Client) error {
			in := &s3.ListObjectsV2Input{Bucket: aws.String(job.Bucket), MaxKeys: aws.Int32(maxKeys), ExpectedBucketOwner: t.Owner()}
			if prefix != "" {
				in.Prefix = aws.String(prefix)
			}
			if job.ContinuationToken != "" {
				in.ContinuationToken = aws.String(job.ContinuationToken)
			}
			var err error
			page, err = c.ListObjectsV2(ctx, in)
			w.m.s3("list", err)
			return err
		})
		if err != nil {
			return err
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if strings.HasSuffix(key, "/") && aws.ToInt64(o.Size) == 0 {
				continue // a "directory" marker, not a document
			}
			task := base
			task.Key, task.ScopePrefix, task.ETag, task.Size = key, prefix, aws.ToString(o.ETag), aws.ToInt64(o.Size)
			out = append(out, taskMsg(&task))
		}
		planned := job.Planned + len(out)
		if aws.ToBool(page.IsTruncated) && page.NextContinuationToken != nil && (job.MaxFiles == 0 || planned < job.MaxFiles) {
			last = false
			cont := *job
			cont.ContinuationToken, cont.Page, cont.Planned = *page.NextContinuationToken, job.Page+1, planned
			out = append(out, outMsg{Subject: schema.JobSubject(job.Org, job.Collection), MsgID: schema.JobPageMsgID(job.JobID, cont.Page), Msg: &cont})
		}
	}
	tasks := len(out)
	if !last {
		tasks--
	}
	ev := &schema.JobEvent{EventID: schema.PlannedEventID(job.JobID, job.Page), JobID: job.JobID, Org: job.Org, Collection: job.Collection,
		Type: schema.JobPlanned, Page: job.Page, Tasks: tasks, Last: last, At: time.Now().UTC()}
	out = append(out, outMsg{Subject: schema.JobEventSubject(job.Org, job.Collection), MsgID: ev.EventID, Msg: ev})
	if err := w.publishAll(ctx, out); err != nil {
		return err
	}
	w.log.Info("page planned", "org", job.Org, "collection", job.Collection, "job_id", job.JobID, "page", job.Page, "tasks", tasks, "last", last)
	return nil
}

func taskMsg(t *schema.Task) outMsg {
	return outMsg{Subject: schema.TaskSubject(t.Org, t.Collection), MsgID: schema.TaskMsgID(t.JobID, t.Bucket, t.Key, t.VersionID, t.Sequencer), Msg: t}
}
