// Package handlertest sets up what a handler's tests need without a worker:
// a verified tenant whose role reads one bucket of an S3 fake (awstest), the
// resolver and job records a handler is given, and a message as the runner
// hands it over.
package handlertest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/registry/registrytest"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
)

// Bucket is the bucket the tenant's role may read.
const Bucket = "acme-docs"

// Env is a tenant (in-process nats-server, registry, org, integration), its
// S3, and a resolver and job records on them.
type Env struct {
	*registrytest.Fixture
	S3          *awstest.S3
	Resolver    *creds.Resolver
	Jobs        *jobs.Store
	Collections *collections.Store
}

// Start sets up an Env.
func Start(t testing.TB) *Env {
	t.Helper()
	tf := registrytest.Tenant(t)
	sts, s3 := awstest.Start(t)
	sts.SetRole(awstest.Role{ARN: registrytest.RoleARN, Principal: awstest.Principal, ExternalID: tf.Org.ExternalID, Buckets: []string{Bucket}})
	broker, err := creds.New(creds.Config{STS: sts.Client()})
	if err != nil {
		t.Fatal(err)
	}
	store, err := jobs.Open(context.Background(), tf.JS, nil)
	if err != nil {
		t.Fatal(err)
	}
	colls, err := collections.Open(context.Background(), tf.JS, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Fixture: tf, S3: s3, Jobs: store, Collections: colls, Resolver: &creds.Resolver{Registry: tf.Registry, Broker: broker, AWS: s3.Config(), S3PathStyle: true}}
}

// Msg is a claimed message with data as its payload; its other methods
// are not for handlers to call (they panic).
type Msg struct {
	jetstream.Msg
	Body []byte
	// Delivered is the delivery count Metadata reports (0 is 1: the first).
	Delivered uint64
}

func (m Msg) Data() []byte         { return m.Body }
func (m Msg) Subject() string      { return "test" }
func (m Msg) Headers() nats.Header { return nil }

// Metadata reports the delivery count, and nothing else.
func (m Msg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: max(m.Delivered, 1)}, nil
}
