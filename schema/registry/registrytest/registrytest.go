// Package registrytest sets up a tenant for tests: an in-process JetStream
// server with the topology, the registry, one organization and one
// integration for RoleARN.
package registrytest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema/natstest"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

// RoleARN is the role of the integration Tenant registers.
const RoleARN = "arn:aws:iam::123456789012:role/reader"

// Fixture is what Tenant creates.
type Fixture struct {
	JS       jetstream.JetStream
	Registry *registry.Registry
	Org      *registry.Org
	APIKey   registry.Secret
	In       *registry.Integration
}

// KEK is the key-encryption key Tenant's registry seals static keys with.
var KEK = []byte("0123456789abcdef0123456789abcdef")

// Tenant starts a server and registers org "Acme" with an active (verified)
// integration for RoleARN.
func Tenant(t testing.TB) *Fixture {
	t.Helper()
	ctx := context.Background()
	_, _, js := natstest.Start(t)
	reg, err := registry.Open(ctx, js, registry.Config{KEK: KEK})
	if err != nil {
		t.Fatal(err)
	}
	org, key, err := reg.CreateOrg(ctx, "test", "Acme")
	if err != nil {
		t.Fatal(err)
	}
	in, err := reg.AddIntegration(ctx, "test", org.ID, registry.Spec{RoleARN: RoleARN})
	if err != nil {
		t.Fatal(err)
	}
	in, err = reg.RecordVerification(ctx, "test", org.ID, in.ID, &registry.Verification{At: time.Now(), OK: true})
	if err != nil {
		t.Fatal(err)
	}
	return &Fixture{JS: js, Registry: reg, Org: org, APIKey: key, In: in}
}

// Registry opens another handle on the registry of js, with KEK.
func Registry(js jetstream.JetStream) *registry.Registry {
	r, err := registry.Open(context.Background(), js, registry.Config{KEK: KEK})
	if err != nil {
		panic(err)
	}
	return r
}
