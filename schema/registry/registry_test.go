package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/stevedore-dev/stevedore/schema/natstest"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

func setup(t *testing.T) *registry.Registry {
	t.Helper()
	_, _, js := natstest.Start(t)
	r, err := registry.Open(context.Background(), js, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestOrgLifecycle(t *testing.T) {
	ctx := context.Background()
	r := setup(t)
	org, key, err := r.CreateOrg(ctx, "Acme")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^cap_org_[0-9a-f]{24}$`).MatchString(org.ExternalID) {
		t.Fatalf("external id %q has the wrong shape", org.ExternalID)
	}
	for _, h := range org.APIKeyHashes {
		if strings.Contains(h, key.Reveal()) {
			t.Fatal("api key stored in plaintext")
		}
	}
	got, err := r.Authenticate(ctx, key.Reveal())
	if err != nil || got.ID != org.ID {
		t.Fatalf("authenticate: %v %v", got, err)
	}
	if _, err := r.Authenticate(ctx, key.Reveal()+"x"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("wrong key: %v", err)
	}
	if err := registry.CheckExternalID(org, org.ExternalID); err != nil {
		t.Fatal(err)
	}
	if err := registry.CheckExternalID(org, org.ExternalID[:len(org.ExternalID)-1]+"0"); !errors.Is(err, registry.ErrExternalIDInvalid) {
		t.Fatalf("mismatch accepted: %v", err)
	}
	other, _, _ := r.CreateOrg(ctx, "Other")
	if other.ExternalID == org.ExternalID || other.ID == org.ID {
		t.Fatal("ids not unique")
	}
}

func TestIntegrations(t *testing.T) {
	ctx := context.Background()
	r := setup(t)
	org, _, _ := r.CreateOrg(ctx, "Acme")
	for _, bad := range []string{"", "arn:aws:iam::12345:role/x", "arn:aws:iam::123456789012:user/x", "arn:aws:s3:::bucket"} {
		if _, err := r.AddIntegration(ctx, org.ID, bad, nil); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	in, err := r.AddIntegration(ctx, org.ID, "arn:aws:iam::123456789012:role/path/Reader", nil)
	if err != nil {
		t.Fatal(err)
	}
	if in.Account != "123456789012" {
		t.Fatalf("account %q", in.Account)
	}
	if _, err := r.AddIntegration(ctx, "org_missing", "arn:aws:iam::123456789012:role/x", nil); err == nil {
		t.Fatal("integration for unknown org accepted")
	}
	found, err := r.IntegrationByRole(ctx, org.ID, in.RoleARN)
	if err != nil || found.ID != in.ID {
		t.Fatalf("by role: %v %v", found, err)
	}
	other, _, _ := r.CreateOrg(ctx, "Other")
	if _, err := r.IntegrationByRole(ctx, other.ID, in.RoleARN); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("integration visible to another org: %v", err)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := registry.Secret("stv_supersecret")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "key", s)
	out := buf.String() + fmt.Sprintf("%v %s %+v %#v", s, s, s, s)
	if strings.Contains(out, "supersecret") {
		t.Fatalf("secret leaked: %s", out)
	}
}
