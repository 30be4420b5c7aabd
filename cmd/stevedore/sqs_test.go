package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/stevedore-dev/stevedore/producer/sqstest"
	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/schema/registry/registrytest"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
)

// TestCustomerQueueReadThroughRole reads a queue "in the customer's account"
// with credentials the broker assumed for the integration: ExternalId from
// the registry, a session scoped to the queue, session name "<prefix>-<org>-events",
// and a rotated ExternalId stops working at once.
func TestCustomerQueueReadThroughRole(t *testing.T) {
	tf := registrytest.Tenant(t)
	st, _ := awstest.Start(t)
	st.SetRole(awstest.Role{ARN: registrytest.RoleARN, Principal: awstest.Principal, ExternalID: tf.Org.ExternalID, MaxSessionDuration: 12 * time.Hour})
	moto := sqstest.Start(t)
	url := moto.Queue(t, "customer-notifications", 30*time.Second)
	broker, err := creds.New(creds.Config{STS: st.Client()})
	if err != nil {
		t.Fatal(err)
	}
	d := 2 * time.Hour
	f := &sqsFlags{queues: envMulti{values: []string{url + ",integration=" + tf.Org.ID + "/" + tf.In.ID}}, sessionDuration: &d}
	queues, err := f.build(aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(moto.URL)}, tf.Registry,
		func() (*creds.Broker, error) { return broker, nil }, sessionNaming{prefix: "stevedore"})
	if err != nil {
		t.Fatal(err)
	}
	if queues[0].Org != tf.Org.ID {
		t.Fatalf("a customer-account queue is not bound to its org: %+v", queues[0])
	}
	ctx := context.Background()
	if _, err := queues[0].Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 0}); err != nil {
		t.Fatal(err)
	}
	sessions := st.Sessions()
	if len(sessions) != 1 {
		t.Fatalf("%d sessions", len(sessions))
	}
	s := sessions[0]
	var policy map[string]any
	_ = json.Unmarshal([]byte(s.Policy), &policy)
	if !strings.Contains(s.Policy, "arn:aws:sqs:us-east-1:123456789012:customer-notifications") || !strings.Contains(s.Policy, "sqs:ReceiveMessage") ||
		s.Name != "stevedore-"+tf.Org.ID+"-events" || time.Until(s.Expires) < 90*time.Minute {
		t.Fatalf("session %+v", s)
	}
	// A disabled org's queue is not read.
	qc := (&creds.Resolver{Registry: tf.Registry, Broker: broker}).QueueCredentials(tf.Org.ID, tf.In.ID, "arn:aws:sqs:us-east-1:123456789012:customer-notifications", d)
	if _, err := tf.Registry.SetDisabled(ctx, "test", tf.Org.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := qc.Retrieve(ctx); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("a disabled org's queue was read: %v", err)
	}
	if _, err := tf.Registry.SetDisabled(ctx, "test", tf.Org.ID, false); err != nil {
		t.Fatal(err)
	}
	// Rotation: the old ExternalId no longer works, even for a queue reader.
	if _, err := tf.Registry.RotateExternalID(ctx, "test", tf.Org.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := qc.Retrieve(ctx); creds.Classify(err).Class != schema.ClassTenantAuth {
		t.Fatalf("after rotation: %v", err)
	}
	// A revoked integration is not used at all.
	if _, err := tf.Registry.Revoke(ctx, "test", tf.Org.ID, tf.In.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := qc.Retrieve(ctx); err == nil || !strings.Contains(err.Error(), registry.StatusRevoked) {
		t.Fatalf("revoked integration used: %v", err)
	}
}

func TestQueueFlagForms(t *testing.T) {
	d := time.Hour
	f := &sqsFlags{queues: envMulti{values: []string{"http://127.0.0.1:1/123456789012/ours", "http://127.0.0.1:1/123456789012/some,orgs=org_a+org_b"}}, sessionDuration: &d}
	queues, err := f.build(aws.Config{Region: "us-east-1"}, nil, nil, sessionNaming{})
	if err != nil {
		t.Fatal(err)
	}
	if len(queues) != 2 || queues[0].Org != "" || len(queues[0].AllowOrgs) != 0 || strings.Join(queues[1].AllowOrgs, ",") != "org_a,org_b" {
		t.Fatalf("%+v", queues)
	}
	for _, bad := range []string{"http://q,orgs=", "http://q,orgs=a++b", "http://q,integration=nope", "http://q,whatever"} {
		f.queues.values = []string{bad}
		if _, err := f.build(aws.Config{Region: "us-east-1"}, nil, nil, sessionNaming{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
