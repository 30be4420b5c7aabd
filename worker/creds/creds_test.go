package creds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
)

// fixture is a broker in front of the fake STS, with a clock the test moves.
type fixture struct {
	sts    *awstest.STS
	s3     *awstest.S3
	b      *Broker
	now    time.Time
	mu     sync.Mutex
	health []string
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	f.sts, f.s3 = awstest.Start(t)
	cfg.STS = f.sts.Client()
	cfg.Now = func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
	cfg.OnHealth = func(req Request, c *Classified) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if c == nil {
			f.health = append(f.health, "recovered")
		} else {
			f.health = append(f.health, string(c.Class)+":"+c.Code)
		}
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.b = b
	return f
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func roleARN(name string) string { return "arn:aws:iam::" + awstest.Account + ":role/" + name }

func (f *fixture) role(name, externalID string) Request {
	f.sts.SetRole(awstest.Role{ARN: roleARN(name), Principal: awstest.Principal, ExternalID: externalID, Buckets: []string{"docs"}})
	return Request{RoleARN: roleARN(name), ExternalID: externalID, SessionName: "stevedore-org_1-job_1", Policy: `{"Version":"2012-10-17"}`}
}

func TestOneAssumePerKeyUnderConcurrency(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, Config{Registerer: reg, Rate: 1000, Burst: 1000})
	reqs := make([]Request, 50)
	for i := range reqs {
		reqs[i] = f.role(fmt.Sprintf("tenant%02d", i), fmt.Sprintf("cap_org_%024d", i))
	}
	var wg sync.WaitGroup
	var mismatch, failed atomic.Int64
	for i := 0; i < 10_000; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req := reqs[i%50]
			p, err := f.b.Retrieve(context.Background(), req)
			if err != nil {
				failed.Add(1)
				return
			}
			c, _ := p.Retrieve(context.Background())
			for _, s := range f.sts.Sessions() {
				if s.AccessKeyID == c.AccessKeyID && s.Role.ARN != req.RoleARN {
					mismatch.Add(1) // tenant A must never get tenant B's credentials
				}
			}
		}(i)
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
	if n := f.sts.AssumeCalls(); n != 50 {
		t.Fatalf("STS calls = %d, want 50", n)
	}
	if mismatch.Load() != 0 {
		t.Fatalf("%d requests got another tenant's credentials", mismatch.Load())
	}
	if got := testutil.ToFloat64(f.b.m.assume.WithLabelValues("ok")); got != 50 {
		t.Fatalf("stevedore_sts_assume_total{ok} = %v", got)
	}
	t.Logf("10,000 concurrent requests across 50 tenants: %d AssumeRole calls", f.sts.AssumeCalls())
}

func TestWrongTrustPolicyCostsAHandfulOfCalls(t *testing.T) {
	f := newFixture(t, Config{})
	req := f.role("reader", "cap_org_right")
	req.ExternalID = "cap_org_wrong" // the customer's trust policy names another ExternalId
	var wg sync.WaitGroup
	var classes sync.Map
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.b.Retrieve(context.Background(), req)
			c := Classify(err)
			classes.Store(c.Class, c.Hint)
		}()
	}
	wg.Wait()
	if n := f.sts.AssumeCalls(); n != 1 {
		t.Fatalf("1,000 messages for a denied role made %d STS calls, want 1", n)
	}
	hint, ok := classes.Load(schema.ClassTenantAuth)
	if !ok || !strings.Contains(hint.(string), "ExternalId") || !strings.Contains(hint.(string), "Principal") {
		t.Fatalf("classes %v", hint)
	}
	// Later messages are answered from the negative cache without a call.
	for i := 0; i < 1000; i++ {
		if _, err := f.b.Retrieve(context.Background(), req); err == nil {
			t.Fatal("denied role succeeded")
		}
	}
	if n := f.sts.AssumeCalls(); n != 1 {
		t.Fatalf("2,000 requests made %d STS calls, want 1", n)
	}
	neg := testutil.ToFloat64(f.b.m.requests.WithLabelValues("negative"))
	if neg < 1000 {
		t.Fatalf("negative hits = %v, want ≥ 1000", neg)
	}
	t.Logf("2,000 requests with a wrong trust policy: %d AssumeRole call, %v answered from the negative cache", f.sts.AssumeCalls(), neg)
}

