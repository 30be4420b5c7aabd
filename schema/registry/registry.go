// Package registry is the tenant registry: organizations, their API key
// hashes and ExternalIds, and their AWS integrations, stored in the JetStream
// KV bucket schema.BucketRegistry. Both the producer (authentication,
// onboarding) and the worker (resolving role ARN and ExternalId for a message)
// use it; a message body alone never decides which role is assumed.
//
// Secrets: API keys are shown once and stored as SHA-256 hashes (they are
// 160-bit random values, so an unsalted hash is safe); ExternalIds are not
// secrets in AWS's model but are still never logged (see Secret).
//
// A *Registry is safe for concurrent use.
package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// Secret is a string that never prints: fmt, slog and JSON logging show
// "[REDACTED]". Use Reveal where the value is really needed.
type Secret string

func (s Secret) String() string { return "[REDACTED]" }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// GoString implements fmt.GoStringer for %#v.
func (s Secret) GoString() string { return "[REDACTED]" }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// Errors returned by lookups. ErrNotFound wraps jetstream.ErrKeyNotFound.
var (
	ErrNotFound          = errors.New("not found")
	ErrExternalIDInvalid = errors.New("external_id does not match the organization's")
)

// Integration statuses.
const (
	StatusPending = "pending"
	StatusActive  = "active"
	StatusFailed  = "failed"
	StatusRevoked = "revoked"
)

// Org is one customer organization.
type Org struct {
	ID                  string    `json:"id"`
	Name                string    `json:"name"`
	ExternalID          string    `json:"external_id"`
	APIKeyHashes        []string  `json:"api_key_hashes"`
	CreatedAt           time.Time `json:"created_at"`
	ExternalIDRotatedAt time.Time `json:"external_id_rotated_at"`
}

// Integration is a customer IAM role that stevedore may assume for one org.
type Integration struct {
	ID              string        `json:"id"`
	OrgID           string        `json:"org_id"`
	RoleARN         string        `json:"role_arn"`
	Account         string        `json:"account"` // from the ARN; sent as ExpectedBucketOwner
	Buckets         []string      `json:"buckets,omitempty"`
	Region          string        `json:"region,omitempty"`
	Status          string        `json:"status"`
	StatusReason    string        `json:"status_reason,omitempty"`
	Verified        bool          `json:"verified"`
	SourceIdentity  bool          `json:"source_identity,omitempty"`
	SessionTags     bool          `json:"session_tags,omitempty"`
	SessionDuration time.Duration `json:"session_duration,omitempty"`
	CreatedAt       time.Time     `json:"created_at"`
	UpdatedAt       time.Time     `json:"updated_at"`
}

