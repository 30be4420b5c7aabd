package registry_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema/natstest"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

// The view answers from its watched copy, follows every change without a
// read, reads what it does not hold, and re-reads what the watch has not
// confirmed for maxAge.
func TestViewFollowsTheRegistry(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, _, js := natstest.Start(t)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	r, err := registry.Open(ctx, js, registry.Config{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	org, _, _ := r.CreateOrg(ctx, "test", "Acme")
	in, _ := r.AddIntegration(ctx, "api", org.ID, registry.Spec{RoleARN: "arn:aws:iam::123456789012:role/R"})
	in, _ = r.RecordVerification(ctx, "api", org.ID, in.ID, &registry.Verification{At: now(), OK: true})

	v, err := r.Watch(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		got, err := v.Integration(ctx, org.ID, in.ID)
		if err != nil || got.Status != registry.StatusActive || got.RoleARN != in.RoleARN {
			t.Fatalf("integration from the view: %+v %v", got, err)
		}
		if o, err := v.Org(ctx, org.ID); err != nil || o.ExternalID != org.ExternalID {
			t.Fatalf("org from the view: %+v %v", o, err)
		}
	}
	if n := v.Reads(); n != 0 {
		t.Fatalf("%d registry reads for values the watch delivered", n)
	}
	// A copy: changing what a caller got changes nothing in the view.
	got, _ := v.Integration(ctx, org.ID, in.ID)
	got.Status = "tampered"
	if again, _ := v.Integration(ctx, org.ID, in.ID); again.Status != registry.StatusActive {
		t.Fatal("a caller's change reached the view")
	}

	// Changes arrive through the watch: a revocation, a rotated ExternalId,
	// a disabled org.
	if _, err := r.Revoke(ctx, "api", org.ID, in.ID, "customer left"); err != nil {
		t.Fatal(err)
	}
	rotated, _ := r.RotateExternalID(ctx, "api", org.ID)
	if _, err := r.SetDisabled(ctx, "api", org.ID, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		i, _ := v.Integration(ctx, org.ID, in.ID)
		o, _ := v.Org(ctx, org.ID)
		return i.Status == registry.StatusRevoked && o.ExternalID == rotated.ExternalID && o.DisabledAt != nil
	})
	if n := v.Reads(); n != 0 {
		t.Fatalf("%d registry reads: changes should come through the watch", n)
	}

	// Unknown keys are read (and stay not found); new ones are read once and kept.
	if _, err := v.Org(ctx, "org_missing"); !errors.Is(err, registry.ErrNotFound) || !errors.Is(err, jetstream.ErrKeyNotFound) || strings.Contains(err.Error(), "nats") {
		t.Fatalf("missing org: %v (want \"not found\", both ErrNotFound and the store's error)", err)
	}
	other, _, _ := r.CreateOrg(ctx, "test", "Other")
	if o, err := v.Org(ctx, other.ID); err != nil || o.ID != other.ID {
		t.Fatalf("new org: %+v %v", o, err)
	}

	// Not confirmed for maxAge: read again.
	reads := v.Reads()
	clock.Add(int64(2 * time.Minute))
	if _, err := v.Integration(ctx, org.ID, in.ID); err != nil {
		t.Fatal(err)
	}
	if v.Reads() != reads+1 {
		t.Fatalf("reads %d → %d after maxAge: want one read", reads, v.Reads())
	}
	if _, err := v.Integration(ctx, org.ID, in.ID); err != nil || v.Reads() != reads+1 {
		t.Fatalf("the re-read value was not kept: %v, reads %d", err, v.Reads())
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