func TestNegativeCacheEscalatesAndRecovers(t *testing.T) {
	f := newFixture(t, Config{NegativeBase: time.Second, NegativeMax: 3 * time.Second})
	good := f.role("reader", "cap_org_right")
	req := good
	req.ExternalID = "cap_org_wrong"
	var retryAt []time.Duration
	for i := 0; i < 4; i++ {
		_, err := f.b.Retrieve(context.Background(), req)
		var ae *AssumeError
		if !errors.As(err, &ae) || ae.Cached {
			t.Fatalf("attempt %d: %v", i, err)
		}
		d := ae.RetryAt.Sub(f.b.cfg.Now())
		retryAt = append(retryAt, d)
		if _, err := f.b.Retrieve(context.Background(), req); !errors.As(err, &ae) || !ae.Cached {
			t.Fatalf("not answered from the negative cache: %v", err)
		}
		f.advance(d)
	}
	if fmt.Sprint(retryAt) != "[1s 2s 3s 3s]" {
		t.Fatalf("backoff %v, want [1s 2s 3s 3s]", retryAt)
	}
	// The customer fixes the trust policy: the role recovers by itself.
	f.sts.SetRole(awstest.Role{ARN: req.RoleARN, Principal: awstest.Principal, ExternalID: "cap_org_wrong", Buckets: []string{"docs"}})
	if _, err := f.b.Retrieve(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if n := f.sts.AssumeCalls(); n != 5 {
		t.Fatalf("STS calls %d, want 5", n)
	}
	if got := strings.Join(f.health, " "); got != "tenant_auth:AccessDenied recovered" {
		t.Fatalf("health transitions %q", got)
	}
}

func TestThrottlingBacksOff(t *testing.T) {
	f := newFixture(t, Config{NegativeBase: time.Second})
	req := f.role("reader", "cap_org_x")
	f.sts.Throttle.Store(4)
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.b.Retrieve(context.Background(), req); Classify(err).Class != schema.ClassThrottled {
				t.Errorf("class %v", Classify(err))
			}
		}()
	}
	wg.Wait()
	if n := f.sts.AssumeCalls(); n != 2 { // one call, one SDK retry, then the negative cache
		t.Fatalf("STS calls after a throttled burst: %d, want 2", n)
	}
	f.advance(time.Second)
	if _, err := f.b.Retrieve(context.Background(), req); Classify(err).Class != schema.ClassThrottled {
		t.Fatal(err)
	}
	var ae *AssumeError
	_, err := f.b.Retrieve(context.Background(), req)
	if !errors.As(err, &ae) || ae.RetryAt.Sub(f.b.cfg.Now()) != 2*time.Second {
		t.Fatalf("second backoff: %v", err)
	}
	f.advance(2 * time.Second)
	if _, err := f.b.Retrieve(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if n := f.sts.AssumeCalls(); n != 5 {
		t.Fatalf("STS calls %d, want 5", n)
	}
}

