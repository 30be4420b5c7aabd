package sweep

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/handlertest"
)

// A retry queues exactly what its job failed on or timed out extracting —
// a task and a queued event each — then ends its planning; run again
// after one of them was retried, it queues only the other.
func TestRetryQueuesOnlyWhatFailed(t *testing.T) {
	x := newSweeper(t, 0.5)
	put := func(key string, status schema.ObjectStatus, job, reason string) {
		st := schema.ObjectState{Bucket: bucket, Key: key, ETag: `"e"`, Status: status, Reason: reason, JobID: job, ExtractorVersion: "v1", UpdatedAt: time.Now()}
		data, _ := json.Marshal(&st)
		if _, err := x.objects.Put(context.Background(), schema.ObjectKey(x.job.Org, x.job.Collection, bucket, key), data); err != nil {
			t.Fatal(err)
		}
	}
	put("failed.txt", schema.ObjectFailed, "job_orig", "GetObject: AccessDenied")
	put("slow.pdf", schema.ObjectSkipped, "job_orig", "extract_timeout: over 60s")
	put("image.png", schema.ObjectSkipped, "job_orig", "unsupported_type: image/png")
	put("fine.txt", schema.ObjectIndexed, "job_orig", "")
	put("other.txt", schema.ObjectFailed, "job_other", "GetObject: AccessDenied")
	job := schema.Job{JobID: "job_retry", Org: x.job.Org, Collection: x.job.Collection, IntegrationID: x.job.IntegrationID, Kind: schema.JobDirectory,
		Bucket: bucket, Region: "us-east-1", RetryOf: "job_orig", ReadSettings: schema.ReadSettings{ProcessingType: schema.ProcessingAdvanced}}
	job.Kind = schema.JobRetry
	run := func() (tasks []string, queued int, ended bool) {
		x.out = nil
		data, _ := schema.Encode(&job)
		if err := x.h.Handle(context.Background(), handlertest.Msg{Body: data}); err != nil {
			t.Fatal(err)
		}
		for _, o := range x.out {
			switch m := o.Msg.(type) {
			case *schema.Task:
				if m.JobID != "job_retry" || !m.OverwriteExisting || m.ProcessingType != schema.ProcessingAdvanced {
					t.Fatalf("task %+v", m)
				}
				tasks = append(tasks, m.Key)
			case *schema.JobEvent:
				if m.Type == schema.JobQueued {
					queued++
				} else if m.Type == schema.JobPlanned && m.Last {
					ended = true
				}
			}
		}
		slices.Sort(tasks)
		return tasks, queued, ended
	}
	tasks, queued, ended := run()
	if strings.Join(tasks, ",") != "failed.txt,slow.pdf" || queued != 2 || !ended {
		t.Fatalf("tasks %v, %d queued, ended %v", tasks, queued, ended)
	}
	put("slow.pdf", schema.ObjectIndexed, "job_retry", "") // retried meanwhile
	if tasks, queued, _ := run(); strings.Join(tasks, ",") != "failed.txt" || queued != 1 {
		t.Fatalf("again: tasks %v, %d queued", tasks, queued)
	}
}
