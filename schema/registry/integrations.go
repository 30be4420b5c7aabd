package registry

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stevedore-dev/stevedore/schema"
)

// Integration statuses. Only active integrations are used.
const (
	StatusPending = "pending" // registered, not verified yet
	StatusActive  = "active"  // verified (or static keys supplied by the customer)
	StatusFailed  = "failed"  // verification failed; StatusReason says which step
	StatusRevoked = "revoked" // revoked by the customer or an operator; never used again
)

// Integration kinds.
const (
	KindRole       = "role"        // cross-account role assumed with the org's ExternalId
	KindStaticKeys = "static_keys" // an access key pair, sealed under the KEK
)

// More lookup errors.
var (
	ErrNoKEK  = errors.New("static AWS keys need a key-encryption key (STEVEDORE_KEK), and none is configured")
	ErrExists = errors.New("already exists")
	// ErrLimit: the request is over one of the limits below (the API
	// answers 422 with the limit).
	ErrLimit = errors.New("over a limit")
)

// Integration is a customer AWS identity stevedore may use for one org. It
// never holds a secret: a static key's secret is sealed under its own KV key.
type Integration struct {
	ID          string `json:"id"`
	OrgID       string `json:"org_id"`
	Kind        string `json:"kind"`
	RoleARN     string `json:"role_arn,omitempty"`
	Account     string `json:"account,omitempty"` // from the ARN; sent as ExpectedBucketOwner
	AccessKeyID string `json:"access_key_id,omitempty"`
	// CredentialRef is the sealed secret most recently supplied for a
	// static-key integration (what verification probes); jobs carry their own.
	CredentialRef   string        `json:"credential_ref,omitempty"`
	Buckets         []string      `json:"buckets,omitempty"`  // empty: any bucket the role can read
	Prefixes        []string      `json:"prefixes,omitempty"` // empty: any prefix
	Region          string        `json:"region,omitempty"`
	KMSKeyARN       string        `json:"kms_key_arn,omitempty"`
	Status          string        `json:"status"`
	StatusReason    string        `json:"status_reason,omitempty"`
	StatusChangedAt time.Time     `json:"status_changed_at"`
	VerifiedAt      *time.Time    `json:"verified_at,omitempty"`  // the last passing verification
	Verification    *Verification `json:"verification,omitempty"` // the last report
	// Unhealthy is set by workers when the broker's negative cache holds an
	// error for this role (AssumeRole denied, throttled …) and cleared when an
	// assume succeeds again; the integration stays active so it recovers by
	// itself once the customer fixes the role.
	Unhealthy       *Health       `json:"unhealthy,omitempty"`
	SourceIdentity  bool          `json:"source_identity,omitempty"`
	SessionTags     bool          `json:"session_tags,omitempty"`
	SessionDuration time.Duration `json:"session_duration,omitempty"`
	CreatedAt       time.Time     `json:"created_at"`
	UpdatedAt       time.Time     `json:"updated_at"`
}

// Health is why an integration is failing right now.
type Health struct {
	Class string    `json:"class"`
	Code  string    `json:"code,omitempty"`
	Hint  string    `json:"hint"`
	Since time.Time `json:"since"`
}

// Verification is the report of one verification run.
type Verification struct {
	At     time.Time          `json:"at"`
	OK     bool               `json:"ok"`
	Reason string             `json:"reason,omitempty"` // code of the first failed step
	Steps  []VerificationStep `json:"steps"`
}

// Step statuses.
const (
	StepPassed     = "passed"
	StepFailed     = "failed"
	StepSkipped    = "skipped"
	StepOverridden = "accepted_by_dev_override" // only with the development override for emulators
)

