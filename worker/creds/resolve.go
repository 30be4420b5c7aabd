package creds

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

// SessionPrefixDefault starts every RoleSessionName unless configured.
const SessionPrefixDefault = "stevedore"

// Resolver is the one way from what a message or request names (org,
// integration, bucket, key or prefix, scope) to AWS credentials: the
// registry lookup (role ARN and ExternalId come from there, never from the
// message), the active check, the bucket/prefix allowance, the scoped
// session policy, and the broker's cached session or the sealed static
// keys. The API, the worker, the SQS bridge and the verifier all use it.
// A Resolver is safe for concurrent use.
type Resolver struct {
	Registry *registry.Registry // required
	// Directory answers the org and integration lookups; nil reads the
	// Registry every time. Workers give it a registry.View.
	Directory Directory
	Broker    *Broker // required to resolve roles (not for Allowed or static keys)
	// AWS is the base SDK configuration of S3 clients (endpoints, retries,
	// HTTP client); credentials come from the resolver.
	AWS aws.Config
	// S3PathStyle selects path-style addressing (MinIO); default false.
	S3PathStyle bool
	// SessionPrefix starts every RoleSessionName; default SessionPrefixDefault.
	SessionPrefix string
	// SessionTemplate is the RoleSessionName template ({prefix}, {org},
	// {job}); default SessionTemplateDefault. See FormatSessionName.
	SessionTemplate string
	// OnStaleRetry is called when a stale-token answer made WithS3 retry
	// with fresh credentials (a metric); nil ignores it.
	OnStaleRetry func()
	// DevEmulatorSTS (development only, --dev-emulator-sts): queue sessions
	// are asked for without their session policy, which MinIO's STS refuses
	// (it accepts S3 resources only). The role's own policy still applies.
	DevEmulatorSTS bool

	clientsOnce sync.Once
	clients     *lru.Cache[clientKey, *s3.Client]
	leansOnce   sync.Once
	leans       *lru.Cache[*s3.Client, *leanS3] // GetObject's view of each client (get.go)
}

// clientKey names an S3 client: one per cached session and region. Building
// a client is a few thousand allocations (its middleware stack), a few
// percent of a small object's CPU; a session's provider is stable while the
// broker holds it, so its client is reused.
type clientKey struct {
	provider *aws.CredentialsCache
	region   string
}

// clientCacheSize bounds the S3 clients kept (a client holds no connection
// of its own: they share the base configuration's HTTP client).
const clientCacheSize = 1024

// Directory is where orgs and integrations are looked up: the Registry, or
// a registry.View that follows it.
type Directory interface {
	Org(ctx context.Context, id string) (*registry.Org, error)
	Integration(ctx context.Context, orgID, id string) (*registry.Integration, error)
}

func (r *Resolver) directory() Directory {
	if r.Directory != nil {
		return r.Directory
	}
	return r.Registry
}

// Tenant is what the registry says about the org and integration a message
// names.
type Tenant struct {
	Org *registry.Org
	In  *registry.Integration
	// CredentialRef names the sealed static-key secret to use (the one the
	// job was submitted with); "" uses the integration's latest.
	CredentialRef string
}

// Owner is the ExpectedBucketOwner of every S3 call: the role's account
// (unknown, and so not sent, for static keys).
func (t *Tenant) Owner() *string {
	if t.In.Account == "" {
		return nil
	}
	return aws.String(t.In.Account)
}

// Refusal codes of Allowed and Tenant (ClassError.Code).
const (
	CodeIntegrationNotFound  = "integration_not_found"
	CodeIntegrationNotActive = "integration_not_active"
	CodeBucketNotAllowed     = "bucket_not_allowed"
	CodeOrgDisabled          = "organization_disabled"
)

