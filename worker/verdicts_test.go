package worker

import (
	"context"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema/natstest"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// The fleet's verdicts round-trip through the KV bucket.
func TestVerdictsOnKV(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx := context.Background()
	v, err := NewVerdicts(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.Load(ctx, "role_x"); got != nil || err != nil {
		t.Fatalf("empty bucket: %v %v", got, err)
	}
	until := time.Now().Add(time.Minute).UTC().Truncate(time.Second)
	if err := v.Store(ctx, "role_x", creds.Verdict{Code: "AccessDenied", Message: "not authorized", Failures: 2, Until: until}); err != nil {
		t.Fatal(err)
	}
	got, err := v.Load(ctx, "role_x")
	if err != nil || got == nil || got.Code != "AccessDenied" || got.Failures != 2 || !got.Until.Equal(until) {
		t.Fatalf("stored verdict: %+v %v", got, err)
	}
	if err := v.Clear(ctx, "role_x"); err != nil {
		t.Fatal(err)
	}
	if got, _ := v.Load(ctx, "role_x"); got != nil {
		t.Fatalf("cleared verdict still there: %+v", got)
	}
	if err := v.Clear(ctx, "role_never"); err != nil {
		t.Fatalf("clearing nothing: %v", err)
	}
}
