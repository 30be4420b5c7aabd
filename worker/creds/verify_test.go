package creds

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
)

func TestVerification(t *testing.T) {
	st, s3 := awstest.Start(t)
	s3.Put("docs", "a.txt", "hello")
	s3.CreateBucket("empty")
	org := &registry.Org{ID: "org_1", ExternalID: "cap_org_right"}
	v := &Verifier{STS: st.Client(), AWS: s3.Config(), S3PathStyle: true, SessionPrefix: "stevedore"}
	tests := []struct {
		name       string
		role       awstest.Role
		bucket     string
		emulator   bool
		ok         bool
		reason     string
		statuses   string
		hintSubstr string
	}{
		{"good role", awstest.Role{ExternalID: "cap_org_right", Buckets: []string{"docs"}}, "docs", false, true, "",
			"passed passed passed passed passed", ""},
		{"trust policy without ExternalId: nothing else done with the session", awstest.Role{Buckets: []string{"docs"}}, "docs", false, false, "trust_policy_missing_external_id",
			"passed failed skipped skipped skipped", "sts:ExternalId"},
		{"same, development override", awstest.Role{Buckets: []string{"docs"}}, "docs", true, true, "",
			"passed accepted_by_dev_override accepted_by_dev_override passed passed", ""},
		{"trust policy matches a pattern (StringLike cap_org_*)", awstest.Role{ExternalIDLike: "cap_org_*", Buckets: []string{"docs"}}, "docs", false, false, "trust_policy_external_id_not_exact",
			"passed passed failed skipped skipped", "StringEquals"},
		{"wrong ExternalId in trust policy", awstest.Role{ExternalID: "cap_org_other", Buckets: []string{"docs"}}, "docs", false, false, "assume_role_failed",
			"failed skipped skipped skipped skipped", "ExternalId"},
		{"permissions policy misses the bucket", awstest.Role{ExternalID: "cap_org_right", Buckets: []string{"elsewhere"}}, "docs", false, false, "list_bucket_tenant_permission",
			"passed passed passed failed skipped", "s3:ListBucket"},
		{"empty bucket", awstest.Role{ExternalID: "cap_org_right", Buckets: []string{"empty"}}, "empty", false, true, "",
			"passed passed passed passed skipped", ""},
		{"KMS key not allowed", awstest.Role{ExternalID: "cap_org_right", Buckets: []string{"docs"}, KMSDenied: true}, "docs", false, false, "read_object_kms",
			"passed passed passed passed failed", "kms:Decrypt"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.role.ARN = roleARN("verify" + string(rune('a'+i)))
			tc.role.Principal = awstest.Principal
			st.SetRole(tc.role)
			v.DevEmulatorSTS = tc.emulator
			in := &registry.Integration{ID: "int_1", Kind: registry.KindRole, RoleARN: tc.role.ARN, Account: awstest.Account}
			s3Calls := s3.Lists.Load() + s3.Gets.Load() + s3.Denied.Load()
			rep, err := v.Verify(context.Background(), Target{Org: org, In: in, Bucket: tc.bucket})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Reason == "trust_policy_missing_external_id" || rep.Reason == "trust_policy_external_id_not_exact" {
				if n := s3.Lists.Load() + s3.Gets.Load() + s3.Denied.Load() - s3Calls; n != 0 {
					t.Fatalf("an unsafe role's session was used for %d S3 calls", n)
				}
			}
			var statuses []string
			for _, s := range rep.Steps {
				statuses = append(statuses, s.Status)
			}
			if rep.OK != tc.ok || rep.Reason != tc.reason || strings.Join(statuses, " ") != tc.statuses {
				b, _ := json.MarshalIndent(rep, "", "  ")
				t.Fatalf("report %s", b)
			}
			if tc.hintSubstr != "" {
				found := false
				for _, s := range rep.Steps {
					found = found || strings.Contains(s.Hint, tc.hintSubstr)
				}
				if !found {
					t.Fatalf("no step hints at %q: %+v", tc.hintSubstr, rep.Steps)
				}
			}
			b, _ := json.Marshal(rep)
			for _, s := range st.Sessions() {
				if strings.Contains(string(b), s.SecretAccessKey) || strings.Contains(string(b), s.Token) {
					t.Fatal("report holds a credential")
				}
			}
			if testing.Verbose() {
				out, _ := json.MarshalIndent(rep.Steps, "", "  ")
				t.Logf("%s", out)
			}
		})
	}
}

