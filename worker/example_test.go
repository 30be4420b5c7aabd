package worker_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/jobs"
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

	// What the API does for POST /v2/collections/docs/index/s3: the job's
	// record and list entry, its page 0, and a wake signal for planners.
	store, _ := jobs.Open(ctx, js, nil)
	job := &schema.Job{JobID: "job_example", Org: org.ID, Collection: "docs", IntegrationID: in.ID, Kind: schema.JobBucket,
		Bucket: "acme-docs", Region: "us-east-1", CreatedAt: time.Now()}
	if _, err := store.Submit(ctx, job); err != nil {
		fmt.Println(err)
		return
	}

	w, err := worker.New(ctx, worker.Config{JS: js, Registry: reg, Broker: broker})
	if err != nil {
		fmt.Println(err)
		return
	}
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(run) }()

	var st *schema.JobStatus
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st, _, _ = store.Get(ctx, org.ID, job.JobID); st != nil && st.Final() {
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
