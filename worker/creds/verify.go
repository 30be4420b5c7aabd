package creds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

// ErrOurCredentials: verification could not run because stevedore's own AWS
// identity is missing or was refused. That says nothing about the
// customer's role, so there is no report to record.
var ErrOurCredentials = errors.New("stevedore's own AWS identity is missing or was refused")

// Verification step names, in order.
const (
	StepAssume          = "assume_role_with_external_id"
	StepAssumeNoExtID   = "assume_role_without_external_id_refused"
	StepAssumeWrongID   = "assume_role_with_wrong_external_id_refused"
	StepListBucket      = "list_bucket"
	StepReadFirstObject = "read_first_object"
)

// Verifier checks that an integration is usable and safe before it becomes
// active. It calls STS directly (never through the cache: a verification must
// see the trust policy as it is now).
type Verifier struct {
	STS           stscreds.AssumeRoleAPIClient
	AWS           aws.Config // base configuration for S3 clients
	S3PathStyle   bool
	SessionPrefix string
	// SessionTemplate is the RoleSessionName template; see FormatSessionName.
	SessionTemplate string
	// DevEmulatorSTS accepts an STS that ignores ExternalId and returns no
	// assumed-role ARN (MinIO). Steps it excuses are reported as
	// accepted_by_dev_override. Never set it in production.
	DevEmulatorSTS bool
	// Identity is stevedore's own credentials (those the STS client signs
	// with); when set, Verify first checks that they can be had, so a
	// missing identity is reported as ours (ErrOurCredentials), never as the
	// customer's failure.
	Identity aws.CredentialsProvider
	// Resolver opens a static-key integration's sealed keys (required for
	// static-key integrations only).
	Resolver *Resolver
	Timeout  time.Duration // per AWS call; default 10 s
	Now      func() time.Time
}

// Target is what to verify: the integration, its org (for the ExternalId)
// and the bucket to probe.
type Target struct {
	Org    *registry.Org
	In     *registry.Integration
	Bucket string
}

// Verify runs every step and returns the report; a step that cannot run
// because an earlier one failed is skipped. The report never holds a secret.
// When stevedore's own identity fails, it returns ErrOurCredentials and no
// report: nothing about the customer's role was learnt.
func (v *Verifier) Verify(ctx context.Context, t Target) (*registry.Verification, error) {
	rep := v.report(ctx, t)
	if rep.Reason == schema.CodeOurCredentials {
		return nil, fmt.Errorf("%w: %s", ErrOurCredentials, rep.Steps[0].Message)
	}
	return rep, nil
}

// report runs the steps (see Verify).
func (v *Verifier) report(ctx context.Context, t Target) *registry.Verification {
	// Defaults are read, never written back: one Verifier serves concurrent
	// requests.
	now := v.Now
	if now == nil {
		now = time.Now
	}
	st := &steps{rep: &registry.Verification{At: now().UTC()}}
	prefix := ""
	if len(t.In.Prefixes) > 0 {
		prefix = t.In.Prefixes[0]
	}
	var provider aws.CredentialsProvider
	if t.In.Kind == registry.KindStaticKeys {
		provider = v.staticProvider(ctx, t, st)
	} else {
		provider = v.roleProvider(ctx, t, prefix, st)
	}
	if provider == nil {
		return st.rep // the steps say why
	}
	client := NewS3(v.AWS, provider, t.In.Region, v.S3PathStyle)
	key, s := v.listBucket(ctx, client, t, prefix)
	st.add(s)
	if s.Status != registry.StepPassed {
		st.skip(StepReadFirstObject)
	} else {
		st.add(v.readObject(ctx, client, t, key))
	}
	st.rep.OK = st.rep.Reason == ""
	return st.rep
}

// steps collects a verification's steps; the first failed one is its reason.
type steps struct{ rep *registry.Verification }