func TestSessionDuration(t *testing.T) {
	t.Run("fallback when MaxSessionDuration is shorter", func(t *testing.T) {
		f := newFixture(t, Config{Duration: 4 * time.Hour})
		req := f.role("reader", "x") // MaxSessionDuration 1h
		if _, err := f.b.Retrieve(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		req.SessionName = "stevedore-org_1-job_2"
		if _, err := f.b.Retrieve(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		// One refused 4h call, then 1h for this and every later session of the role.
		if n := f.sts.AssumeCalls(); n != 3 {
			t.Fatalf("STS calls %d, want 3", n)
		}
		if n := testutil.ToFloat64(f.b.m.durationFallbacks); n != 1 {
			t.Fatalf("fallbacks %v", n)
		}
	})
	t.Run("role chaining caps at one hour", func(t *testing.T) {
		f := newFixture(t, Config{Duration: 4 * time.Hour, RoleChaining: true})
		req := f.role("reader", "x")
		if _, err := f.b.Retrieve(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if n := f.sts.AssumeCalls(); n != 1 {
			t.Fatalf("STS calls %d, want 1", n)
		}
		chained, arn, err := DetectRoleChaining(context.Background(), f.sts.Client())
		if err != nil || chained || arn != awstest.Principal {
			t.Fatalf("our fake identity is a role, not a session: %v %s %v", chained, arn, err)
		}
	})
}

func TestSTSErrorsAreClassified(t *testing.T) {
	f := newFixture(t, Config{})
	req := f.role("reader", "x")
	f.sts.RegionDisabled.Store(true)
	_, err := f.b.Retrieve(context.Background(), req)
	if c := Classify(err); c.Class != schema.ClassTenantAuth || c.Code != "RegionDisabledException" || !strings.Contains(c.Hint, "region") {
		t.Fatalf("region disabled: %+v", c)
	}
	f.sts.RegionDisabled.Store(false)
	f.sts.ExpiredCaller.Store(true)
	f.advance(time.Hour)
	_, err = f.b.Retrieve(context.Background(), req)
	if c := Classify(err); c.Class != schema.ClassOurCredentials || !strings.Contains(c.Hint, "operator") {
		t.Fatalf("our credentials expired: %+v", c)
	}
	f.sts.ExpiredCaller.Store(false)
	f.advance(time.Hour)
	if _, err := f.b.Retrieve(context.Background(), Request{RoleARN: roleARN("missing"), ExternalID: "x", SessionName: "s1"}); Classify(err).Class != schema.ClassTenantAuth {
		t.Fatalf("missing role: %v", err)
	}
}

func TestRefreshBeforeExpiry(t *testing.T) {
	f := newFixture(t, Config{ExpiryWindow: 5 * time.Minute})
	req := f.role("reader", "x")
	f.sts.CredentialTTL = 2 * time.Minute // inside the refresh window: every use refreshes first
	for i := 0; i < 3; i++ {
		p, err := f.b.Retrieve(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := p.Retrieve(context.Background())
		for _, s := range f.sts.Sessions() {
			if s.AccessKeyID == c.AccessKeyID && !s.Expires.After(time.Now()) {
				t.Fatal("handed out expired credentials")
			}
		}
	}
	if n := f.sts.AssumeCalls(); n < 3 {
		t.Fatalf("credentials inside the expiry window were not refreshed: %d calls", n)
	}
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t, Config{Rate: 0.001, Burst: 1})
	if _, err := f.b.Retrieve(context.Background(), f.role("a", "x")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := f.b.Retrieve(ctx, f.role("b", "x"))
	if c := Classify(err); c.Class != schema.ClassThrottled || c.Code != "RateLimited" {
		t.Fatalf("over the rate limit: %+v %v", c, err)
	}
	if n := f.sts.AssumeCalls(); n != 1 {
		t.Fatalf("STS calls %d, want 1", n)
	}
}

func TestInvalidateReassumes(t *testing.T) {
	f := newFixture(t, Config{})
	req := f.role("reader", "x")
	for i := 0; i < 3; i++ {
		if _, err := f.b.Retrieve(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	f.b.Invalidate(req)
	if _, err := f.b.Retrieve(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if n := f.sts.AssumeCalls(); n != 2 {
		t.Fatalf("STS calls = %d, want 2", n)
	}
}

func TestClassify(t *testing.T) {
	api := func(code string) error { return &smithy.GenericAPIError{Code: code, Message: "m"} }
	tests := []struct {
		err  error
		want schema.ErrorClass
	}{
		{&AssumeError{Err: api("AccessDenied")}, schema.ClassTenantAuth},
		{&AssumeError{Err: api("InvalidClientTokenId")}, schema.ClassOurCredentials},
		{&AssumeError{Err: api("Throttling")}, schema.ClassThrottled},
		{api("AccessDenied"), schema.ClassTenantPermission},
		{api("NoSuchKey"), schema.ClassNotFound},
		{api("ExpiredToken"), schema.ClassStaleToken},
		{api("InvalidAccessKeyId"), schema.ClassStaleToken},
		{api("SlowDown"), schema.ClassThrottled},
		{context.DeadlineExceeded, schema.ClassTransient},
	}
	for _, tc := range tests {
		if got := Classify(tc.err); got.Class != tc.want || got.Hint == "" {
			t.Errorf("Classify(%v) = %+v, want %s", tc.err, got, tc.want)
		}
	}
}

func TestSessionPolicyAndName(t *testing.T) {
	p, err := SessionPolicy("acme-docs", "reports/")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(p), &doc); err != nil || doc["Version"] != "2012-10-17" {
		t.Fatalf("policy %s: %v", p, err)
	}
	if !strings.Contains(p, `arn:aws:s3:::acme-docs/reports/*`) {
		t.Fatalf("policy not scoped: %s", p)
	}
	if _, err := SessionPolicy("b", strings.Repeat("p", 2000)); err == nil {
		t.Fatal("oversize policy accepted")
	}
	n := SessionName("stevedore", "org_1", "job/with spaces and a very long identifier that goes on and on and on")
	if len(n) > 64 || strings.ContainsAny(n, " /") {
		t.Fatalf("session name %q", n)
	}
}

// TestPublicMessageHidesInternals: what tenants read never carries our
// resolver's address, hosts or request IDs; AWS codes and messages stay.
func TestPublicMessageHidesInternals(t *testing.T) {
	dns := &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: &net.DNSError{Err: "no such host",
		Name: "acme-docs.s3.zz-nowhere-9.amazonaws.com", Server: "10.0.0.2:53"}}
	if m := PublicMessage(fmt.Errorf("s3: %w", dns)); strings.Contains(m, "10.0.0.2") || strings.Contains(m, "zz-nowhere") || !strings.Contains(m, "transient") {
		t.Fatalf("DNS error shown as %q", m)
	}
	api := &smithy.OperationError{ServiceID: "S3", OperationName: "GetObject", Err: &smithy.GenericAPIError{Code: "AccessDenied", Message: "Access Denied"}}
	if m := PublicMessage(fmt.Errorf("s3: %w", api)); m != "GetObject: AccessDenied: Access Denied" {
		t.Fatalf("API error shown as %q", m)
	}
	own := schema.Errorf(schema.ClassTenantPermission, "integration int_1 does not cover s3://b/k")
	if m := PublicMessage(own); m != own.Error() {
		t.Fatalf("our own error shown as %q", m)
	}
}

// A broker session's S3 client is built once per region and reused; static
// keys get a client per call (their secret is opened per call, never kept).
func TestS3ClientsReusedPerSession(t *testing.T) {
	r := &Resolver{}
	session := aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("AKID", "secret", "token"))
	a, b := r.s3Client(session, "us-east-1"), r.s3Client(session, "us-east-1")
	if a != b {
		t.Fatal("a session's client was built twice")
	}
	if r.s3Client(session, "eu-west-1") == a {
		t.Fatal("one client for two regions")
	}
	other := aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("AKID2", "secret2", "token2"))
	if r.s3Client(other, "us-east-1") == a {
		t.Fatal("two sessions share a client")
	}
	static := credentials.NewStaticCredentialsProvider("AKID", "secret", "")
	if r.s3Client(static, "us-east-1") == r.s3Client(static, "us-east-1") {
		t.Fatal("a static-key client was kept")
	}
}

// memVerdicts is SharedVerdicts in memory (the fleet's is a KV bucket).
type memVerdicts struct {
	mu sync.Mutex
	m  map[string]Verdict
}

func (v *memVerdicts) Load(_ context.Context, k string) (*Verdict, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if x, ok := v.m[k]; ok {
		return &x, nil
	}
	return nil, nil
}
func (v *memVerdicts) Store(_ context.Context, k string, x Verdict) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.m[k] = x
	return nil
}
func (v *memVerdicts) Clear(_ context.Context, k string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.m, k)
	return nil
}

// A role refused for the tenant's reasons on one worker is refused on the
// others from the shared verdict, without calling STS, until the backoff
// ends; a throttle is not shared; a success clears the verdict.
func TestNegativeVerdictSharedAcrossTheFleet(t *testing.T) {
	shared := &memVerdicts{m: map[string]Verdict{}}
	a := newFixture(t, Config{Shared: shared})
	other, err := New(Config{STS: a.sts.Client(), Now: a.b.cfg.Now, Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	a.role("broken", "cap_org_right")
	wrong := Request{RoleARN: roleARN("broken"), ExternalID: "cap_org_wrong", SessionName: "stevedore-org_1-job_1", Policy: `{"Version":"2012-10-17"}`}
	if _, err := a.b.Retrieve(context.Background(), wrong); Classify(err).Class != schema.ClassTenantAuth {
		t.Fatalf("first refusal: %v", err)
	}
	for i := 0; i < 5; i++ { // other workers, other jobs: no STS call
		req := wrong
		req.SessionName = fmt.Sprintf("stevedore-org_1-job_%d", i+2)
		_, err := other.Retrieve(context.Background(), req)
		var ae *AssumeError
		if c := Classify(err); c.Class != schema.ClassTenantAuth || !errors.As(err, &ae) || !ae.Cached {
			t.Fatalf("refusal from the shared verdict: %+v %v", c, err)
		}
	}
	if n := a.sts.AssumeCalls(); n != 1 {
		t.Fatalf("%d AssumeRole calls for the fleet, want 1 per backoff step", n)
	}
	// The backoff ends and the customer fixed the trust policy: the next
	// assume succeeds and clears the verdict.
	a.advance(time.Hour)
	a.role("broken", "cap_org_wrong")
	if _, err := other.Retrieve(context.Background(), wrong); err != nil {
		t.Fatalf("after the fix: %v", err)
	}
	if len(shared.m) != 0 {
		t.Fatalf("verdict kept after a success: %v", shared.m)
	}
	// Throttling is STS's, not the tenant's: never shared.
	a.sts.Throttle.Store(10)
	_, _ = a.b.Retrieve(context.Background(), a.role("busy", "x"))
	if len(shared.m) != 0 {
		t.Fatalf("a throttle was shared: %v", shared.m)
	}
}
