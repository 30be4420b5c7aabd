package producer

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/schema/registry/registrytest"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
)

const principal = awstest.Principal

func TestOnboardingVerifyRevoke(t *testing.T) {
	tf := registrytest.Tenant(t)
	st, s3 := awstest.Start(t)
	s3.Put("acme-docs", "first.txt", "hello")
	verifier := &creds.Verifier{STS: st.Client(), AWS: s3.Config(), S3PathStyle: true}
	api, err := New(context.Background(), Config{JS: tf.JS, Registry: tf.Registry, PrincipalARN: principal, Verifier: verifier})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{api: api, js: tf.JS, org: tf.Org, key: tf.APIKey.Reveal()}
	const roleARN = "arn:aws:iam::" + awstest.Account + ":role/stevedore-reader"
	index := func() (int, map[string]any) {
		return f.do(t, "POST", "/v2/collections/docs/index/s3", strings.Replace(f.body(""), registrytest.RoleARN, roleARN, 1), nil)
	}
	logBody := func(what string, status int, out map[string]any) {
		b, _ := json.Marshal(out)
		t.Logf("%s → %d %s", what, status, b)
	}

	// Register: pending, with the documents to paste.
	status, out := f.do(t, "POST", "/v2/integrations/aws", `{"role_arn":"`+roleARN+`","buckets":["acme-docs"],"kms_key_arn":"arn:aws:kms:us-east-1:123456789012:key/k1"}`, nil)
	if status != 201 {
		t.Fatalf("create: %d %v", status, out)
	}
	in := out["integration"].(map[string]any)
	id := in["id"].(string)
	trust, _ := json.Marshal(out["trust_policy"])
	perms, _ := json.Marshal(out["permissions_policy"])
	if in["status"] != registry.StatusPending || !strings.Contains(string(trust), principal) || !strings.Contains(string(trust), f.org.ExternalID) ||
		!strings.Contains(string(perms), "arn:aws:s3:::acme-docs/*") || !strings.Contains(string(perms), "kms:Decrypt") || out["cloudformation_template"] == nil {
		t.Fatalf("create response %v", out)
	}
	if status, out := f.do(t, "POST", "/v2/integrations/aws", `{"role_arn":"`+roleARN+`"}`, nil); status != 409 || errCode(out) != "integration_exists" {
		t.Fatalf("duplicate: %d %v", status, out)
	}
	if status, out := f.do(t, "POST", "/v2/integrations/aws", `{"role_arn":"arn:aws:iam::1:role/x"}`, nil); status != 400 {
		t.Fatalf("bad arn: %d %v", status, out)
	}
	status, out = index()
	logBody("index with a pending integration", status, out)
	if status != 403 || errCode(out) != "integration_not_active" {
		t.Fatalf("pending integration used: %d %v", status, out)
	}

	// The customer's trust policy forgets the ExternalId condition: refused.
	st.SetRole(awstest.Role{ARN: roleARN, Principal: principal, Buckets: []string{"acme-docs"}})
	status, out = f.do(t, "POST", "/v2/integrations/"+id+"/verify", "", nil)
	logBody("verify, trust policy without ExternalId", status, out)
	rep, _ := json.Marshal(out["verification"])
	if status != 200 || out["integration"].(map[string]any)["status"] != registry.StatusFailed || !strings.Contains(string(rep), "trust_policy_missing_external_id") {
		t.Fatalf("unsafe role verified: %d %s", status, rep)
	}
	if status, out = index(); status != 403 || errCode(out) != "integration_not_active" {
		t.Fatalf("failed integration used: %d %v", status, out)
	}

	// Fixed: active, and index requests are accepted.
	st.SetRole(awstest.Role{ARN: roleARN, Principal: principal, ExternalID: f.org.ExternalID, Buckets: []string{"acme-docs"}})
	status, out = f.do(t, "POST", "/v2/integrations/"+id+"/verify", "", nil)
	logBody("verify, good role", status, out)
	if status != 200 || out["integration"].(map[string]any)["status"] != registry.StatusActive {
		t.Fatalf("verify: %d %v", status, out)
	}
	if status, out = index(); status != 201 {
		t.Fatalf("index after verification: %d %v", status, out)
	}
	status, out = f.do(t, "POST", "/v2/collections/docs/index/s3", strings.Replace(strings.Replace(f.body(""), registrytest.RoleARN, roleARN, 1), "acme-docs", "other-bucket", 1), nil)
	logBody("index of a bucket the integration does not cover", status, out)
	if status != 403 || errCode(out) != "bucket_not_allowed" {
		t.Fatalf("bucket outside the integration: %d %v", status, out)
	}

	// Another org sees none of it.
	other, key, _ := tf.Registry.CreateOrg(context.Background(), "test", "Other")
	hdr := map[string]string{"Authorization": "Bearer " + key.Reveal(), "X-Organization-ID": other.ID}
	for _, m := range []string{"GET", "DELETE"} {
		if status, _ := f.do(t, m, "/v2/integrations/"+id, "", hdr); status != 404 {
			t.Fatalf("%s by another org: %d", m, status)
		}
	}
	if status, out := f.do(t, "GET", "/v2/integrations", "", hdr); status != 200 || len(out["integrations"].([]any)) != 0 {
		t.Fatalf("list by another org: %v", out)
	}
	if status, out := f.do(t, "GET", "/v2/integrations", "", nil); status != 200 || len(out["integrations"].([]any)) != 2 {
		t.Fatalf("list: %v", out)
	}

	// Rotation: the old ExternalId stops working at once.
	if _, err := tf.Registry.RotateExternalID(context.Background(), "cli", f.org.ID); err != nil {
		t.Fatal(err)
	}
	status, out = index()
	logBody("index with the ExternalId from before rotation", status, out)
	if status != 403 || errCode(out) != "external_id_mismatch" {
		t.Fatalf("old ExternalId after rotation: %d %v", status, out)
	}
	f.org, _ = tf.Registry.Org(context.Background(), f.org.ID)
	if status, out := f.do(t, "GET", "/v2/organization", "", nil); status != 200 || out["external_id"] != f.org.ExternalID || out["api_key_hashes"] != nil {
		t.Fatalf("organization: %d %v", status, out)
	}

	// Revoke: never used again.
	if status, out := f.do(t, "DELETE", "/v2/integrations/"+id, "", nil); status != 200 || out["status"] != registry.StatusRevoked {
		t.Fatalf("revoke: %d %v", status, out)
	}
	status, out = index()
	logBody("index with a revoked integration", status, out)
	if status != 403 || errCode(out) != "integration_not_active" {
		t.Fatalf("revoked integration used: %d %v", status, out)
	}
	if status, _ := f.do(t, "POST", "/v2/integrations/"+id+"/verify", "", nil); status != 409 {
		t.Fatalf("verify after revoke: %d", status)
	}
}