// Allowed reports whether in may be used for s3://bucket/key (key is a key
// or a prefix): only an active integration, and only for the buckets and
// prefixes it covers. A refusal is a permanent *schema.ClassError with a
// Code above.
func Allowed(in *registry.Integration, bucket, key string) error {
	if in.Status != registry.StatusActive {
		return &schema.ClassError{Class: schema.ClassTenantAuth, Code: CodeIntegrationNotActive,
			Err: fmt.Errorf("integration %s is %s: %s", in.ID, in.Status, in.StatusReason)}
	}
	if !in.Allows(bucket, key) {
		return &schema.ClassError{Class: schema.ClassTenantPermission, Code: CodeBucketNotAllowed,
			Err: fmt.Errorf("integration %s does not cover s3://%s/%s", in.ID, bucket, key)}
	}
	return nil
}

// Tenant looks up the org and integration and checks that the integration
// may be used for s3://bucket/key (Allowed).
func (r *Resolver) Tenant(ctx context.Context, orgID, integrationID, bucket, key string) (*Tenant, error) {
	t, err := r.lookup(ctx, orgID, integrationID)
	if err != nil {
		return nil, err
	}
	if err := Allowed(t.In, bucket, key); err != nil {
		return nil, err
	}
	return t, nil
}

// lookup finds the org (refusing a disabled one) and the integration.
func (r *Resolver) lookup(ctx context.Context, orgID, integrationID string) (*Tenant, error) {
	org, err := r.directory().Org(ctx, orgID)
	if err != nil {
		return nil, &schema.ClassError{Class: schema.ClassTenantAuth, Code: CodeIntegrationNotFound, Err: fmt.Errorf("resolve org: %w", err)}
	}
	if org.DisabledAt != nil {
		return nil, &schema.ClassError{Class: schema.ClassTenantAuth, Code: CodeOrgDisabled, Err: fmt.Errorf("organization %s is disabled", org.ID)}
	}
	in, err := r.directory().Integration(ctx, orgID, integrationID)
	if err != nil {
		return nil, &schema.ClassError{Class: schema.ClassTenantAuth, Code: CodeIntegrationNotFound, Err: fmt.Errorf("resolve integration: %w", err)}
	}
	return &Tenant{Org: org, In: in}, nil
}

// Request is the broker request for reading bucket/prefix on behalf of t:
// the session policy allows exactly that scope; scope names the session in
// the customer's CloudTrail (a job ID, or "events").
func (r *Resolver) Request(t *Tenant, scope, bucket, prefix string) (Request, error) {
	policy, err := SessionPolicy(bucket, prefix)
	if err != nil {
		return Request{}, schema.Errorf(schema.ClassPermanent, "%w", err)
	}
	return r.request(t, scope, policy, t.In.SessionDuration), nil
}

func (r *Resolver) request(t *Tenant, scope, policy string, d time.Duration) Request {
	prefix := cmp.Or(r.SessionPrefix, SessionPrefixDefault)
	req := Request{
		RoleARN: t.In.RoleARN, ExternalID: t.Org.ExternalID, Policy: policy, Duration: d,
		SessionName: FormatSessionName(r.SessionTemplate, prefix, t.Org.ID, scope), Org: t.Org.ID, Integration: t.In.ID,
	}
	if t.In.SourceIdentity {
		req.SourceIdentity = SessionName(prefix, t.Org.ID, "")
	}
	if t.In.SessionTags {
		req.Tags = map[string]string{"stevedore-org": t.Org.ID, "stevedore-scope": scope}
	}
	return req
}

// Provider returns the credentials for req on behalf of t: the broker's
// cached, scoped session for a role, or the sealed static keys opened for
// this call.
func (r *Resolver) Provider(ctx context.Context, t *Tenant, req Request) (aws.CredentialsProvider, error) {
	if t.In.Kind == registry.KindStaticKeys {
		return r.static(ctx, t.In, t.CredentialRef)
	}
	if r.Broker == nil {
		return nil, schema.Errorf(schema.ClassOurCredentials, "no credential broker configured")
	}
	return r.Broker.Retrieve(ctx, req)
}