func TestPoliciesForCustomers(t *testing.T) {
	trust, _ := json.Marshal(TrustPolicy("arn:aws:iam::999999999999:role/stevedore", "cap_org_abc", true, false))
	if !strings.Contains(string(trust), `"sts:ExternalId":"cap_org_abc"`) || !strings.Contains(string(trust), `"AWS":"arn:aws:iam::999999999999:role/stevedore"`) ||
		!strings.Contains(string(trust), "sts:SetSourceIdentity") || strings.Contains(string(trust), "sts:TagSession") {
		t.Fatalf("trust policy %s", trust)
	}
	perms, _ := json.Marshal(PermissionsPolicy([]string{"b2", "b1"}, nil, "arn:aws:kms:us-east-1:123456789012:key/k"))
	for _, want := range []string{`"arn:aws:s3:::b1","arn:aws:s3:::b2"`, `"arn:aws:s3:::b1/*"`, `"kms:Decrypt"`, `"s3:GetObject"`} {
		if !strings.Contains(string(perms), want) {
			t.Fatalf("permissions policy %s lacks %s", perms, want)
		}
	}
	cfn, _ := json.Marshal(CloudFormation("arn:aws:iam::999999999999:role/stevedore", "cap_org_abc", []string{"b1"}, []string{"legal/"}, "", false, false))
	for _, want := range []string{`"AWS::IAM::Role"`, `"cap_org_abc"`, `"arn:aws:s3:::b1/legal/*"`, `"MaxSessionDuration":3600`, `"Fn::GetAtt"`} {
		if !strings.Contains(string(cfn), want) {
			t.Fatalf("template %s lacks %s", cfn, want)
		}
	}
}

