package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/natstest"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

func setup(t *testing.T) *registry.Registry {
	r, _ := setupJS(t, nil)
	return r
}

func setupJS(t *testing.T, kek []byte) (*registry.Registry, jetstream.JetStream) {
	t.Helper()
	_, _, js := natstest.Start(t)
	r, err := registry.Open(context.Background(), js, registry.Config{KEK: kek})
	if err != nil {
		t.Fatal(err)
	}
	return r, js
}

// audit returns every AUDIT record of org, oldest first.
func audit(t *testing.T, js jetstream.JetStream, org string) []string {
	t.Helper()
	ctx := context.Background()
	c, err := js.OrderedConsumer(ctx, schema.StreamAudit, jetstream.OrderedConsumerConfig{FilterSubjects: []string{schema.AuditSubject(org)}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		batch, err := c.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			out = append(out, string(m.Data()))
			n++
		}
		if n == 0 {
			return out
		}
	}
}

func TestOrgLifecycle(t *testing.T) {
	ctx := context.Background()
	r := setup(t)
	org, key, err := r.CreateOrg(ctx, "test", "Acme")
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
	last := "0"
	if strings.HasSuffix(org.ExternalID, "0") {
		last = "1" // change the last character, whatever it was
	}
	if err := registry.CheckExternalID(org, org.ExternalID[:len(org.ExternalID)-1]+last); !errors.Is(err, registry.ErrExternalIDInvalid) {
		t.Fatalf("mismatch accepted: %v", err)
	}
	other, _, _ := r.CreateOrg(ctx, "test", "Other")
	if other.ExternalID == org.ExternalID || other.ID == org.ID {
		t.Fatal("ids not unique")
	}
}