func (st *steps) add(s registry.VerificationStep) {
	st.rep.Steps = append(st.rep.Steps, s)
	if s.Status == registry.StepFailed && st.rep.Reason == "" {
		st.rep.Reason = s.Code
	}
}

// skip records the named steps as skipped after an earlier one failed.
func (st *steps) skip(names ...string) {
	for _, n := range names {
		st.add(registry.VerificationStep{Name: n, Status: registry.StepSkipped, Message: "skipped: an earlier step failed"})
	}
}

// staticProvider opens a static-keys integration's sealed keys (the role
// steps are skipped: there is no role), or records why not and returns nil.
func (v *Verifier) staticProvider(ctx context.Context, t Target, st *steps) aws.CredentialsProvider {
	msg := "static keys: there is no role to assume"
	for _, n := range []string{StepAssume, StepAssumeNoExtID, StepAssumeWrongID} {
		st.add(registry.VerificationStep{Name: n, Status: registry.StepSkipped, Message: msg})
	}
	var p aws.CredentialsProvider
	err := errors.New("no resolver configured to open static keys")
	if v.Resolver != nil {
		p, err = v.Resolver.static(ctx, t.In, "")
	}
	if err != nil {
		st.add(registry.VerificationStep{Name: StepListBucket, Status: registry.StepFailed, Code: "static_keys_unreadable", Message: "the sealed keys could not be opened", Hint: "submit the keys again"})
		st.skip(StepReadFirstObject)
		return nil
	}
	return p
}

// roleProvider assumes the integration's role with our ExternalId, then
// checks it cannot be assumed without one or with a wrong one; it returns
// the credentials, or nil after the first failed step. It stops at the
// first unsafe finding: a role that can be assumed without our ExternalId
// (or with a wrong one) is not used for anything else, so registering
// someone else's role teaches a tenant nothing about that role's buckets.
func (v *Verifier) roleProvider(ctx context.Context, t Target, prefix string, st *steps) aws.CredentialsProvider {
	if v.Identity != nil {
		cctx, cancel := v.call(ctx)
		_, err := v.Identity.Retrieve(cctx)
		cancel()
		if err != nil {
			st.add(registry.VerificationStep{Name: StepAssume, Status: registry.StepFailed, Code: schema.CodeOurCredentials,
				Message: "stevedore's own AWS identity is missing or refused, so nothing was checked: " + PublicMessage(err),
				Hint:    "this is an operator problem, not yours: retry later"})
			st.skip(StepAssumeNoExtID, StepAssumeWrongID, StepListBucket, StepReadFirstObject)
			return nil
		}
	}
	s, p := v.assumeWithExternalID(ctx, t, prefix)
	st.add(s)
	if p == nil {
		st.skip(StepAssumeNoExtID, StepAssumeWrongID, StepListBucket, StepReadFirstObject)
		return nil
	}
	noID := v.assumeRefused(ctx, t, refuseWithoutExternalID)
	st.add(noID)
	if noID.Status == registry.StepFailed {
		st.skip(StepAssumeWrongID, StepListBucket, StepReadFirstObject)
		return nil
	}
	wrong := refuseWrongExternalID
	wrong.externalID = aws.String(wrongExternalID(t.Org.ExternalID))
	wrongID := v.assumeRefused(ctx, t, wrong)
	st.add(wrongID)
	if wrongID.Status == registry.StepFailed {
		st.skip(StepListBucket, StepReadFirstObject)
		return nil
	}
	return p
}

func (v *Verifier) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, cmp.Or(v.Timeout, 10*time.Second))
}

func (v *Verifier) assumeInput(t Target, policy string, withExternalID bool) *sts.AssumeRoleInput {
	in := &sts.AssumeRoleInput{RoleArn: aws.String(t.In.RoleARN), DurationSeconds: aws.Int32(900),
		RoleSessionName: aws.String(FormatSessionName(v.SessionTemplate, v.SessionPrefix, t.Org.ID, "verify"))}
	if policy != "" {
		in.Policy = aws.String(policy)
	}
	if withExternalID {
		in.ExternalId = aws.String(t.Org.ExternalID)
	}
	return in
}