func TestQueuePolicyAdmitsOnlyS3OfTheBuckets(t *testing.T) {
	p := QueuePolicy("arn:aws:sqs:us-east-1:123456789012:notifications", "123456789012", []string{"acme-docs", "Legacy_Docs"})
	b, _ := json.Marshal(p)
	for _, want := range []string{`"Service":"s3.amazonaws.com"`, `"sqs:SendMessage"`, `"aws:SourceAccount":"123456789012"`,
		`"aws:SourceArn":["arn:aws:s3:::acme-docs","arn:aws:s3:::Legacy_Docs"]`, `"Resource":["arn:aws:sqs:us-east-1:123456789012:notifications"]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("queue policy lacks %s: %s", want, b)
		}
	}
}

// TestSessionPolicyEscapesWildcards: a prefix or key holding IAM wildcards
// or a policy variable matches only itself, never a wider set of keys.
func TestSessionPolicyEscapesWildcards(t *testing.T) {
	tests := []struct {
		prefix  string
		allowed []string
		denied  []string
	}{
		{"a*", []string{"a*", "a*/x.txt"}, []string{"abc.txt", "a/x"}},
		{"report-?.txt", []string{"report-?.txt"}, []string{"report-1.txt"}},
		{"${aws:username}/", []string{"${aws:username}/x"}, []string{"alice/x"}},
		{"legal/", []string{"legal/a.txt"}, []string{"hr/a.txt", "legal"}},
		{"", []string{"anything"}, nil},
	}
	for _, tt := range tests {
		p, err := SessionPolicy("docs", tt.prefix)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct{ Statement []struct{ Resource []string } }
		if err := json.Unmarshal([]byte(p), &doc); err != nil {
			t.Fatal(err)
		}
		get := doc.Statement[1].Resource[0]
		for _, k := range tt.allowed {
			if !awstest.IAMMatch(get, "arn:aws:s3:::docs/"+k) {
				t.Errorf("prefix %q: key %q denied by %s", tt.prefix, k, get)
			}
		}
		for _, k := range tt.denied {
			if awstest.IAMMatch(get, "arn:aws:s3:::docs/"+k) {
				t.Errorf("prefix %q: key %q allowed by %s", tt.prefix, k, get)
			}
		}
	}
}

func TestSessionNameTemplates(t *testing.T) {
	tests := []struct{ template, prefix, org, scope, want string }{
		{"", "stevedore", "org_1", "job_2", "stevedore-org_1-job_2"},
		{"captain-customer-{org}", "stevedore", "org_1", "job_2", "captain-customer-org_1"},
		{"{prefix}-{org}", "", "org_1", "events", "stevedore-org_1"},
		{"{org}-{job}", "p", "org 1/x", "", "org_1_x"},
		{"{prefix}-{org}-{job}", "p", strings.Repeat("o", 80), "j", "p-" + strings.Repeat("o", 62)},
	}
	for _, tt := range tests {
		if got := FormatSessionName(tt.template, tt.prefix, tt.org, tt.scope); got != tt.want {
			t.Errorf("FormatSessionName(%q) = %q, want %q", tt.template, got, tt.want)
		}
	}
	if CheckSessionTemplate("stevedore-{job}") == nil || CheckSessionTemplate("captain-customer-{org}") != nil {
		t.Fatal("template check")
	}
	// The resolver's sessions use the template.
	r := &Resolver{SessionTemplate: "captain-customer-{org}"}
	req, err := r.Request(&Tenant{Org: &registry.Org{ID: "org_9"}, In: &registry.Integration{ID: "int_1"}}, "job_1", "b", "")
	if err != nil || req.SessionName != "captain-customer-org_9" {
		t.Fatalf("%v %q", err, req.SessionName)
	}
}

// TestVerificationWithoutOurCredentials: when stevedore has no AWS identity
// of its own, the report says so (our_credentials), not the customer.
func TestVerificationWithoutOurCredentials(t *testing.T) {
	st, s3 := awstest.Start(t)
	none := aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, errors.New("no EC2 IMDS role found, operation error ec2imds: GetMetadata, request canceled 169.254.169.254")
	}))
	client := sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: aws.String(st.URL), RetryMaxAttempts: 1, Credentials: none})
	v := &Verifier{STS: client, Identity: none, AWS: s3.Config(), S3PathStyle: true}
	in := &registry.Integration{ID: "int_1", Kind: registry.KindRole, RoleARN: roleARN("noids"), Account: awstest.Account}
	rep, err := v.Verify(context.Background(), Target{Org: &registry.Org{ID: "org_1", ExternalID: "cap_org_x"}, In: in, Bucket: "docs"})
	if !errors.Is(err, ErrOurCredentials) || rep != nil || strings.Contains(err.Error(), "169.254") || st.AssumeCalls() != 0 {
		t.Fatalf("report %+v, error %v", rep, err)
	}
}

// TestVerifyConcurrently: one Verifier serves concurrent API requests (the
// race detector fails this if Verify writes its defaults into it).
func TestVerifyConcurrently(t *testing.T) {
	st, s3 := awstest.Start(t)
	s3.Put("docs", "a.txt", "hello")
	st.SetRole(awstest.Role{ARN: roleARN("concurrent"), Principal: awstest.Principal, ExternalID: "cap_org_right", Buckets: []string{"docs"}})
	v := &Verifier{STS: st.Client(), AWS: s3.Config(), S3PathStyle: true}
	in := &registry.Integration{ID: "int_1", Kind: registry.KindRole, RoleARN: roleARN("concurrent"), Account: awstest.Account}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if rep, err := v.Verify(context.Background(), Target{Org: &registry.Org{ID: "org_1", ExternalID: "cap_org_right"}, In: in, Bucket: "docs"}); err != nil || !rep.OK {
				t.Errorf("%+v %v", rep, err)
			}
		})
	}
	wg.Wait()
}
