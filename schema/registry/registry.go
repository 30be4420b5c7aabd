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
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

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

// Org is one customer organization.
type Org struct {
	ID                  string    `json:"id"`
	Name                string    `json:"name"`
	ExternalID          string    `json:"external_id"`
	APIKeyHashes        []string  `json:"api_key_hashes,omitempty"` // of versions before API key IDs; see APIKey
	CreatedAt           time.Time `json:"created_at"`
	ExternalIDRotatedAt time.Time `json:"external_id_rotated_at"`
	// DisabledAt is set while the org is disabled: its API keys are
	// refused and its messages are not processed.
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
}

// Config configures a Registry.
type Config struct {
	// ExternalIDPrefix starts every minted ExternalId; default "cap_org_".
	ExternalIDPrefix string
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// KEK is the 32-byte key-encryption key for static AWS keys (AES-256-GCM).
	// Without one, static-key integrations are refused (ErrNoKEK).
	KEK []byte
	// Logger reports audit writes that failed; default discards.
	Logger *slog.Logger
}

// Registry reads and writes the tenant registry.
type Registry struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	prefix string
	now    func() time.Time
	kek    cipher.AEAD // nil: static keys refused
	// refusals bounds what tenants can write into AUDIT by probing: see
	// refusal and auditLimiter.
	refusals *auditLimiter
	fpKey    []byte // HMAC key of credential fingerprints, derived from the KEK
	log      *slog.Logger
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
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{js: js, kv: kv, prefix: cfg.ExternalIDPrefix, now: cfg.Now, log: cfg.Logger, refusals: newAuditLimiter()}
	if len(cfg.KEK) > 0 {
		if r.kek, err = newAEAD(cfg.KEK); err != nil {
			return nil, err
		}
		fp := sha256.Sum256(append([]byte("stevedore credential fingerprint\x00"), cfg.KEK...))
		r.fpKey = fp[:]
	}
	return r, nil
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
func (r *Registry) CreateOrg(ctx context.Context, actor, name string) (*Org, Secret, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return nil, "", errors.New("create org: name must be 1-200 characters")
	}
	now := r.now().UTC()
	org := &Org{
		ID: "org_" + randHex(8), Name: name, ExternalID: r.prefix + randHex(12),
		CreatedAt: now, ExternalIDRotatedAt: now,
	}
	if err := r.create(ctx, orgKey(org.ID), org); err != nil {
		return nil, "", fmt.Errorf("create org: %w", err)
	}
	// Not CreateAPIKey: it reads the org back, which a replicated KV may
	// not serve yet right after the write.
	_, key, err := r.createAPIKey(ctx, actor, org.ID)
	if err != nil {
		return nil, "", fmt.Errorf("create org: %w", err)
	}
	r.Audit(ctx, org.ID, actor, "org.create", "ok", "name "+org.Name)
	return org, key, nil
}

// RotateExternalID mints a new ExternalId for an org. The old value stops
// working at once: every request and every credential lookup reads the
// registry, and the broker's cache keys include the ExternalId.
func (r *Registry) RotateExternalID(ctx context.Context, actor, orgID string) (*Org, error) {
	var org Org
	err := r.update(ctx, orgKey(orgID), &org, func() error {
		org.ExternalID = r.prefix + randHex(12)
		org.ExternalIDRotatedAt = r.now().UTC()
		return nil
	})
	if err != nil {
		r.Audit(ctx, orgID, actor, "org.rotate_external_id", "failed", err.Error())
		return nil, fmt.Errorf("rotate external id: %w", err)
	}
	r.Audit(ctx, orgID, actor, "org.rotate_external_id", "ok", "")
	return &org, nil
}

// Org returns an organization by ID.
func (r *Registry) Org(ctx context.Context, id string) (*Org, error) {
	var org Org
	if _, err := r.get(ctx, orgKey(id), &org); err != nil {
		return nil, fmt.Errorf("org %s: %w", id, err)
	}
	return &org, nil
}

// Authenticate returns the org an API key belongs to: ErrNotFound for a key
// that is unknown or revoked, ErrOrgDisabled while the org is disabled. It
// records when the key was last used (at most once a minute).
func (r *Registry) Authenticate(ctx context.Context, apiKey string) (*Org, error) {
	if apiKey == "" {
		return nil, ErrNotFound
	}
	hash := HashAPIKey(apiKey)
	e, err := r.kv.Get(ctx, apiKeyKey(hash))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	var k APIKey
	if json.Unmarshal(e.Value(), &k) != nil || k.Org == "" {
		k = APIKey{Org: string(e.Value())} // a key of versions before API key IDs
	}
	org, err := r.Org(ctx, k.Org)
	if err != nil {
		return nil, err
	}
	if org.DisabledAt != nil {
		return nil, ErrOrgDisabled
	}
	if now := r.now().UTC(); k.ID != "" && (k.LastUsedAt == nil || now.Sub(*k.LastUsedAt) > time.Minute) {
		k.LastUsedAt = &now
		if data, err := json.Marshal(&k); err == nil {
			_, _ = r.kv.Update(ctx, apiKeyKey(hash), data, e.Revision()) // best effort: a lost race only delays the time
		}
	}
	return org, nil
}

