package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
)

// TestCancelledJobPlansNothingAndSkipsItsTasks: a job cancelled while its
// first page and three tasks wait plans nothing more, its unclaimed tasks
// are skipped as "cancelled" without an S3 call, the counters stay exact,
// and the job stays cancelled.
func TestCancelledJobPlansNothingAndSkipsItsTasks(t *testing.T) {
	e := setup(t, map[string]string{"a.txt": "a", "b.txt": "b", "c.txt": "c"})
	ctx := context.Background()
	job := &schema.Job{JobID: "job_cancel", Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Kind: schema.JobBucket, Bucket: bucket,
		Region: "us-east-1", CreatedAt: time.Now()}
	st := schema.NewJobStatus(job)
	now := time.Now().UTC()
	st.Status, st.CompletedAt = schema.JobStatusCancelled, &now
	data, _ := json.Marshal(st)
	kv, _ := e.js.KeyValue(ctx, schema.BucketJobs)
	if _, err := kv.Create(ctx, job.JobID, data); err != nil {
		t.Fatal(err)
	}
	var out []schema.Out
	for _, k := range []string{"a.txt", "b.txt", "c.txt"} {
		task := &schema.Task{Op: schema.OpIndex, JobID: job.JobID, Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Bucket: bucket, Key: k}
		out = append(out, schema.Out{Subject: schema.TaskSubject(e.org.ID, "docs"), MsgID: schema.TaskMsgID(job.JobID, bucket, k, "", ""), Msg: task})
	}
	payload, _ := schema.Encode(job)
	out = append(out, schema.Out{Subject: schema.JobSubject(e.org.ID, "docs"), MsgID: schema.JobPageMsgID(job.JobID, 0), Msg: json.RawMessage(payload)})
	if _, err := schema.PublishAll(ctx, e.js, out); err != nil {
		t.Fatal(err)
	}
	var got schema.JobStatus
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		entry, _ := kv.Get(ctx, job.JobID)
		_ = json.Unmarshal(entry.Value(), &got)
		if got.FilesSkipped == 3 || time.Now().After(deadline) {
			break
		}
	}
	if got.Status != schema.JobStatusCancelled || got.FilesSkipped != 3 || got.FilesIndexed != 0 || got.PagesPlanned != 0 || len(got.Errors) != 0 {
		t.Fatalf("cancelled job %+v", got)
	}
	if n := e.s3.Gets.Load() + e.s3.Lists.Load(); n != 0 {
		t.Fatalf("a cancelled job made %d S3 calls", n)
	}
	dead, _ := e.js.Stream(ctx, schema.StreamDead)
	jobs, _ := e.js.Stream(ctx, schema.StreamJobs)
	di, _ := dead.Info(ctx)
	ji, _ := jobs.Info(ctx)
	if di.State.Msgs != 0 || ji.State.Msgs != 0 {
		t.Fatalf("%d dead letters, %d pages left: the page was not simply acknowledged", di.State.Msgs, ji.State.Msgs)
	}
}