// static opens a static-key integration's sealed secret ref (default: the
// latest supplied).
func (r *Resolver) static(ctx context.Context, in *registry.Integration, ref string) (aws.CredentialsProvider, error) {
	secret, err := r.Registry.StaticSecret(ctx, in, cmp.Or(ref, in.CredentialRef))
	if err != nil {
		return nil, schema.Errorf(schema.ClassOurCredentials, "%w", err)
	}
	return credentials.NewStaticCredentialsProvider(in.AccessKeyID, secret.Reveal(), ""), nil
}

// WithS3 runs call with an S3 client holding t's credentials for req in
// region (default: the integration's). Credentials are resolved first, so
// an STS failure is never mistaken for an S3 denial; a stale-token answer
// (ExpiredToken; InvalidAccessKeyId from MinIO) invalidates the cached
// session and retries once.
func (r *Resolver) WithS3(ctx context.Context, t *Tenant, req Request, region string, call func(*s3.Client) error) error {
	region = cmp.Or(region, t.In.Region)
	for attempt := 0; ; attempt++ {
		provider, err := r.Provider(ctx, t, req)
		if err != nil {
			return err
		}
		err = call(r.s3Client(provider, region))
		if err != nil && attempt == 0 && t.In.Kind != registry.KindStaticKeys && Classify(err).Class == schema.ClassStaleToken {
			r.Broker.Invalidate(req)
			if r.OnStaleRetry != nil {
				r.OnStaleRetry()
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("s3: %w", err)
		}
		return nil
	}
}

// s3Client returns the S3 client for provider in region: a cached one for a
// broker session, a new one for static keys (opened per call, never kept).
func (r *Resolver) s3Client(provider aws.CredentialsProvider, region string) *s3.Client {
	cc, ok := provider.(*aws.CredentialsCache)
	if !ok {
		return NewS3(r.AWS, provider, region, r.S3PathStyle)
	}
	r.clientsOnce.Do(func() { r.clients, _ = lru.New[clientKey, *s3.Client](clientCacheSize) })
	k := clientKey{cc, region}
	if c, ok := r.clients.Get(k); ok {
		return c
	}
	c := NewS3(r.AWS, provider, region, r.S3PathStyle)
	r.clients.Add(k, c)
	return c
}

// QueueCredentials reads a customer's SQS queue through their role: the
// role ARN and ExternalId are looked up on every refresh (a rotated
// ExternalId or a revoked integration takes effect), the session is scoped
// to the queue (QueueSessionPolicy), and the broker caches it and refreshes
// it before expiry. Only active role integrations of enabled orgs are used.
func (r *Resolver) QueueCredentials(orgID, integrationID, queueARN string, d time.Duration) aws.CredentialsProvider {
	policy := QueueSessionPolicy(queueARN)
	if r.DevEmulatorSTS {
		policy = ""
	}
	return queueProvider{r: r, org: orgID, integration: integrationID, policy: policy, duration: d}
}

type queueProvider struct {
	r                *Resolver
	org, integration string
	policy           string
	duration         time.Duration
}

func (q queueProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	t, err := q.r.lookup(ctx, q.org, q.integration)
	if err != nil {
		return aws.Credentials{}, err
	}
	if t.In.Status != registry.StatusActive || t.In.Kind != registry.KindRole {
		return aws.Credentials{}, fmt.Errorf("integration %s is %s (%s): not used to read queues", t.In.ID, t.In.Status, t.In.Kind)
	}
	p, err := q.r.Provider(ctx, t, q.r.request(t, "events", q.policy, q.duration))
	if err != nil {
		return aws.Credentials{}, err
	}
	return p.Retrieve(ctx)
}

// NewS3 returns an S3 client on base with provider's credentials.
func NewS3(base aws.Config, provider aws.CredentialsProvider, region string, pathStyle bool) *s3.Client {
	return s3.NewFromConfig(base, func(o *s3.Options) {
		o.Credentials = provider
		if region != "" {
			o.Region = region
		}
		o.UsePathStyle = pathStyle
		// MinIO and some S3-compatible stores return no checksum; the SDK
		// would log a line per GET about skipping validation.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
}