func (v *Verifier) assumeWithExternalID(ctx context.Context, t Target, prefix string) (registry.VerificationStep, aws.CredentialsProvider) {
	step := registry.VerificationStep{Name: StepAssume}
	policy, err := SessionPolicy(t.Bucket, prefix)
	if err != nil {
		step.Status, step.Code, step.Message = registry.StepFailed, "session_policy_too_large", err.Error()
		return step, nil
	}
	cctx, cancel := v.call(ctx)
	defer cancel()
	out, err := v.STS.AssumeRole(cctx, v.assumeInput(t, policy, true))
	if err != nil {
		c := Classify(&AssumeError{RoleARN: t.In.RoleARN, Err: err})
		step.Status, step.Code, step.Message, step.Hint = registry.StepFailed, "assume_role_failed", "AssumeRole with your ExternalId failed: "+PublicMessage(err), c.Hint
		if c.Class == schema.ClassOurCredentials {
			step.Code, step.Message = schema.CodeOurCredentials, "stevedore's own AWS identity was refused or is missing: "+PublicMessage(err)
		}
		return step, nil
	}
	if out.Credentials == nil {
		step.Status, step.Code, step.Message = registry.StepFailed, "assume_role_failed", "AssumeRole returned no credentials"
		return step, nil
	}
	arn := ""
	if out.AssumedRoleUser != nil {
		arn = aws.ToString(out.AssumedRoleUser.Arn)
	}
	c := out.Credentials
	provider := credentials.NewStaticCredentialsProvider(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
	account := ""
	if parts := strings.Split(arn, ":"); len(parts) >= 5 {
		account = parts[4]
	}
	switch {
	case account == t.In.Account:
		step.Status, step.Message = registry.StepPassed, "assumed "+arn
	case arn == "" && v.DevEmulatorSTS:
		step.Status, step.Message = registry.StepOverridden, "assumed; the STS returned no assumed-role ARN, so the account was not checked (development override for emulators)"
	default:
		step.Status, step.Code = registry.StepFailed, "account_mismatch"
		step.Message = fmt.Sprintf("the assumed session belongs to account %q, the role ARN names %s", account, t.In.Account)
		step.Hint = "register the ARN of the role in the account that owns the buckets"
		return step, nil
	}
	return step, provider
}

// mustBeRefused is a verification step that passes only when STS refuses
// an AssumeRole the trust policy must not allow.
type mustBeRefused struct {
	name       string
	externalID *string // nil: no ExternalId at all
	what       string  // "without the ExternalId", "with a wrong ExternalId"
	checks     string  // what an inconclusive answer could not check
	code       string  // the failure's code when STS allowed it
	message    string
	hint       string
}

var (
	refuseWithoutExternalID = mustBeRefused{name: StepAssumeNoExtID, what: "without the ExternalId", checks: "that the ExternalId is required",
		code:    "trust_policy_missing_external_id",
		message: "AssumeRole succeeded without the ExternalId: anyone who can name this role through stevedore could use it (confused deputy)",
		hint:    `add "Condition": {"StringEquals": {"sts:ExternalId": "<your organization's ExternalId>"}} to the role's trust policy, then verify again`}
	refuseWrongExternalID = mustBeRefused{name: StepAssumeWrongID, what: "with a wrong ExternalId", checks: "that only your ExternalId is accepted",
		code:    "trust_policy_external_id_not_exact",
		message: "AssumeRole succeeded with an ExternalId that is not your organization's: the trust policy's condition is a pattern, not your exact ExternalId",
		hint:    `use "StringEquals" (not StringLike) with your organization's exact ExternalId in the role's trust policy, then verify again`}
)

// wrongExternalID is the org's ExternalId with its last character changed:
// a trust policy that matches it (StringLike "cap_org_*", a prefix match)
// does not pin our ExternalId exactly.
func wrongExternalID(id string) string {
	if id == "" {
		return "x"
	}
	repl := byte('0')
	if id[len(id)-1] == '0' {
		repl = '1'
	}
	return id[:len(id)-1] + string(repl)
}

func (v *Verifier) assumeRefused(ctx context.Context, t Target, m mustBeRefused) registry.VerificationStep {
	step := registry.VerificationStep{Name: m.name}
	cctx, cancel := v.call(ctx)
	defer cancel()
	in := v.assumeInput(t, "", false)
	in.ExternalId = m.externalID
	_, err := v.STS.AssumeRole(cctx, in)
	switch {
	case err != nil && Classify(&AssumeError{Err: err}).Class == schema.ClassTenantAuth:
		step.Status, step.Message = registry.StepPassed, "AssumeRole "+m.what+" is refused, as it must be"
	case err != nil:
		step.Status, step.Code = registry.StepFailed, "verification_inconclusive"
		step.Message = "could not check " + m.checks + ": " + PublicMessage(err)
		step.Hint = "retry the verification"
	case v.DevEmulatorSTS:
		step.Status = registry.StepOverridden
		step.Message = "AssumeRole " + m.what + " succeeded; accepted only because the development override for emulators is on (emulators ignore ExternalId)"
	default:
		step.Status, step.Code, step.Message, step.Hint = registry.StepFailed, m.code, m.message, m.hint
	}
	return step
}

func (v *Verifier) listBucket(ctx context.Context, client *s3.Client, t Target, prefix string) (string, registry.VerificationStep) {
	step := registry.VerificationStep{Name: StepListBucket}
	cctx, cancel := v.call(ctx)
	defer cancel()
	in := &s3.ListObjectsV2Input{Bucket: aws.String(t.Bucket), MaxKeys: aws.Int32(1)}
	if prefix != "" {
		in.Prefix = aws.String(prefix)
	}
	if t.In.Account != "" {
		in.ExpectedBucketOwner = aws.String(t.In.Account)
	}
	out, err := client.ListObjectsV2(cctx, in)
	if err != nil {
		c := Classify(err)
		step.Status, step.Code, step.Message, step.Hint = registry.StepFailed, "list_bucket_"+string(c.Class), "ListBucket on "+t.Bucket+" failed: "+PublicMessage(err), c.Hint
		return "", step
	}
	step.Status, step.Message = registry.StepPassed, "listed s3://"+t.Bucket+"/"+prefix
	if len(out.Contents) == 0 {
		return "", step
	}
	return aws.ToString(out.Contents[0].Key), step
}

func (v *Verifier) readObject(ctx context.Context, client *s3.Client, t Target, key string) registry.VerificationStep {
	step := registry.VerificationStep{Name: StepReadFirstObject}
	if key == "" {
		step.Status, step.Message = registry.StepSkipped, "the bucket (or prefix) is empty: nothing to read yet"
		return step
	}
	cctx, cancel := v.call(ctx)
	defer cancel()
	in := &s3.GetObjectInput{Bucket: aws.String(t.Bucket), Key: aws.String(key)}
	if t.In.Account != "" {
		in.ExpectedBucketOwner = aws.String(t.In.Account)
	}
	out, err := client.GetObject(cctx, in)
	if err == nil {
		_, err = io.ReadFull(out.Body, make([]byte, 1))
		if errors.Is(err, io.EOF) {
			err = nil // an empty object reads fine
		}
		out.Body.Close()
	}
	if err != nil {
		c := Classify(err)
		step.Status, step.Code, step.Message, step.Hint = registry.StepFailed, "read_object_"+string(c.Class), "GetObject failed: "+PublicMessage(err), c.Hint
		if c.Class == schema.ClassKMS && t.In.KMSKeyARN != "" {
			step.Hint += " (key " + t.In.KMSKeyARN + ")"
		}
		return step
	}
	step.Status, step.Message = registry.StepPassed, "read the first byte of one object"
	return step
}