// Config configures a Registry.
type Config struct {
	// ExternalIDPrefix starts every minted ExternalId; default "cap_org_".
	ExternalIDPrefix string
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Registry reads and writes the tenant registry.
type Registry struct {
	kv     jetstream.KeyValue
	prefix string
	now    func() time.Time
}

// Open binds the registry to its KV bucket, which schema.Topology.Ensure creates.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Registry, error) {
	kv, err := js.KeyValue(ctx, schema.BucketRegistry)
	if err != nil {
		return nil, fmt.Errorf("open registry: %w", err)
	}
	if cfg.ExternalIDPrefix == "" {
		cfg.ExternalIDPrefix = "cap_org_"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Registry{kv: kv, prefix: cfg.ExternalIDPrefix, now: cfg.Now}, nil
}

func randHex(nBytes int) string {
	b := make([]byte, nBytes)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

// HashAPIKey returns the stored form of an API key.
func HashAPIKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

func orgKey(id string) string              { return "org." + id }
func apiKeyKey(hash string) string         { return "apikey." + hash }
func integrationKey(org, id string) string { return "integration." + org + "." + id }

// CreateOrg mints an org ID, an API key (returned once, stored hashed) and an
// ExternalId (prefix + 24 lowercase hex from crypto/rand).
func (r *Registry) CreateOrg(ctx context.Context, name string) (*Org, Secret, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return nil, "", errors.New("create org: name must be 1-200 characters")
	}
	now := r.now().UTC()
	org := &Org{
		ID: "org_" + randHex(8), Name: name, ExternalID: r.prefix + randHex(12),
		CreatedAt: now, ExternalIDRotatedAt: now,
	}
	key := Secret("stv_" + randHex(20))
	hash := HashAPIKey(key.Reveal())
	org.APIKeyHashes = []string{hash}
	if _, err := r.kv.Create(ctx, apiKeyKey(hash), []byte(org.ID)); err != nil {
		return nil, "", fmt.Errorf("create org: store api key: %w", err)
	}
	if err := r.create(ctx, orgKey(org.ID), org); err != nil {
		return nil, "", fmt.Errorf("create org: %w", err)
	}
	return org, key, nil
}

// Org returns an organization by ID.
func (r *Registry) Org(ctx context.Context, id string) (*Org, error) {
	var org Org
	if _, err := r.get(ctx, orgKey(id), &org); err != nil {
		return nil, fmt.Errorf("org %s: %w", id, err)
	}
	return &org, nil
}

// Authenticate returns the org an API key belongs to, or ErrNotFound.
func (r *Registry) Authenticate(ctx context.Context, apiKey string) (*Org, error) {
	if apiKey == "" {
		return nil, ErrNotFound
	}
	e, err := r.kv.Get(ctx, apiKeyKey(HashAPIKey(apiKey)))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	return r.Org(ctx, string(e.Value()))
}

// CheckExternalID compares a caller-supplied ExternalId with the org's in
// constant time; a mismatch is ErrExternalIDInvalid.
func CheckExternalID(org *Org, supplied string) error {
	if subtle.ConstantTimeCompare([]byte(org.ExternalID), []byte(supplied)) != 1 {
		return ErrExternalIDInvalid
	}
	return nil
}

var roleARNRE = regexp.MustCompile(`^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):iam::(\d{12}):role/[\w+=,.@/-]{1,512}$`)

// ParseRoleARN validates an IAM role ARN and returns its account ID.
func ParseRoleARN(arn string) (account string, err error) {
	m := roleARNRE.FindStringSubmatch(arn)
	if m == nil {
		return "", fmt.Errorf("role_arn %q: want arn:<partition>:iam::<12-digit account>:role/<name>", arn)
	}
	return m[2], nil
}

// AddIntegration registers a role for an org. Until verification exists
// (see the credential-broker work), a registered integration is active but
// marked Verified=false.
func (r *Registry) AddIntegration(ctx context.Context, orgID, roleARN string, buckets []string) (*Integration, error) {
	if _, err := r.Org(ctx, orgID); err != nil {
		return nil, fmt.Errorf("add integration: %w", err)
	}
	account, err := ParseRoleARN(roleARN)
	if err != nil {
		return nil, fmt.Errorf("add integration: %w", err)
	}
	now := r.now().UTC()
	in := &Integration{
		ID: "int_" + randHex(8), OrgID: orgID, RoleARN: roleARN, Account: account, Buckets: buckets,
		Status: StatusActive, StatusReason: "registered; not yet verified", CreatedAt: now, UpdatedAt: now,
	}
	if err := r.create(ctx, integrationKey(orgID, in.ID), in); err != nil {
		return nil, fmt.Errorf("add integration: %w", err)
	}
	return in, nil
}

// Integration returns one integration of an org.
func (r *Registry) Integration(ctx context.Context, orgID, id string) (*Integration, error) {
	var in Integration
	if _, err := r.get(ctx, integrationKey(orgID, id), &in); err != nil {
		return nil, fmt.Errorf("integration %s: %w", id, err)
	}
	return &in, nil
}

// Integrations lists an org's integrations.
func (r *Registry) Integrations(ctx context.Context, orgID string) ([]*Integration, error) {
	lister, err := r.kv.ListKeysFiltered(ctx, "integration."+orgID+".*")
	if err != nil {
		return nil, fmt.Errorf("list integrations: %w", err)
	}
	var out []*Integration
	for k := range lister.Keys() {
		var in Integration
		if _, err := r.get(ctx, k, &in); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return nil, err
		}
		out = append(out, &in)
	}
	return out, nil
}

// IntegrationByRole finds an org's integration for a role ARN.
func (r *Registry) IntegrationByRole(ctx context.Context, orgID, roleARN string) (*Integration, error) {
	ins, err := r.Integrations(ctx, orgID)
	if err != nil {
		return nil, err
	}
	for _, in := range ins {
		if in.RoleARN == roleARN {
			return in, nil
		}
	}
	return nil, fmt.Errorf("integration for %s: %w", roleARN, ErrNotFound)
}

func (r *Registry) create(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = r.kv.Create(ctx, key, data)
	return err
}

func (r *Registry) get(ctx context.Context, key string, v any) (uint64, error) {
	e, err := r.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return 0, err
	}
	return e.Revision(), json.Unmarshal(e.Value(), v)
}
