package creds

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeSTS is a struct of function fields, per house style.
type fakeSTS struct {
	assume func(*sts.AssumeRoleInput) (*sts.AssumeRoleOutput, error)
	calls  atomic.Int64
}

func (f *fakeSTS) AssumeRole(_ context.Context, in *sts.AssumeRoleInput, _ ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	f.calls.Add(1)
	time.Sleep(time.Millisecond) // let concurrent callers pile up on the single flight
	return f.assume(in)
}

func okSTS() *fakeSTS {
	return &fakeSTS{assume: func(in *sts.AssumeRoleInput) (*sts.AssumeRoleOutput, error) {
		return &sts.AssumeRoleOutput{Credentials: &types.Credentials{
			AccessKeyId: aws.String("ASIA" + *in.ExternalId), SecretAccessKey: aws.String("secret-" + *in.ExternalId),
			SessionToken: aws.String("token"), Expiration: aws.Time(time.Now().Add(time.Hour)),
		}}, nil
	}}
}

func TestOneAssumePerKeyUnderConcurrency(t *testing.T) {
	f := okSTS()
	reg := prometheus.NewRegistry()
	b, err := New(Config{STS: f, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mismatch atomic.Int64
	for i := 0; i < 10_000; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tenant := fmt.Sprintf("ext%02d", i%50)
			p, err := b.Retrieve(context.Background(), Request{RoleARN: "arn:aws:iam::123456789012:role/r" + tenant, ExternalID: tenant, SessionName: "s", Policy: "p"})
			if err != nil {
				t.Error(err)
				return
			}
			c, _ := p.Retrieve(context.Background())
			if c.AccessKeyID != "ASIA"+tenant {
				mismatch.Add(1) // tenant A must never get tenant B's credentials
			}
		}(i)
	}
	wg.Wait()
	if n := f.calls.Load(); n != 50 {
		t.Fatalf("STS calls = %d, want 50", n)
	}
	if mismatch.Load() != 0 {
		t.Fatalf("%d requests got another tenant's credentials", mismatch.Load())
	}
	if got := testutil.ToFloat64(b.m.assume.WithLabelValues("ok")); got != 50 {
		t.Fatalf("stevedore_sts_assume_total{ok} = %v", got)
	}
}

func TestInvalidateReassumes(t *testing.T) {
	f := okSTS()
	b, _ := New(Config{STS: f})
	req := Request{RoleARN: "arn:aws:iam::123456789012:role/r", ExternalID: "x", SessionName: "s"}
	for i := 0; i < 3; i++ {
		if _, err := b.Retrieve(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	b.Invalidate(req)
	if _, err := b.Retrieve(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("STS calls = %d, want 2", n)
	}
}

func TestClassify(t *testing.T) {
	api := func(code string) error { return &smithy.GenericAPIError{Code: code, Message: "m"} }
	tests := []struct {
		err  error
		want Class
	}{
		{&AssumeError{Err: api("AccessDenied")}, ClassTenantAuth},
		{&AssumeError{Err: api("InvalidClientTokenId")}, ClassOurCredentials},
		{&AssumeError{Err: api("Throttling")}, ClassThrottled},
		{api("AccessDenied"), ClassTenantPermission},
		{api("NoSuchKey"), ClassNotFound},
		{api("ExpiredToken"), ClassStaleToken},
		{api("InvalidAccessKeyId"), ClassStaleToken},
		{api("SlowDown"), ClassThrottled},
		{context.DeadlineExceeded, ClassTransient},
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