// VerificationStep is one check, with a hint a customer can act on.
type VerificationStep struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// Allows reports whether the integration may be used for bucket and a key
// or prefix in it.
func (in *Integration) Allows(bucket, key string) bool {
	if len(in.Buckets) > 0 && !slices.Contains(in.Buckets, bucket) {
		return false
	}
	if len(in.Prefixes) == 0 {
		return true
	}
	for _, p := range in.Prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// Spec is what a customer asks to register.
type Spec struct {
	RoleARN         string
	Buckets         []string
	Prefixes        []string
	Region          string
	KMSKeyARN       string
	SourceIdentity  bool
	SessionTags     bool
	SessionDuration time.Duration // 0: the fleet's default
}

var kmsARNPrefix = "arn:"

// Limits on what an org may register. Every worker holds every
// integration in memory (registry.View), and registering one reads the
// org's others, so neither may grow without bound: at these limits an org's
// integrations are at most ~2.7 MB.
const (
	MaxIntegrationsPerOrg     = 25   // not revoked
	MaxIntegrationRecords     = 250  // revoked ones included
	MaxBucketsPerIntegration  = 100  // buckets named by one integration
	MaxPrefixesPerIntegration = 100  // prefixes named by one integration
	MaxPrefixBytes            = 1024 // one prefix (S3's own limit on a key)
)

// checkScope refuses bucket and prefix lists over the limits.
func checkScope(buckets, prefixes []string) error {
	if len(buckets) > MaxBucketsPerIntegration {
		return fmt.Errorf("%d buckets: an integration names at most %d: %w", len(buckets), MaxBucketsPerIntegration, ErrLimit)
	}
	if len(prefixes) > MaxPrefixesPerIntegration {
		return fmt.Errorf("%d prefixes: an integration names at most %d: %w", len(prefixes), MaxPrefixesPerIntegration, ErrLimit)
	}
	for _, p := range prefixes {
		if len(p) > MaxPrefixBytes {
			return fmt.Errorf("a prefix of %d bytes: at most %d: %w", len(p), MaxPrefixBytes, ErrLimit)
		}
	}
	return nil
}

// roomFor refuses a new integration when all, the org's integrations, are
// as many as it may have.
func roomFor(all []*Integration) error {
	live := 0
	for _, in := range all {
		if in.Status != StatusRevoked {
			live++
		}
	}
	if live >= MaxIntegrationsPerOrg {
		return fmt.Errorf("the organization has %d integrations (not revoked), the most it may have; revoke one first: %w", live, ErrLimit)
	}
	if len(all) >= MaxIntegrationRecords {
		return fmt.Errorf("the organization has %d integration records, the most it may have: %w", len(all), ErrLimit)
	}
	return nil
}

// AddIntegration registers a role for an org as pending; verification makes
// it active. Registering the same role twice is ErrExists.
func (r *Registry) AddIntegration(ctx context.Context, actor, orgID string, spec Spec) (*Integration, error) {
	fail := func(err error) (*Integration, error) {
		r.Audit(ctx, orgID, actor, "integration.create", "refused", err.Error())
		return nil, fmt.Errorf("add integration: %w", err)
	}
	if _, err := r.Org(ctx, orgID); err != nil {
		return nil, fmt.Errorf("add integration: %w", err)
	}
	account, err := ParseRoleARN(spec.RoleARN)
	if err != nil {
		return fail(err)
	}
	if spec.KMSKeyARN != "" && (!strings.HasPrefix(spec.KMSKeyARN, kmsARNPrefix) || !strings.Contains(spec.KMSKeyARN, ":kms:")) {
		return fail(fmt.Errorf("kms_key_arn %s is not a KMS key ARN", schema.Quote(spec.KMSKeyARN)))
	}
	if spec.SessionDuration != 0 && (spec.SessionDuration < 15*time.Minute || spec.SessionDuration > 12*time.Hour) {
		return fail(fmt.Errorf("session duration %s must be between 15m and 12h", spec.SessionDuration))
	}
	if spec.Region != "" && !schema.ValidRegion(spec.Region) {
		return fail(fmt.Errorf("region %s is not an AWS region name", schema.Quote(spec.Region)))
	}
	if err := checkScope(spec.Buckets, spec.Prefixes); err != nil {
		return fail(err)
	}
	for _, b := range spec.Buckets {
		if !schema.ValidBucket(b) {
			return fail(fmt.Errorf("bucket %s is not a bucket name", schema.Quote(b)))
		}
	}
	// The org's integrations are read once: for the limit and the role.
	all, err := r.Integrations(ctx, orgID)
	if err != nil {
		return nil, fmt.Errorf("add integration: %w", err)
	}
	if err := roomFor(all); err != nil {
		return fail(err)
	}
	if existing := pick(all, byRole(spec.RoleARN)); existing != nil && existing.Status != StatusRevoked {
		return fail(fmt.Errorf("role %s is integration %s: %w", spec.RoleARN, existing.ID, ErrExists))
	}
	now := r.now().UTC()
	in := &Integration{
		ID: "int_" + randHex(8), OrgID: orgID, Kind: KindRole, RoleARN: spec.RoleARN, Account: account,
		Buckets: spec.Buckets, Prefixes: spec.Prefixes, Region: spec.Region, KMSKeyARN: spec.KMSKeyARN,
		Status: StatusPending, StatusReason: "registered; run verification", StatusChangedAt: now,
		SourceIdentity: spec.SourceIdentity, SessionTags: spec.SessionTags, SessionDuration: spec.SessionDuration,
		CreatedAt: now, UpdatedAt: now,
	}
	if err := r.create(ctx, integrationKey(orgID, in.ID), in); err != nil {
		return nil, fmt.Errorf("add integration: %w", err)
	}
	r.Audit(ctx, orgID, actor, "integration.create", "pending", in.ID+" "+in.RoleARN)
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

// Integrations lists an org's integrations, oldest first.
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
	slices.SortFunc(out, func(a, b *Integration) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// IntegrationByRole finds an org's integration for a role ARN, preferring
// one that is not revoked.
func (r *Registry) IntegrationByRole(ctx context.Context, orgID, roleARN string) (*Integration, error) {
	ins, err := r.Integrations(ctx, orgID)
	if err != nil {
		return nil, err
	}
	if found := pick(ins, byRole(roleARN)); found != nil {
		return found, nil
	}
	return nil, fmt.Errorf("integration for %s: %w", roleARN, ErrNotFound)
}

// byRole matches the role integration of roleARN.
func byRole(roleARN string) func(*Integration) bool {
	return func(in *Integration) bool { return in.Kind != KindStaticKeys && in.RoleARN == roleARN }
}

// pick is the integration among ins that match accepts, preferring one that
// is not revoked; nil when none does.
func pick(ins []*Integration, match func(*Integration) bool) *Integration {
	var found *Integration
	for _, in := range ins {
		if match(in) && (found == nil || found.Status == StatusRevoked) {
			found = in
		}
	}
	return found
}

// UpdateIntegration applies change with compare-and-set and stamps UpdatedAt.
func (r *Registry) UpdateIntegration(ctx context.Context, orgID, id string, change func(*Integration) error) (*Integration, error) {
	var in Integration
	err := r.update(ctx, integrationKey(orgID, id), &in, func() error {
		if err := change(&in); err != nil {
			return err
		}
		in.UpdatedAt = r.now().UTC()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("integration %s: %w", id, err)
	}
	return &in, nil
}

func (r *Registry) setStatus(in *Integration, status, reason string) {
	if in.Status != status {
		in.StatusChangedAt = r.now().UTC()
	}
	in.Status, in.StatusReason = status, reason
}

// RecordVerification stores a verification report: a passing report makes
// the integration active, a failing one failed with the report's reason. A
// revoked integration stays revoked.
func (r *Registry) RecordVerification(ctx context.Context, actor, orgID, id string, v *Verification) (*Integration, error) {
	in, err := r.UpdateIntegration(ctx, orgID, id, func(in *Integration) error {
		if in.Status == StatusRevoked {
			return fmt.Errorf("integration %s is revoked; register the role again", in.ID)
		}
		in.Verification = v
		if v.OK {
			at := v.At
			in.VerifiedAt, in.Unhealthy = &at, nil
			r.setStatus(in, StatusActive, "verified")
		} else {
			r.setStatus(in, StatusFailed, "verification failed: "+v.Reason)
		}
		return nil
	})
	outcome := "failed"
	if err == nil && v.OK {
		outcome = "ok"
	}
	detail := id + " " + v.Reason
	if err != nil {
		detail = err.Error()
	}
	r.Audit(ctx, orgID, actor, "integration.verify", outcome, detail)
	return in, err
}

// Revoke marks an integration revoked; it is never used again. Revoking twice
// is not an error.
func (r *Registry) Revoke(ctx context.Context, actor, orgID, id, reason string) (*Integration, error) {
	if reason == "" {
		reason = "revoked by " + actor
	}
	in, err := r.UpdateIntegration(ctx, orgID, id, func(in *Integration) error {
		r.setStatus(in, StatusRevoked, reason)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if in.Kind == KindStaticKeys {
		// The sealed secrets are no longer needed: the legacy record and
		// every content-addressed one.
		_ = r.kv.Purge(ctx, secretKey(orgID, id))
		if keys, err := r.kv.ListKeysFiltered(ctx, secretKey(orgID, id)+".*"); err == nil {
			for k := range keys.Keys() {
				if err := r.kv.Purge(ctx, k); err != nil {
					r.log.Warn("could not purge a sealed secret of a revoked integration", "org", orgID, "integration", id, "error", err)
				}
			}
		}
	}
	r.Audit(ctx, orgID, actor, "integration.revoke", "ok", id+": "+reason)
	return in, nil
}

// SetHealth records (h != nil) or clears (h == nil) an integration's current
// failure. It writes only on a transition, so a worker may call it freely.
func (r *Registry) SetHealth(ctx context.Context, actor, orgID, id string, h *Health) error {
	changed := false
	_, err := r.UpdateIntegration(ctx, orgID, id, func(in *Integration) error {
		changed = (in.Unhealthy == nil) != (h == nil) || (h != nil && in.Unhealthy.Code != h.Code)
		if !changed {
			return errUnchanged
		}
		in.Unhealthy = h
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	if err == nil && changed {
		if h != nil {
			r.Audit(ctx, orgID, actor, "integration.unhealthy", h.Class, id+" "+h.Code)
		} else {
			r.Audit(ctx, orgID, actor, "integration.recovered", "ok", id)
		}
	}
	return err
}

var errUnchanged = errors.New("unchanged")

func secretKey(org, id string) string { return "secret." + org + "." + id }

// credentialKey is where one sealed secret of a static-key integration is
// kept: content-addressed by its fingerprint, created once, never
// overwritten, so every job runs with exactly the secret it was submitted
// with, whatever later requests send.
func credentialKey(org, id, ref string) string { return "secret." + org + "." + id + "." + ref }

// fingerprint is a keyed hash (HMAC-SHA256 under a key derived from the
// KEK) of one secret: equal secrets share a record, and the reference
// reveals nothing about the secret without the KEK.
func (r *Registry) fingerprint(org, id, accessKeyID string, secret Secret) string {
	m := hmac.New(sha256.New, r.fpKey)
	m.Write([]byte(org + "\x00" + id + "\x00" + accessKeyID + "\x00" + secret.Reveal()))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// HasKEK reports whether static keys can be stored.
func (r *Registry) HasKEK() bool { return r.kek != nil }

func newAEAD(kek []byte) (cipher.AEAD, error) {
	if len(kek) != 32 {
		return nil, fmt.Errorf("registry: KEK must be 32 bytes (AES-256), got %d", len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// aad binds a sealed secret to its org, integration and access key ID, so a
// ciphertext copied to another record does not open.
func aad(org, id, accessKeyID string) []byte { return []byte(org + "\x00" + id + "\x00" + accessKeyID) }

// StaticKeys finds or creates the org's static-key integration for
// accessKeyID and seals secret under the KEK (nonce ‖ AES-256-GCM ciphertext)
// in a record of its own, addressed by the secret's fingerprint, which it
// returns as ref: jobs carry ref, so a later request with another secret for
// the same key ID never changes what an earlier job uses. Keys supplied by
// the customer are active at once: the job that uses them is their
// verification. Without a KEK it returns ErrNoKEK and stores nothing.
func (r *Registry) StaticKeys(ctx context.Context, actor, orgID, accessKeyID string, secret Secret, buckets []string) (in *Integration, ref string, err error) {
	if r.kek == nil {
		r.Audit(ctx, orgID, actor, "integration.static_keys", "refused", "no KEK configured")
		return nil, "", ErrNoKEK
	}
	if len(accessKeyID) < 16 || len(accessKeyID) > 128 || secret == "" || len(secret) > 256 {
		return nil, "", errors.New("static keys: aws_access_key_id (16-128 characters) and aws_secret_access_key are required")
	}
	if err := checkScope(buckets, nil); err != nil {
		return nil, "", err
	}
	all, err := r.Integrations(ctx, orgID)
	if err != nil {
		return nil, "", err
	}
	in = pick(all, func(in *Integration) bool { return in.Kind == KindStaticKeys && in.AccessKeyID == accessKeyID })
	if in == nil || in.Status == StatusRevoked {
		if err := roomFor(all); err != nil {
			return nil, "", err
		}
		now := r.now().UTC()
		in = &Integration{ID: "int_" + randHex(8), OrgID: orgID, Kind: KindStaticKeys, AccessKeyID: accessKeyID, Buckets: buckets,
			Status: StatusActive, StatusReason: "static keys supplied by the customer", StatusChangedAt: now, CreatedAt: now, UpdatedAt: now}
		// The reference is in the record from the start: reading a record
		// back right after creating it may miss on a replicated KV.
		in.CredentialRef = r.fingerprint(orgID, in.ID, accessKeyID, secret)
		if err := r.create(ctx, integrationKey(orgID, in.ID), in); err != nil {
			return nil, "", fmt.Errorf("static keys: %w", err)
		}
		r.Audit(ctx, orgID, actor, "integration.static_keys", "created", in.ID+" "+MaskKeyID(accessKeyID))
	}
	ref = r.fingerprint(orgID, in.ID, accessKeyID, secret)
	nonce := make([]byte, r.kek.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, "", err
	}
	sealed := r.kek.Seal(nonce, nonce, []byte(secret.Reveal()), aad(orgID, in.ID+"."+ref, accessKeyID))
	if _, err := r.kv.Create(ctx, credentialKey(orgID, in.ID, ref), sealed); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, "", fmt.Errorf("static keys: store sealed secret: %w", err)
	}
	if in.CredentialRef != ref {
		in, err = r.UpdateIntegration(ctx, orgID, in.ID, func(in *Integration) error { in.CredentialRef = ref; return nil })
		if err != nil {
			return nil, "", fmt.Errorf("static keys: %w", err)
		}
	}
	return in, ref, nil
}

// StaticSecret opens the sealed secret ref of a static-key integration (ref
// as StaticKeys returned it; "" opens the single record of versions before
// content addressing). Its only caller should be the code that builds an
// SDK credential provider.
func (r *Registry) StaticSecret(ctx context.Context, in *Integration, ref string) (Secret, error) {
	if r.kek == nil {
		return "", ErrNoKEK
	}
	key, bound := secretKey(in.OrgID, in.ID), in.ID
	if ref != "" {
		key, bound = credentialKey(in.OrgID, in.ID, ref), in.ID+"."+ref
	}
	e, err := r.kv.Get(ctx, key)
	if err != nil {
		return "", fmt.Errorf("static secret of %s: %w", in.ID, err)
	}
	sealed := e.Value()
	n := r.kek.NonceSize()
	if len(sealed) < n {
		return "", fmt.Errorf("static secret of %s: truncated", in.ID)
	}
	plain, err := r.kek.Open(nil, sealed[:n], sealed[n:], aad(in.OrgID, bound, in.AccessKeyID))
	if err != nil {
		return "", fmt.Errorf("static secret of %s: cannot open with this KEK (was it rotated?)", in.ID)
	}
	return Secret(plain), nil
}

// MaskKeyID shows only the first four and last four characters of an access key ID.
func MaskKeyID(id string) string {
	if len(id) <= 8 {
		return "****"
	}
	return id[:4] + "…" + id[len(id)-4:]
}
