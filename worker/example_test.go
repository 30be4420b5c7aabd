package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/natstest"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// A worker is built with New and runs until its context ends. Here it takes
// a job whose integration was registered but never verified: it refuses to
// assume the role (the registry, not the message, decides) and the job
// fails with the reason, before any AWS call.
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "stevedore-example")
	defer os.RemoveAll(dir)
	_, _, js, stop, err := natstest.Run(dir) // an in-process nats-server
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()
	if err := (schema.Topology{}).Ensure(ctx, js); err != nil {
		fmt.Println(err)
		return
	}
	reg, _ := registry.Open(ctx, js, registry.Config{})
	org, _, _ := reg.CreateOrg(ctx, "example", "Acme")
	in, _ := reg.AddIntegration(ctx, "example", org.ID, registry.Spec{RoleARN: "arn:aws:iam::123456789012:role/reader"})
	broker, _ := creds.New(creds.Config{STS: sts.NewFromConfig(aws.Config{Region: "us-east-1"})})

	w, err := worker.New(ctx, worker.Config{JS: js, Registry: reg, Broker: broker})
	if err != nil {
		fmt.Println(err)
		return
	}
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(run) }()

	// What the producer does for POST /v2/collections/docs/index/s3.
	job := &schema.Job{JobID: "job_example", Org: org.ID, Collection: "docs", IntegrationID: in.ID, Kind: schema.JobBucket,
		Bucket: "acme-docs", Region: "us-east-1", CreatedAt: time.Now()}
	jobs, _ := js.KeyValue(ctx, schema.BucketJobs)
	status, _ := json.Marshal(schema.NewJobStatus(job))
	_, _ = jobs.Create(ctx, job.JobID, status)
	payload, _ := schema.Encode(job)
	_, _ = js.Publish(ctx, schema.JobSubject(org.ID, "docs"), payload, jetstream.WithMsgID(schema.JobPageMsgID(job.JobID, 0)))

	var st schema.JobStatus
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		e, _ := jobs.Get(ctx, job.JobID)
		_ = json.Unmarshal(e.Value(), &st)
		if st.Final() {
			break
		}
	}
	fmt.Println(st.Status, st.Error.ErrorClass)
	stop()
	fmt.Println("stopped:", <-done)
	// Output:
	// failed tenant_auth
	// stopped: <nil>
}