func TestStaticKeysNeedAKEK(t *testing.T) {
	f := setup(t) // registrytest's registry has a KEK
	const keyID, secret = "AKIASTATICSTATIC0001", "static/secret+access/key0001"
	body := `{"bucket_name":"acme-docs","aws_access_key_id":"` + keyID + `","aws_secret_access_key":"` + secret + `"}`
	status, out := f.do(t, "POST", "/v2/collections/docs/index/s3", body, nil)
	if status != 201 {
		t.Fatalf("static keys with a KEK: %d %v", status, out)
	}
	status, out = f.do(t, "GET", "/v2/integrations", "", nil)
	b, _ := json.Marshal(out)
	if strings.Contains(string(b), secret) || strings.Contains(string(b), keyID) || !strings.Contains(string(b), "AKIA…0001") {
		t.Fatalf("integration list shows key material: %s", b)
	}
	// Without a KEK: refused, nothing stored.
	reg, _ := registry.Open(context.Background(), f.js, registry.Config{})
	api, _ := New(context.Background(), Config{JS: f.js, Registry: reg})
	f.api = api
	status, out = f.do(t, "POST", "/v2/collections/docs/index/s3", body, nil)
	b, _ = json.Marshal(out)
	t.Logf("static keys without a KEK → %d %s", status, b)
	if status != 422 || errCode(out) != "static_keys_unsupported" || strings.Contains(string(b), secret) {
		t.Fatalf("static keys without a KEK: %d %s", status, b)
	}
}

// TestVerificationRateLimitedPerOrg: each verification calls STS and S3
// with the tenant's role, so one org may start only a few: past the burst,
// 429 verify_rate_limited; another org is not affected.
func TestVerificationRateLimitedPerOrg(t *testing.T) {
	tf := registrytest.Tenant(t)
	st, s3 := awstest.Start(t)
	s3.Put("acme-docs", "first.txt", "hello")
	st.SetRole(awstest.Role{ARN: registrytest.RoleARN, Principal: principal, ExternalID: tf.Org.ExternalID, Buckets: []string{"acme-docs"}})
	verifier := &creds.Verifier{STS: st.Client(), AWS: s3.Config(), S3PathStyle: true}
	api, err := New(context.Background(), Config{JS: tf.JS, Registry: tf.Registry, PrincipalARN: principal, Verifier: verifier, VerifyEvery: time.Hour, VerifyBurst: 2})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{api: api, js: tf.JS, org: tf.Org, key: tf.APIKey.Reveal()}
	path := "/v2/integrations/" + tf.In.ID + "/verify"
	body := `{"bucket":"acme-docs"}`
	for i := range 2 {
		if status, out := f.do(t, "POST", path, body, nil); status != 200 {
			t.Fatalf("verification %d: %d %v", i+1, status, out)
		}
	}
	calls := st.AssumeCalls()
	if status, out := f.do(t, "POST", path, body, nil); status != 429 || errCode(out) != "verify_rate_limited" {
		t.Fatalf("third verification: %d %v", status, out)
	}
	if st.AssumeCalls() != calls {
		t.Fatal("a rate-limited verification called STS")
	}
	// Another org has its own budget.
	orgB, keyB, _ := tf.Registry.CreateOrg(context.Background(), "test", "B")
	inB, _ := tf.Registry.AddIntegration(context.Background(), "test", orgB.ID, registry.Spec{RoleARN: "arn:aws:iam::123456789012:role/b"})
	fb := &fixture{api: api, js: tf.JS, org: orgB, key: keyB.Reveal()}
	if status, out := fb.do(t, "POST", "/v2/integrations/"+inB.ID+"/verify", body, nil); status == 429 {
		t.Fatalf("org B limited by org A's verifications: %v", out)
	}
}
