package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/schema/registry/registrytest"
)

const role = registrytest.RoleARN

type fixture struct {
	api *API
	js  jetstream.JetStream
	org *registry.Org
	in  *registry.Integration
	key string
}

func setup(t *testing.T) *fixture {
	t.Helper()
	tf := registrytest.Tenant(t)
	api, err := New(context.Background(), Config{JS: tf.JS, Registry: tf.Registry})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{api: api, js: tf.JS, org: tf.Org, in: tf.In, key: tf.APIKey.Reveal()}
}

func (f *fixture) do(t *testing.T, method, path, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.key)
	req.Header.Set("X-Organization-ID", f.org.ID)
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	rec := serve(t, f.api, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func (f *fixture) body(extra string) string {
	return `{"bucket_name":"acme-docs","auth":{"type":"assume_role","role_arn":"` + role + `","external_id":"` + f.org.ExternalID + `"}` + extra + `}`
}

func errCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func TestIndexRequests(t *testing.T) {
	f := setup(t)
	path := "/v2/collections/docs/index/s3"
	tests := []struct {
		name   string
		path   string
		body   string
		hdr    map[string]string
		status int
		code   string
	}{
		{"created", path, f.body(""), nil, 201, ""},
		{"no key", path, f.body(""), map[string]string{"Authorization": ""}, 401, "unauthenticated"},
		{"wrong key", path, f.body(""), map[string]string{"Authorization": "Bearer stv_nope"}, 401, "invalid_api_key"},
		{"forged org header", path, f.body(""), map[string]string{"X-Organization-ID": "org_someoneelse"}, 403, "organization_mismatch"},
		{"wrong external id", path, strings.Replace(f.body(""), f.org.ExternalID, "cap_org_000000000000000000000000", 1), nil, 403, "external_id_mismatch"},
		{"unknown role", path, strings.Replace(f.body(""), "role/reader", "role/other", 1), nil, 403, "integration_not_found"},
		{"both credential shapes", path, strings.Replace(f.body(""), `"bucket_name"`, `"aws_access_key_id":"AKIA","aws_secret_access_key":"s","bucket_name"`, 1), nil, 422, "ambiguous_credentials"},
		{"half a static key", path, `{"bucket_name":"acme-docs","aws_access_key_id":"AKIAEXAMPLEEXAMPLE01"}`, nil, 422, "incomplete_static_keys"},
		{"no credentials", path, `{"bucket_name":"acme-docs"}`, nil, 422, "missing_credentials"},
		{"skip and overwrite", path, f.body(`,"skip_existing":true,"overwrite_existing":true`), nil, 400, "conflicting_options"},
		{"unknown encoding", path, f.body(`,"encoding":"p50k_base"`), nil, 400, "invalid_encoding"},
		{"additive job", path, f.body(`,"delete_missing":false`), nil, 201, ""},
		{"mass delete allowed", path, f.body(`,"allow_mass_delete":true`), nil, 201, ""},
		{"mass delete without a sync", path, f.body(`,"delete_missing":false,"allow_mass_delete":true`), nil, 400, "conflicting_options"},
		{"sync of a file", "/v2/collections/docs/index/s3/file", f.body(`,"file_uri":"s3://acme-docs/a.txt","delete_missing":true`), nil, 400, "invalid_option"},
		{"o200k encoding, advanced", path, f.body(`,"encoding":"o200k_base","processing_type":"advanced"`), nil, 201, ""},
		{"unknown processing type", path, f.body(`,"processing_type":"ocr"`), nil, 400, "invalid_processing_type"},
		{"malformed json", path, `{"bucket_name":`, nil, 400, "invalid_json"},
		{"wrong json type", path, `{"bucket_name": 7}`, nil, 400, "invalid_json"},
		{"bad bucket", path, strings.Replace(f.body(""), "acme-docs", "bad bucket", 1), nil, 400, "invalid_bucket_name"},
		{"bad region", path, strings.Replace(f.body(""), `"bucket_name"`, `"bucket_region":"zz-nowhere-9.example.com","bucket_name"`, 1), nil, 400, "invalid_region"},
		{"legacy bucket name", path, strings.Replace(f.body(""), "acme-docs", "Legacy_Docs", 1), nil, 201, ""},
		{"bad collection", "/v2/collections/a.b/index/s3", f.body(""), nil, 400, "invalid_collection"},
		{"huge key", "/v2/collections/docs/index/s3/file", f.body(`,"file_uri":"s3://acme-docs/` + strings.Repeat("k", 2000) + `"`), nil, 400, "key_too_long"},
		{"directory without path", "/v2/collections/docs/index/s3/directory", f.body(""), nil, 400, "missing_directory_path"},
		{"directory", "/v2/collections/docs/index/s3/directory", f.body(`,"directory_path":"reports/"`), nil, 201, ""},
		{"file", "/v2/collections/docs/index/s3/file", f.body(`,"file_uri":"s3://acme-docs/a b+c.txt"`), nil, 201, ""},
		{"huge body", path, `{"pad":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, nil, 413, "body_too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out := f.do(t, "POST", tc.path, tc.body, tc.hdr)
			if status != tc.status || errCode(out) != tc.code {
				t.Fatalf("got %d %v, want %d %s", status, out, tc.status, tc.code)
			}
			if status >= 400 {
				e := out["error"].(map[string]any)
				if e["message"] == "" {
					t.Fatal("error without message")
				}
			}
		})
	}
}

func TestJobLifecycleAndIsolation(t *testing.T) {
	f := setup(t)
	status, out := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(`,"max_files":10,"custom_metadata":{"team":"legal"}`), map[string]string{"Idempotency-Key": "k1"})
	if status != 201 || out["status"] != "pending" {
		t.Fatalf("create: %d %v", status, out)
	}
	id := out["job_id"].(string)
	// The same Idempotency-Key with the same request returns the same job
	// (200, its real status), and publishes nothing new; with another body,
	// or on another endpoint, it is 409.
	status, again := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(`,"max_files":10,"custom_metadata":{"team":"legal"}`), map[string]string{"Idempotency-Key": "k1"})
	if status != 200 || again["job_id"] != id || again["status"] != schema.JobStatusPending {
		t.Fatalf("idempotent retry: %d %v", status, again)
	}
	if status, out := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(""), map[string]string{"Idempotency-Key": "k1"}); status != 409 || errCode(out) != "idempotency_key_reused" {
		t.Fatalf("same key, other body: %d %v", status, out)
	}
	if status, out := f.do(t, "POST", "/v2/collections/other/index/s3", f.body(`,"max_files":10,"custom_metadata":{"team":"legal"}`), map[string]string{"Idempotency-Key": "k1"}); status != 409 || errCode(out) != "idempotency_key_reused" {
		t.Fatalf("same key, other collection: %d %v", status, out)
	}
	s, _ := f.js.Stream(context.Background(), schema.StreamJobs)
	info, _ := s.Info(context.Background())
	if info.State.Msgs != 1 {
		t.Fatalf("JOBS has %d messages, want 1", info.State.Msgs)
	}
	msg, err := s.GetLastMsgForSubject(context.Background(), schema.JobSubject(f.org.ID, "docs"))
	if err != nil {
		t.Fatal(err)
	}
	job, err := schema.DecodeJob(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if job.MaxFiles != 10 || !job.SkipExisting || job.Region != "us-east-1" || !bytes.Contains(job.CustomMetadata, []byte("legal")) {
		t.Fatalf("job message %+v", job)
	}
	if bytes.Contains(msg.Data, []byte(f.org.ExternalID)) || bytes.Contains(msg.Data, []byte(f.key)) {
		t.Fatal("job message carries a secret or the ExternalId")
	}
	status, st := f.do(t, "GET", "/v2/jobs/"+id, "", nil)
	if status != 200 || st["status"] != "pending" || st["files_total"] != float64(0) {
		t.Fatalf("status: %d %v", status, st)
	}
	// Another org cannot see it.
	ctx := context.Background()
	reg, _ := registry.Open(ctx, f.js, registry.Config{})
	other, key, _ := reg.CreateOrg(ctx, "test", "Other")
	status, _ = f.do(t, "GET", "/v2/jobs/"+id, "", map[string]string{"Authorization": "Bearer " + key.Reveal(), "X-Organization-ID": other.ID})
	if status != http.StatusNotFound {
		t.Fatalf("other org sees the job: %d", status)
	}
}

func TestRefusalsAreAudited(t *testing.T) {
	f := setup(t)
	f.do(t, "POST", "/v2/collections/docs/index/s3", strings.Replace(f.body(""), f.org.ExternalID, "cap_org_000000000000000000000000", 1), nil)
	s, _ := f.js.Stream(context.Background(), schema.StreamAudit)
	msg, err := s.GetLastMsgForSubject(context.Background(), schema.AuditSubject(f.org.ID))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(msg.Data, []byte("external_id_mismatch")) || bytes.Contains(msg.Data, []byte("cap_org_000000000000000000000000")) {
		t.Fatalf("audit record %s", msg.Data)
	}
}

// TestHTTPHygiene: 405 with Allow, a case-insensitive Bearer scheme, JSON
// errors that name the field without Go types, and X-Request-Id.
func TestHTTPHygiene(t *testing.T) {
	f := setup(t)
	req := httptest.NewRequest("GET", "/v2/collections/docs/index/s3", nil)
	rec := httptest.NewRecorder()
	f.api.ServeHTTP(rec, req)
	if rec.Code != 405 || rec.Header().Get("Allow") != "POST" {
		t.Fatalf("wrong method: %d Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
	for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		req := httptest.NewRequest("GET", "/v2/organization", nil)
		req.Header.Set("Authorization", scheme+" "+f.key)
		req.Header.Set("X-Organization-ID", f.org.ID)
		req.Header.Set("X-Request-Id", "client-chosen-1")
		rec := httptest.NewRecorder()
		f.api.ServeHTTP(rec, req)
		if rec.Code != 200 || rec.Header().Get("X-Request-Id") != "client-chosen-1" {
			t.Fatalf("%s: %d, X-Request-Id %q", scheme, rec.Code, rec.Header().Get("X-Request-Id"))
		}
	}
	_, out := f.do(t, "POST", "/v2/collections/docs/index/s3", `{"bucket_name": 7}`, nil)
	msg := out["error"].(map[string]any)["message"].(string)
	if !strings.Contains(msg, "bucket_name") || !strings.Contains(msg, "a string") || strings.Contains(msg, "Go") || strings.Contains(msg, "producer.") {
		t.Fatalf("type error message %q", msg)
	}
	// NATS gone: 503 with Retry-After, not 500.
	f.js.Conn().Close()
	req = httptest.NewRequest("GET", "/v2/jobs/job_x", nil)
	req.Header.Set("Authorization", "Bearer "+f.key)
	req.Header.Set("X-Organization-ID", f.org.ID)
	rec = httptest.NewRecorder()
	f.api.ServeHTTP(rec, req)
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("NATS unavailable: %d %s", rec.Code, rec.Body)
	}
}

// TestJobListAndCancel: GET /v2/jobs is org-scoped, newest first, filtered
// and paged by cursor; POST /v2/jobs/{id}/cancel is idempotent.
func TestJobListAndCancel(t *testing.T) {
	f := setup(t)
	var ids []string
	for i := range 5 {
		coll := "docs"
		if i%2 == 1 {
			coll = "other"
		}
		status, out := f.do(t, "POST", "/v2/collections/"+coll+"/index/s3", f.body(""), nil)
		if status != 201 {
			t.Fatalf("create: %d %v", status, out)
		}
		ids = append(ids, out["job_id"].(string))
		time.Sleep(2 * time.Millisecond) // distinct creation times
	}
	list := func(query string) (int, map[string]any) { return f.do(t, "GET", "/v2/jobs"+query, "", nil) }
	idsOf := func(out map[string]any) []string {
		var got []string
		for _, j := range out["jobs"].([]any) {
			got = append(got, j.(map[string]any)["job_id"].(string))
		}
		return got
	}
	status, out := list("?limit=2")
	if status != 200 || fmt.Sprint(idsOf(out)) != fmt.Sprint([]string{ids[4], ids[3]}) || out["next_cursor"] == nil {
		t.Fatalf("first page: %d %v", status, out)
	}
	_, out2 := list("?limit=2&cursor=" + out["next_cursor"].(string))
	_, out3 := list("?limit=2&cursor=" + out2["next_cursor"].(string))
	if fmt.Sprint(idsOf(out2)) != fmt.Sprint([]string{ids[2], ids[1]}) || fmt.Sprint(idsOf(out3)) != fmt.Sprint([]string{ids[0]}) || out3["next_cursor"] != nil {
		t.Fatalf("pages: %v / %v", out2, out3)
	}
	if _, out := list("?collection=other"); fmt.Sprint(idsOf(out)) != fmt.Sprint([]string{ids[3], ids[1]}) {
		t.Fatalf("collection filter: %v", out)
	}
	if status, out := list("?status=bogus"); status != 400 || errCode(out) != "invalid_status" {
		t.Fatalf("a bogus status: %d %s", status, out)
	}
	if status, out := list("?cursor=bm9wZQ"); status != 400 || errCode(out) != "invalid_cursor" {
		t.Fatalf("forged cursor: %d %v", status, out)
	}

	for range 2 { // idempotent
		status, out := f.do(t, "POST", "/v2/jobs/"+ids[0]+"/cancel", "", nil)
		if status != 200 || out["status"] != schema.JobStatusCancelled || out["progress"] != float64(1) {
			t.Fatalf("cancel: %d %v", status, out)
		}
	}
	if _, out := list("?status=cancelled"); fmt.Sprint(idsOf(out)) != fmt.Sprint([]string{ids[0]}) {
		t.Fatalf("status filter: %v", out)
	}
	// Another org sees none of it.
	orgB, keyB, _ := registrytest.Registry(f.js).CreateOrg(context.Background(), "test", "B")
	fb := &fixture{api: f.api, js: f.js, org: orgB, key: keyB.Reveal()}
	if _, out := fb.do(t, "GET", "/v2/jobs", "", nil); len(out["jobs"].([]any)) != 0 {
		t.Fatalf("org B lists org A's jobs: %v", out)
	}
	if status, _ := fb.do(t, "POST", "/v2/jobs/"+ids[1]+"/cancel", "", nil); status != 404 {
		t.Fatalf("org B cancelled org A's job: %d", status)
	}
}

// TestAPIKeysOrgsAndAudit: several keys per org; a revoked key is refused
// on the next request; a disabled org is refused; GET /v2/audit shows the
// org's own records only.
func TestAPIKeysOrgsAndAudit(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	reg := registrytest.Registry(f.js)
	k2, secret2, err := reg.CreateAPIKey(ctx, "test", f.org.ID)
	if err != nil {
		t.Fatal(err)
	}
	second := &fixture{api: f.api, js: f.js, org: f.org, key: secret2.Reveal()}
	if status, out := second.do(t, "GET", "/v2/organization", "", nil); status != 200 {
		t.Fatalf("second key: %d %v", status, out)
	}
	keys, _ := reg.APIKeys(ctx, f.org.ID)
	if len(keys) != 2 || keys[1].ID != k2.ID || keys[1].LastUsedAt == nil {
		t.Fatalf("keys %+v", keys)
	}
	if err := reg.RevokeAPIKey(ctx, "test", f.org.ID, k2.ID); err != nil {
		t.Fatal(err)
	}
	if status, out := second.do(t, "GET", "/v2/organization", "", nil); status != 401 || errCode(out) != "invalid_api_key" {
		t.Fatalf("revoked key: %d %v", status, out)
	}
	if status, _ := f.do(t, "GET", "/v2/organization", "", nil); status != 200 {
		t.Fatalf("the other key stopped working: %d", status)
	}
	if _, err := reg.SetDisabled(ctx, "test", f.org.ID, true); err != nil {
		t.Fatal(err)
	}
	if status, out := f.do(t, "GET", "/v2/organization", "", nil); status != 403 || errCode(out) != "organization_disabled" {
		t.Fatalf("disabled org: %d %v", status, out)
	}
	if _, err := reg.SetDisabled(ctx, "test", f.org.ID, false); err != nil {
		t.Fatal(err)
	}
	status, out := f.do(t, "GET", "/v2/audit?limit=1000", "", nil)
	if status != 200 {
		t.Fatalf("audit: %d %v", status, out)
	}
	var actions []string
	for _, r := range out["records"].([]any) {
		rec := r.(map[string]any)
		if rec["org"] != f.org.ID {
			t.Fatalf("another org's record: %v", rec)
		}
		actions = append(actions, rec["action"].(string))
	}
	for _, want := range []string{"org.create", "apikey.create", "apikey.revoke", "org.disable", "org.enable"} {
		if !slices.Contains(actions, want) {
			t.Fatalf("audit lacks %s: %v", want, actions)
		}
	}
	if status, _ := f.do(t, "GET", "/v2/audit?since=yesterday", "", nil); status != 400 {
		t.Fatalf("bad since: %d", status)
	}
}

// TestIdempotencyKeysExpire: a key is bound to its request for the
// idempotency window after its first use; later it starts a new job.
func TestIdempotencyKeysExpire(t *testing.T) {
	tf := registrytest.Tenant(t)
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	api, err := New(context.Background(), Config{JS: tf.JS, Registry: tf.Registry, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{api: api, js: tf.JS, org: tf.Org, key: tf.APIKey.Reveal()}
	key := map[string]string{"Idempotency-Key": "nightly-2026-12-01"}
	status, first := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(""), key)
	if status != 201 {
		t.Fatalf("first: %d %v", status, first)
	}
	mu.Lock()
	now = now.Add(23 * time.Hour)
	mu.Unlock()
	if status, again := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(""), key); status != 200 || again["job_id"] != first["job_id"] {
		t.Fatalf("within the window: %d %v", status, again)
	}
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	status, later := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(""), key)
	if status != 201 || later["job_id"] == first["job_id"] {
		t.Fatalf("after the window: %d %v", status, later)
	}
	if status, again := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(""), key); status != 200 || again["job_id"] != later["job_id"] {
		t.Fatalf("retry of the new job: %d %v", status, again)
	}
}

// Per-organization limits: past MaxQueuedJobs job pages waiting, a new job
// is 429 too_many_jobs (and leaves no job record); past the request rate,
// any request is 429 rate_limited with Retry-After; other orgs are not
// affected.
func TestTenantLimits(t *testing.T) {
	tf := registrytest.Tenant(t)
	api, err := New(context.Background(), Config{JS: tf.JS, Registry: tf.Registry, MaxQueuedJobs: 3, RequestRate: 0.01, RequestBurst: 5})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{api: api, js: tf.JS, org: tf.Org, key: tf.APIKey.Reveal()}
	for i := 0; i < 3; i++ { // no worker runs: the pages stay queued
		if status, out := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(""), nil); status != 201 {
			t.Fatalf("job %d: %d %v", i, status, out)
		}
	}
	status, out := f.do(t, "POST", "/v2/collections/docs/index/s3", f.body(""), nil)
	if status != 429 || errCode(out) != "too_many_jobs" {
		t.Fatalf("fourth queued job: %d %v", status, out)
	}
	if _, list := f.do(t, "GET", "/v2/jobs", "", nil); len(list["jobs"].([]any)) != 3 {
		t.Fatalf("a refused job left a record: %v", list)
	}
	// Five requests so far: the burst is spent (one token a hundred seconds).
	req := httptest.NewRequest("GET", "/v2/jobs", nil)
	req.Header.Set("Authorization", "Bearer "+f.key)
	req.Header.Set("X-Organization-ID", f.org.ID)
	rec := serve(t, f.api, req)
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "rate_limited") {
		t.Fatalf("over the request rate: %d %s", rec.Code, rec.Body)
	}
	// Another org has its own budget.
	reg := tf.Registry
	other, key, err := reg.CreateOrg(context.Background(), "test", "Other")
	if err != nil {
		t.Fatal(err)
	}
	g := &fixture{api: api, js: tf.JS, org: other, key: key.Reveal()}
	if status, out := g.do(t, "GET", "/v2/jobs", "", nil); status != 200 {
		t.Fatalf("another org was limited: %d %v", status, out)
	}
}