func TestIntegrations(t *testing.T) {
	ctx := context.Background()
	r := setup(t)
	org, _, _ := r.CreateOrg(ctx, "test", "Acme")
	for _, bad := range []string{"", "arn:aws:iam::12345:role/x", "arn:aws:iam::123456789012:user/x", "arn:aws:s3:::bucket"} {
		if _, err := r.AddIntegration(ctx, "test", org.ID, registry.Spec{RoleARN: bad}); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	in, err := r.AddIntegration(ctx, "test", org.ID, registry.Spec{RoleARN: "arn:aws:iam::123456789012:role/path/Reader"})
	if err != nil {
		t.Fatal(err)
	}
	if in.Account != "123456789012" || in.Status != registry.StatusPending || in.Kind != registry.KindRole {
		t.Fatalf("new integration %+v", in)
	}
	if _, err := r.AddIntegration(ctx, "test", org.ID, registry.Spec{RoleARN: in.RoleARN}); !errors.Is(err, registry.ErrExists) {
		t.Fatalf("same role twice: %v", err)
	}
	if _, err := r.AddIntegration(ctx, "test", "org_missing", registry.Spec{RoleARN: "arn:aws:iam::123456789012:role/x"}); err == nil {
		t.Fatal("integration for unknown org accepted")
	}
	found, err := r.IntegrationByRole(ctx, org.ID, in.RoleARN)
	if err != nil || found.ID != in.ID {
		t.Fatalf("by role: %v %v", found, err)
	}
	other, _, _ := r.CreateOrg(ctx, "test", "Other")
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

func TestRotateExternalID(t *testing.T) {
	ctx := context.Background()
	r, js := setupJS(t, nil)
	org, _, _ := r.CreateOrg(ctx, "test", "Acme")
	rotated, err := r.RotateExternalID(ctx, "cli", org.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.ExternalID == org.ExternalID || !rotated.ExternalIDRotatedAt.After(org.ExternalIDRotatedAt) {
		t.Fatalf("rotation %+v", rotated)
	}
	stored, _ := r.Org(ctx, org.ID)
	if err := registry.CheckExternalID(stored, org.ExternalID); !errors.Is(err, registry.ErrExternalIDInvalid) {
		t.Fatal("old ExternalId still accepted after rotation")
	}
	if err := registry.CheckExternalID(stored, rotated.ExternalID); err != nil {
		t.Fatal(err)
	}
	recs := strings.Join(audit(t, js, org.ID), "\n")
	if !strings.Contains(recs, `"org.rotate_external_id"`) || strings.Contains(recs, org.ExternalID) || strings.Contains(recs, rotated.ExternalID) {
		t.Fatalf("audit: %s", recs)
	}
}

func TestIntegrationLifecycle(t *testing.T) {
	ctx := context.Background()
	r, js := setupJS(t, nil)
	org, _, _ := r.CreateOrg(ctx, "test", "Acme")
	in, _ := r.AddIntegration(ctx, "api", org.ID, registry.Spec{RoleARN: "arn:aws:iam::123456789012:role/R", Buckets: []string{"docs"}, Prefixes: []string{"legal/"}})
	if !in.Allows("docs", "legal/a.txt") || in.Allows("docs", "hr/a.txt") || in.Allows("other", "legal/a.txt") {
		t.Fatal("Allows does not follow buckets and prefixes")
	}
	bad := &registry.Verification{At: time.Now(), Reason: "trust_policy_missing_external_id"}
	if in, _ = r.RecordVerification(ctx, "api", org.ID, in.ID, bad); in.Status != registry.StatusFailed || in.VerifiedAt != nil || in.Verification.OK {
		t.Fatalf("after failed verification: %+v", in)
	}
	if in, _ = r.RecordVerification(ctx, "api", org.ID, in.ID, &registry.Verification{At: time.Now(), OK: true}); in.Status != registry.StatusActive || in.VerifiedAt == nil || !in.Verification.OK {
		t.Fatalf("after verification: %+v", in)
	}
	h := &registry.Health{Class: "tenant_auth", Code: "AccessDenied", Hint: "check the trust policy", Since: time.Now()}
	for i := 0; i < 3; i++ { // only the transition is written and audited
		if err := r.SetHealth(ctx, "worker", org.ID, in.ID, h); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := r.Integration(ctx, org.ID, in.ID); got.Unhealthy == nil || got.Status != registry.StatusActive {
		t.Fatalf("unhealthy not recorded: %+v", got)
	}
	_ = r.SetHealth(ctx, "worker", org.ID, in.ID, nil)
	if in, _ = r.Revoke(ctx, "api", org.ID, in.ID, ""); in.Status != registry.StatusRevoked {
		t.Fatalf("revoke: %+v", in)
	}
	if _, err := r.RecordVerification(ctx, "api", org.ID, in.ID, &registry.Verification{OK: true}); err == nil {
		t.Fatal("a revoked integration was re-activated by verification")
	}
	var actions []string
	for _, rec := range audit(t, js, org.ID) {
		var a schema.AuditRecord
		_ = json.Unmarshal([]byte(rec), &a)
		actions = append(actions, a.Action+":"+a.Outcome)
	}
	want := "apikey.create:ok org.create:ok integration.create:pending integration.verify:failed integration.verify:ok integration.unhealthy:tenant_auth integration.recovered:ok integration.revoke:ok integration.verify:failed"
	if got := strings.Join(actions, " "); got != want {
		t.Fatalf("audit trail\n got %s\nwant %s", got, want)
	}
}

func TestStaticKeysSealed(t *testing.T) {
	ctx := context.Background()
	const keyID, secret = "AKIAEXAMPLEEXAMPLE01", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	plain := setup(t)
	org0, _, _ := plain.CreateOrg(ctx, "test", "NoKEK")
	if _, _, err := plain.StaticKeys(ctx, "api", org0.ID, keyID, secret, nil); !errors.Is(err, registry.ErrNoKEK) {
		t.Fatalf("static keys stored without a KEK: %v", err)
	}
	kek := []byte("0123456789abcdef0123456789abcdef")
	r, js := setupJS(t, kek)
	org, _, _ := r.CreateOrg(ctx, "test", "Acme")
	in, ref, err := r.StaticKeys(ctx, "api", org.ID, keyID, secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, refAgain, _ := r.StaticKeys(ctx, "api", org.ID, keyID, secret, nil)
	if again.ID != in.ID || refAgain != ref || in.Status != registry.StatusActive || in.Kind != registry.KindStaticKeys {
		t.Fatalf("static integration %+v / %+v, refs %s %s", in, again, ref, refAgain)
	}
	got, err := r.StaticSecret(ctx, in, ref)
	if err != nil || got.Reveal() != secret {
		t.Fatalf("open: %v", err)
	}
	// Another secret for the same key ID (a typo, a rotation) gets its own
	// record: what the first reference opens never changes.
	_, refB, err := r.StaticKeys(ctx, "api", org.ID, keyID, "a-wrong-secret-sent-later", nil)
	if err != nil || refB == ref {
		t.Fatalf("second secret: %v, ref %s", err, refB)
	}
	if got, err := r.StaticSecret(ctx, in, ref); err != nil || got.Reveal() != secret {
		t.Fatalf("the first secret was overwritten: %v", err)
	}
	if got, err := r.StaticSecret(ctx, in, refB); err != nil || got.Reveal() != "a-wrong-secret-sent-later" {
		t.Fatalf("second secret: %v", err)
	}
	// Nothing stored in the registry bucket holds the secret in plaintext.
	kv, _ := js.KeyValue(ctx, schema.BucketRegistry)
	keys, _ := kv.ListKeys(ctx)
	for k := range keys.Keys() {
		e, _ := kv.Get(ctx, k)
		if bytes.Contains(e.Value(), []byte(secret)) {
			t.Fatalf("secret in plaintext under %s", k)
		}
	}
	// Another KEK cannot open it; a ciphertext moved to another record does not open.
	other, _ := registry.Open(ctx, js, registry.Config{KEK: []byte("fedcba9876543210fedcba9876543210")})
	if _, err := other.StaticSecret(ctx, in, ref); err == nil {
		t.Fatal("opened with the wrong KEK")
	}
	moved := *in
	moved.AccessKeyID = "AKIAOTHEROTHEROTHER1"
	if _, err := r.StaticSecret(ctx, &moved, ref); err == nil {
		t.Fatal("sealed secret opened for another access key")
	}
	if _, err := registry.Open(ctx, js, registry.Config{KEK: []byte("short")}); err == nil {
		t.Fatal("a short KEK was accepted")
	}
}

// TestLegacyBucketNames: us-east-1 buckets created before 2018 may hold
// capitals and underscores and still send notifications; integrations and
// routes accept exactly the names S3 sends (schema.ValidBucket), and two
// buckets that differ only in "." versus "_" get routes of their own.
func TestLegacyBucketNames(t *testing.T) {
	r := setup(t)
	ctx := context.Background()
	org, _, err := r.CreateOrg(ctx, "test", "Acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"ab", "has space", "a/b", "star*", strings.Repeat("a", 256)} {
		if _, err := r.AddIntegration(ctx, "test", org.ID, registry.Spec{RoleARN: "arn:aws:iam::123456789012:role/bad", Buckets: []string{bad}}); err == nil {
			t.Errorf("integration with bucket %q accepted", bad)
		}
	}
	in, err := r.AddIntegration(ctx, "test", org.ID, registry.Spec{RoleARN: "arn:aws:iam::123456789012:role/legacy", Buckets: []string{"Legacy_Docs.2017", "Legacy_Docs_2017"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RecordVerification(ctx, "test", org.ID, in.ID, &registry.Verification{At: time.Now(), OK: true}); err != nil {
		t.Fatal(err)
	}
	a, err := r.AddRoute(ctx, "test", registry.Route{Org: org.ID, Collection: "docs", Bucket: "Legacy_Docs.2017", IntegrationID: in.ID})
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.AddRoute(ctx, "test", registry.Route{Org: org.ID, Collection: "other", Bucket: "Legacy_Docs_2017", IntegrationID: in.ID})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	table, err := r.WatchRoutes(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := table.Match("Legacy_Docs.2017", "k"); m == nil || m.ID != a.ID {
		t.Fatalf("route for Legacy_Docs.2017: %+v", m)
	}
	if m := table.Match("Legacy_Docs_2017", "k"); m == nil || m.ID != b.ID {
		t.Fatalf("route for Legacy_Docs_2017: %+v", m)
	}
	if err := r.DeleteRoute(ctx, "test", org.ID, a.ID); err != nil {
		t.Fatal(err)
	}
	if routes, _ := r.Routes(ctx); len(routes) != 1 || routes[0].ID != b.ID {
		t.Fatalf("after delete: %+v", routes)
	}
}

// TestBucketRoutedByOneOrgOnly: a bucket routed by one org cannot be routed,
// at any prefix, by another.
func TestBucketRoutedByOneOrgOnly(t *testing.T) {
	r := setup(t)
	ctx := context.Background()
	var orgs []*registry.Org
	for i, name := range []string{"Acme", "Mallory"} {
		org, _, err := r.CreateOrg(ctx, "test", name)
		if err != nil {
			t.Fatal(err)
		}
		in, err := r.AddIntegration(ctx, "test", org.ID, registry.Spec{RoleARN: fmt.Sprintf("arn:aws:iam::12345678901%d:role/reader", i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.RecordVerification(ctx, "test", org.ID, in.ID, &registry.Verification{At: time.Now(), OK: true}); err != nil {
			t.Fatal(err)
		}
		orgs = append(orgs, org)
	}
	if _, err := r.AddRoute(ctx, "test", registry.Route{Org: orgs[0].ID, Collection: "docs", Bucket: "acme-docs", Prefix: "legal/"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddRoute(ctx, "test", registry.Route{Org: orgs[0].ID, Collection: "docs", Bucket: "acme-docs", Prefix: "hr/"}); err != nil {
		t.Fatalf("the same org at another prefix: %v", err)
	}
	for _, prefix := range []string{"legal/", "", "other/"} {
		if _, err := r.AddRoute(ctx, "test", registry.Route{Org: orgs[1].ID, Collection: "docs", Bucket: "acme-docs", Prefix: prefix}); !errors.Is(err, registry.ErrExists) {
			t.Fatalf("another org routed acme-docs/%s: %v", prefix, err)
		}
	}
}

// TestAuditRefusalsBounded: 10,000 refused requests of one kind write a
// bounded number of AUDIT records, the suppressed ones counted in the next
// record; other kinds and other orgs are not affected.
func TestAuditRefusalsBounded(t *testing.T) {
	r, js := setupJS(t, nil)
	ctx := context.Background()
	for range 10_000 {
		r.Audit(ctx, "org_probe", "api", "index.refused", "external_id_mismatch", "role x")
	}
	r.Audit(ctx, "org_other", "api", "index.refused", "external_id_mismatch", "role y")
	r.Audit(ctx, "org_probe", "cli", "integration.revoke", "ok", "int_1")
	s, _ := js.Stream(ctx, schema.StreamAudit)
	info, _ := s.Info(ctx, jetstream.WithSubjectFilter("audit.>"))
	probe := info.State.Subjects[schema.AuditSubject("org_probe")]
	if probe > registry.AuditRefusalBurst+5 || info.State.Subjects[schema.AuditSubject("org_other")] != 1 {
		t.Fatalf("AUDIT after 10,000 refusals: %v", info.State.Subjects)
	}
	t.Logf("AUDIT after 10,000 refused requests of one org: %d records, %d bytes", probe, info.State.Bytes)
}

// TestIntegrationLimits: integrations per org, buckets and prefixes per
// integration and a prefix's length are capped (ErrLimit; the API answers
// 422). Before, 40 integrations with long prefix lists took 38 MiB in every
// worker's registry view.
func TestIntegrationLimits(t *testing.T) {
	r := setup(t)
	ctx := context.Background()
	org, _, _ := r.CreateOrg(ctx, "test", "Acme")
	role := func(i int) string { return fmt.Sprintf("arn:aws:iam::123456789012:role/reader-%d", i) }
	many := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	for _, spec := range []registry.Spec{
		{RoleARN: role(0), Buckets: many(registry.MaxBucketsPerIntegration+1, func(i int) string { return fmt.Sprintf("bucket-%d", i) })},
		{RoleARN: role(0), Prefixes: many(registry.MaxPrefixesPerIntegration+1, func(i int) string { return fmt.Sprintf("p%d/", i) })},
		{RoleARN: role(0), Prefixes: []string{strings.Repeat("p", registry.MaxPrefixBytes+1)}},
	} {
		if _, err := r.AddIntegration(ctx, "test", org.ID, spec); !errors.Is(err, registry.ErrLimit) {
			t.Fatalf("buckets %d, prefixes %d: %v", len(spec.Buckets), len(spec.Prefixes), err)
		}
	}
	for i := 0; i < registry.MaxIntegrationsPerOrg; i++ {
		if _, err := r.AddIntegration(ctx, "test", org.ID, registry.Spec{RoleARN: role(i)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := r.AddIntegration(ctx, "test", org.ID, registry.Spec{RoleARN: role(999)})
	if !errors.Is(err, registry.ErrLimit) {
		t.Fatalf("integration %d: %v", registry.MaxIntegrationsPerOrg+1, err)
	}
	t.Logf("integration %d: %v", registry.MaxIntegrationsPerOrg+1, err)
	// A revoked one makes room.
	all, _ := r.Integrations(ctx, org.ID)
	if _, err := r.Revoke(ctx, "test", org.ID, all[0].ID, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddIntegration(ctx, "test", org.ID, registry.Spec{RoleARN: role(999)}); err != nil {
		t.Fatal(err)
	}
}

// TestAuditDetailsBoundedAndPerOrg: a refused request's raw tenant text (a
// role ARN of 1 MiB) went into AUDIT whole, and AUDIT dropped the oldest
// records of every org once full. Details are at most 256 bytes of valid
// text now, and each org's subject keeps its own records: one org writing
// past its share evicts only its own.
func TestAuditDetailsBoundedAndPerOrg(t *testing.T) {
	r, js := setupJS(t, nil)
	ctx := context.Background()
	org, _, _ := r.CreateOrg(ctx, "test", "Acme")
	_, err := r.AddIntegration(ctx, "test", org.ID, registry.Spec{RoleARN: "arn:aws:iam::123456789012:role/" + strings.Repeat("\x00x", 512<<10)})
	if err == nil {
		t.Fatal("a 1 MiB role ARN was accepted")
	}
	recs := audit(t, js, org.ID)
	last := recs[len(recs)-1]
	var rec schema.AuditRecord
	if err := json.Unmarshal([]byte(last), &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Detail) > schema.MaxReasonBytes || strings.ContainsRune(rec.Detail, 0) || len(last) > 2048 {
		t.Fatalf("audit record of %d bytes, detail %q", len(last), rec.Detail)
	}
	t.Logf("refused 1 MiB role ARN: audit record of %d bytes: %s", len(last), rec.Detail)

	// The per-org share: the stream keeps at most AuditPerOrg records of a
	// subject. Shown with a small share on a topology of its own.
	topo := schema.Topology{AuditPerOrg: 50, Update: true}
	if err := topo.Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	r.Audit(ctx, "org_quiet", "cli", "integration.revoke", "ok", "int_1")
	for i := 0; i < 500; i++ {
		r.Audit(ctx, "org_noisy", "cli", "integration.create", "pending", fmt.Sprintf("int_%d", i))
	}
	s, _ := js.Stream(ctx, schema.StreamAudit)
	info, _ := s.Info(ctx, jetstream.WithSubjectFilter("audit.>"))
	if info.State.Subjects[schema.AuditSubject("org_noisy")] != 50 || info.State.Subjects[schema.AuditSubject("org_quiet")] != 1 {
		t.Fatalf("AUDIT subjects after 500 records of one org: %v", info.State.Subjects)
	}
}