// ErrOrgDisabled: the organization is disabled (stevedore org disable).
var ErrOrgDisabled = errors.New("organization disabled")

// APIKey is one API key of an org, as stored under its hash and listed: it
// never holds the key itself.
type APIKey struct {
	ID         string     `json:"id"`
	Org        string     `json:"org"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

func apiKeyIDKey(org, id string) string { return "apikeyid." + org + "." + id }

// CreateAPIKey mints another API key for org: returned once, stored hashed.
func (r *Registry) CreateAPIKey(ctx context.Context, actor, orgID string) (*APIKey, Secret, error) {
	if _, err := r.Org(ctx, orgID); err != nil {
		return nil, "", err
	}
	return r.createAPIKey(ctx, actor, orgID)
}

func (r *Registry) createAPIKey(ctx context.Context, actor, orgID string) (*APIKey, Secret, error) {
	key := Secret("stv_" + randHex(20))
	hash := HashAPIKey(key.Reveal())
	k := &APIKey{ID: "key_" + randHex(8), Org: orgID, CreatedAt: r.now().UTC()}
	if err := r.create(ctx, apiKeyKey(hash), k); err != nil {
		return nil, "", fmt.Errorf("store api key: %w", err)
	}
	if _, err := r.kv.Create(ctx, apiKeyIDKey(orgID, k.ID), []byte(hash)); err != nil {
		return nil, "", fmt.Errorf("store api key: %w", err)
	}
	r.Audit(ctx, orgID, actor, "apikey.create", "ok", k.ID)
	return k, key, nil
}

// APIKeys lists org's API keys (not the legacy ones without an ID).
func (r *Registry) APIKeys(ctx context.Context, orgID string) ([]*APIKey, error) {
	lister, err := r.kv.ListKeysFiltered(ctx, apiKeyIDKey(orgID, "*"))
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	var out []*APIKey
	for k := range lister.Keys() {
		e, err := r.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var key APIKey
		if _, err := r.get(ctx, apiKeyKey(string(e.Value())), &key); err == nil {
			out = append(out, &key)
		}
	}
	slices.SortFunc(out, func(a, b *APIKey) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// RevokeAPIKey deletes one of org's API keys: the next request with it is 401.
func (r *Registry) RevokeAPIKey(ctx context.Context, actor, orgID, keyID string) error {
	e, err := r.kv.Get(ctx, apiKeyIDKey(orgID, keyID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("api key %s of %s: %w", keyID, orgID, ErrNotFound)
	}
	if err != nil {
		return err
	}
	if err := r.kv.Purge(ctx, apiKeyKey(string(e.Value()))); err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	if err := r.kv.Purge(ctx, apiKeyIDKey(orgID, keyID)); err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	r.Audit(ctx, orgID, actor, "apikey.revoke", "ok", keyID)
	return nil
}

// Orgs lists every organization, oldest first.
func (r *Registry) Orgs(ctx context.Context) ([]*Org, error) {
	lister, err := r.kv.ListKeysFiltered(ctx, orgKey("*"))
	if err != nil {
		return nil, fmt.Errorf("list orgs: %w", err)
	}
	var out []*Org
	for k := range lister.Keys() {
		var org Org
		if _, err := r.get(ctx, k, &org); err == nil {
			out = append(out, &org)
		}
	}
	slices.SortFunc(out, func(a, b *Org) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// SetDisabled disables (or enables) an org: while disabled its API keys are
// refused and workers do not process its messages.
func (r *Registry) SetDisabled(ctx context.Context, actor, orgID string, disabled bool) (*Org, error) {
	var org Org
	err := r.update(ctx, orgKey(orgID), &org, func() error {
		if disabled && org.DisabledAt == nil {
			now := r.now().UTC()
			org.DisabledAt = &now
		}
		if !disabled {
			org.DisabledAt = nil
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("org %s: %w", orgID, err)
	}
	action := "org.enable"
	if disabled {
		action = "org.disable"
	}
	r.Audit(ctx, orgID, actor, action, "ok", "")
	return &org, nil
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
		return "", fmt.Errorf("role_arn %s: want arn:<partition>:iam::<12-digit account>:role/<name>", schema.Quote(arn))
	}
	return m[2], nil
}

func (r *Registry) create(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = r.kv.Create(ctx, key, data)
	return err
}

// update reads key into v, applies change and writes it back with
// compare-and-set, retrying on a concurrent write.
func (r *Registry) update(ctx context.Context, key string, v any, change func() error) error {
	for attempt := 0; attempt < 10; attempt++ {
		rev, err := r.get(ctx, key, v)
		if err != nil {
			return err
		}
		if err := change(); err != nil {
			return err
		}
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err = r.kv.Update(ctx, key, data, rev); err == nil {
			return nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) && !strings.Contains(err.Error(), "wrong last sequence") {
			return err
		}
	}
	return fmt.Errorf("update %s: too many concurrent writers", key)
}

// Audit writes one record to the immutable AUDIT stream; detail must never
// hold a secret. A failed write is logged, not returned: an audit outage must
// not turn a refusal into an acceptance or block a revocation.
func (r *Registry) Audit(ctx context.Context, org, actor, action, outcome, detail string) {
	if refusal(action, outcome) {
		ok, suppressed := r.refusals.allow(org + "\x00" + action)
		if !ok {
			return // counted; the next record of this kind says how many
		}
		if suppressed > 0 {
			detail += fmt.Sprintf(" (+%d similar records suppressed)", suppressed)
		}
	}
	rec := &schema.AuditRecord{Org: org, Actor: actor, Action: action, Outcome: outcome, Detail: auditText(detail), At: r.now().UTC()}
	data, err := schema.Encode(rec)
	if err == nil {
		_, err = r.js.Publish(context.WithoutCancel(ctx), schema.AuditSubject(org), data)
	}
	if err != nil {
		r.log.Error("audit write failed", "org", org, "action", action, "outcome", outcome, "error", err)
	}
}

// auditText is detail as it may be written to AUDIT: valid UTF-8, control
// characters (a tenant's bytes can reach a detail) escaped, at most
// schema.MaxReasonBytes.
func auditText(detail string) string {
	detail = strings.ToValidUTF8(detail, "\uFFFD")
	if strings.IndexFunc(detail, unicode.IsControl) >= 0 {
		detail = strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return '?'
			}
			return r
		}, detail)
	}
	return schema.Bound(detail)
}

// missing is a key the registry does not hold: it reads "not found" (not
// the store's "nats: key not found" too, which operators read as a NATS
// fault) and is both ErrNotFound and the store's error to errors.Is.
type missing struct{ cause error }

func (m missing) Error() string   { return ErrNotFound.Error() }
func (m missing) Unwrap() []error { return []error{ErrNotFound, m.cause} }

func (r *Registry) get(ctx context.Context, key string, v any) (uint64, error) {
	e, err := r.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, missing{err}
		}
		return 0, err
	}
	return e.Revision(), json.Unmarshal(e.Value(), v)
}

// JetStream is the JetStream context the registry was opened on (operator
// commands reach the other buckets through it).
func (r *Registry) JetStream() jetstream.JetStream { return r.js }

// AuditEntry is one AUDIT record with its stream sequence.
type AuditEntry struct {
	Seq uint64 `json:"seq"`
	schema.AuditRecord
}

// AuditTrail returns up to limit AUDIT records since the given time, oldest
// first: org's ("" for every org's). limit ≤ 0 means 100.
func (r *Registry) AuditTrail(ctx context.Context, org string, since time.Time, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	subject := "audit.>"
	if org != "" {
		subject = schema.AuditSubject(org)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := r.js.OrderedConsumer(ctx, schema.StreamAudit, cfg)
	if err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	var out []AuditEntry
	for len(out) < limit {
		batch, err := cons.Fetch(min(limit-len(out), 256), jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			return nil, fmt.Errorf("read audit: %w", err)
		}
		n, caughtUp := 0, false
		for m := range batch.Messages() {
			n++
			var rec schema.AuditRecord
			if json.Unmarshal(m.Data(), &rec) != nil {
				continue
			}
			e := AuditEntry{AuditRecord: rec}
			if md, err := m.Metadata(); err == nil {
				e.Seq, caughtUp = md.Sequence.Stream, md.NumPending == 0
			}
			out = append(out, e)
		}
		if n == 0 || caughtUp {
			break
		}
	}
	return out, nil
}

// refusal reports whether an audit record is one a tenant's requests can
// produce at will (refused requests, forged or foreign notifications):
// those are rate-limited per org and action, the rest never are.
func refusal(action, outcome string) bool {
	return outcome == "refused" || strings.HasSuffix(action, ".refused") || action == "notification.unconfirmed" || action == "auth.org_mismatch"
}

// Refusal records per org and action: a burst of AuditRefusalBurst, then
// one per AuditRefusalEvery; the ones in between are counted and the next
// record written says how many.
const (
	AuditRefusalBurst = 20
	AuditRefusalEvery = 6 * time.Second
)

type auditLimiter struct {
	mu   sync.Mutex
	keys *lru.Cache[string, *refusalBucket]
}

type refusalBucket struct {
	lim        *rate.Limiter
	suppressed int
}

func newAuditLimiter() *auditLimiter {
	c, _ := lru.New[string, *refusalBucket](10_000)
	return &auditLimiter{keys: c}
}

func (a *auditLimiter) allow(key string) (ok bool, suppressed int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, found := a.keys.Get(key)
	if !found {
		b = &refusalBucket{lim: rate.NewLimiter(rate.Every(AuditRefusalEvery), AuditRefusalBurst)}
		a.keys.Add(key, b)
	}
	if !b.lim.Allow() {
		b.suppressed++
		return false, 0
	}
	n := b.suppressed
	b.suppressed = 0
	return true, n
}
