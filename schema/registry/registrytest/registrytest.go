// Package registrytest sets up a tenant for tests: an in-process JetStream
// server with the topology, the registry, one organization and one
// integration for RoleARN.
package registrytest

import (
	"context"
	"testing"

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

// Tenant starts a server and registers org "Acme" with an integration for RoleARN.
func Tenant(t testing.TB) *Fixture {
	t.Helper()
	ctx := context.Background()
	_, _, js := natstest.Start(t)
	reg, err := registry.Open(ctx, js, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	org, key, err := reg.CreateOrg(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	in, err := reg.AddIntegration(ctx, org.ID, RoleARN, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Fixture{JS: js, Registry: reg, Org: org, APIKey: key, In: in}
}
