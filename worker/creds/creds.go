// Package creds is the credential broker: it turns "org X needs to read bucket
// B under prefix P" into AWS credentials for the customer's role, assumed with
// the org's ExternalId and a session policy scoped to B/P, and caches them so
// that a credential key costs at most one AssumeRole per credential lifetime
// per process, whatever the message rate.
//
// One cached source exists per Key (role ARN, ExternalId, session name,
// session-policy hash, duration, STS region). Each is an aws.CredentialsCache
// (a bare provider calls STS on every request) around an assumeProvider that
// is rate-limited per process, bounded by its own timeout and falls back to
// one hour when the role's MaxSessionDuration is shorter; the cache's single
// flight means concurrent callers share one STS call, and it refreshes before
// expiry with jitter. Entries live in an LRU bounded by Config.MaxEntries
// with expiry after Config.IdleTTL.
//
// Failures are cached too: a role whose AssumeRole failed is refused from a
// negative cache, keyed by (role, ExternalId, region), with a backoff that
// doubles on every further failure, so a broken trust policy costs a handful
// of STS calls per process instead of one per message, and the role is tried
// again by itself when the backoff ends.
//
// A *Broker is safe for concurrent use.
package creds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
	lru "github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/stevedore-dev/stevedore/schema"
)

// Config configures a Broker. Zero values take the defaults in the comments.
type Config struct {
	// STS is the client used for AssumeRole (an *sts.Client built from our
	// own identity, the default credential chain, with at most two attempts).
	// Required.
	STS stscreds.AssumeRoleAPIClient
	// Duration of each assumed session when the request does not ask for
	// one; default 1 hour. MinIO needs ≥ 15 min.
	Duration time.Duration
	// RoleChaining: our own identity is itself a role session, so AWS caps
	// chained sessions at one hour; longer requests are cut to one hour.
	// See DetectRoleChaining.
	RoleChaining bool
	// Timeout for one AssumeRole call; default 10 s. The SDK's credential
	// cache does not pass the caller's deadline through, so this is the bound.
	Timeout time.Duration
	// ExpiryWindow: credentials are refreshed this long before they expire,
	// minus up to 50 % jitter; default 5 minutes.
	ExpiryWindow time.Duration
	// MaxEntries bounds the number of cached credential sources; default 1024.
	MaxEntries int
	// IdleTTL drops a cached source this long after it was created; default 2 h.
	IdleTTL time.Duration
	// Region is the STS region recorded in keys; default "us-east-1".
	Region string
	// Rate and Burst limit AssumeRole calls per process; default 10/s, burst 20.
	Rate  rate.Limit
	Burst int
	// NegativeBase is the first backoff after a failed assume of a role; each
	// further failure doubles it, up to NegativeMax. Defaults 5 s and 5 min.
	NegativeBase, NegativeMax time.Duration
	// OnHealth is told when a role starts failing (h != nil) and when it
	// recovers (h == nil); the worker records it on the integration.
	OnHealth func(req Request, h *Classified)
	// Now is the clock of the negative cache; default time.Now.
	Now func() time.Time
	// Registerer receives the broker's metrics; nil means none.
	Registerer prometheus.Registerer
	// Shared shares refusals of tenants' roles across the fleet; nil keeps
	// them per process. See SharedVerdicts.
	Shared SharedVerdicts
}

// Request says which role to assume and for what.
type Request struct {
	RoleARN        string
	ExternalID     string        // the org's, from the registry; never from a message
	SessionName    string        // see SessionName
	Policy         string        // session policy JSON; see SessionPolicy
	Duration       time.Duration // 0: Config.Duration
	SourceIdentity string        // set only when the integration opted in
	Tags           map[string]string
	// Org and Integration identify the tenant for health reports; they are
	// not part of the cache key.
	Org, Integration string
}

// Key identifies one cached credential source.
type Key struct {
	RoleARN, ExternalID, SessionName, PolicyHash, Region string
	Duration                                             time.Duration
}

func (k Key) String() string {
	return k.RoleARN + "|" + k.ExternalID + "|" + k.SessionName + "|" + k.PolicyHash + "|" + k.Region + "|" + strconv.FormatInt(int64(k.Duration), 10)
}

// roleKey is the negative cache's key: whether AssumeRole is allowed does
// not depend on the session name or policy, so one denied role is one entry.
func (k Key) roleKey() string { return k.RoleARN + "|" + k.ExternalID + "|" + k.Region }

// negative is a cached failure of one role.
type negative struct {
	err      error
	until    time.Time
	failures int
}

// Broker hands out cached, scoped credentials.
type Broker struct {
	cfg      Config
	mu       sync.Mutex
	entries  *lru.LRU[string, *aws.CredentialsCache]
	negative map[string]*negative // by roleKey; bounded by the number of failing roles
	roleMax  sync.Map             // role ARN → time.Duration learned from a MaxSessionDuration refusal
	limiter  *fairLimiter
	m        *metrics
}

// New validates cfg and returns a Broker.
func New(cfg Config) (*Broker, error) {
	if cfg.STS == nil {
		return nil, errors.New("creds: Config.STS is required")
	}
	if cfg.Duration == 0 {
		cfg.Duration = time.Hour
	}
	if err := checkDuration(cfg.Duration); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.ExpiryWindow == 0 {
		cfg.ExpiryWindow = 5 * time.Minute
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 1024
	}
	if cfg.IdleTTL == 0 {
		cfg.IdleTTL = 2 * time.Hour
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Rate == 0 {
		cfg.Rate = 10
	}
	if cfg.Burst == 0 {
		cfg.Burst = 20
	}
	if cfg.NegativeBase == 0 {
		cfg.NegativeBase = 5 * time.Second
	}
	if cfg.NegativeMax == 0 {
		cfg.NegativeMax = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &Broker{cfg: cfg, m: newMetrics(cfg.Registerer), negative: map[string]*negative{},
		limiter: newFairLimiter(cfg.Rate, cfg.Burst)}
	b.entries = lru.NewLRU[string, *aws.CredentialsCache](cfg.MaxEntries, nil, cfg.IdleTTL)
	return b, nil
}

func checkDuration(d time.Duration) error {
	if d < 15*time.Minute || d > 12*time.Hour {
		return fmt.Errorf("creds: session duration %s must be between 15m and 12h", d)
	}
	return nil
}

// duration is the session length asked for req: the request's or the
// default, cut to one hour under role chaining.
func (b *Broker) duration(req Request) time.Duration {
	d := req.Duration
	if d == 0 {
		d = b.cfg.Duration
	}
	if b.cfg.RoleChaining && d > time.Hour {
		d = time.Hour
	}
	return d
}

func (b *Broker) key(req Request) Key {
	h := sha256.Sum256([]byte(req.Policy))
	return Key{RoleARN: req.RoleARN, ExternalID: req.ExternalID, SessionName: req.SessionName,
		PolicyHash: hex.EncodeToString(h[:8]), Region: b.cfg.Region, Duration: b.duration(req)}
}

// Provider returns the cached credential source for req, creating it
// atomically on first use. It never calls STS itself; Retrieve does, once per
// credential lifetime.
func (b *Broker) Provider(req Request) aws.CredentialsProvider {
	return b.provider(b.key(req), req)
}

func (b *Broker) provider(key Key, req Request) aws.CredentialsProvider {
	k := key.String()
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.entries.Get(k); ok {
		b.m.requests.WithLabelValues("hit").Inc()
		return c
	}
	b.m.requests.WithLabelValues("miss").Inc()
	c := aws.NewCredentialsCache(&assumeProvider{b: b, req: req, roleKey: key.roleKey()}, func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = b.cfg.ExpiryWindow
		o.ExpiryWindowJitterFrac = 0.5
	})
	b.entries.Add(k, c)
	b.m.entries.Set(float64(b.entries.Len()))
	return c
}

// Retrieve resolves credentials for req before any S3 call, so an STS failure
// is reported as an *AssumeError and never mistaken for an S3 denial. A role
// that failed recently fails again at once from the negative cache, without
// calling STS, until its backoff ends.
func (b *Broker) Retrieve(ctx context.Context, req Request) (aws.CredentialsProvider, error) {
	key := b.key(req)
	if n := b.negativeFor(key.roleKey()); n != nil {
		b.m.requests.WithLabelValues("negative").Inc()
		return nil, &AssumeError{RoleARN: req.RoleARN, Err: n.err, Cached: true, RetryAt: n.until}
	}
	p := b.provider(key, req)
	if _, err := p.Retrieve(ctx); err != nil {
		ae := &AssumeError{RoleARN: req.RoleARN, Err: err}
		var cf *cachedFailure
		if errors.As(err, &cf) {
			b.m.requests.WithLabelValues("negative").Inc()
			ae.Err, ae.Cached, ae.RetryAt = cf.n.err, true, cf.n.until
		} else if n := b.negativeFor(key.roleKey()); n != nil {
			ae.RetryAt = n.until
		}
		return nil, ae
	}
	return p, nil
}

// negativeFor returns the role's negative entry while its backoff lasts.
func (b *Broker) negativeFor(rk string) *negative {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := b.negative[rk]; n != nil && b.cfg.Now().Before(n.until) {
		c := *n
		return &c
	}
	return nil
}

// cachedFailure is the provider refusing to call STS during a backoff.
type cachedFailure struct{ n *negative }

func (e *cachedFailure) Error() string { return e.n.err.Error() }
func (e *cachedFailure) Unwrap() error { return e.n.err }

// fail records a failed assume in the negative cache with escalating
// backoff. It runs inside the credential cache's single flight, before the
// waiting callers are released, so no caller can slip past the entry.
func (b *Broker) fail(rk string, req Request, err error) negative {
	c := Classify(&AssumeError{RoleARN: req.RoleARN, Err: err})
	b.mu.Lock()
	n := b.negative[rk]
	first := n == nil
	if first {
		n = &negative{}
		b.negative[rk] = n
	}
	n.failures++
	backoff := b.cfg.NegativeBase << min(n.failures-1, 20)
	if backoff > b.cfg.NegativeMax || backoff <= 0 {
		backoff = b.cfg.NegativeMax
	}
	n.err, n.until = err, b.cfg.Now().Add(backoff)
	entry := *n
	b.mu.Unlock()
	if first && b.cfg.OnHealth != nil {
		b.cfg.OnHealth(req, &c)
	}
	return entry
}

// recovered drops the role's negative entry after a successful assume.
// It reports whether the role had been failing.
func (b *Broker) recovered(rk string, req Request) bool {
	b.mu.Lock()
	n := b.negative[rk]
	delete(b.negative, rk)
	b.mu.Unlock()
	if n != nil && b.cfg.OnHealth != nil {
		b.cfg.OnHealth(req, nil)
	}
	return n != nil
}

// Invalidate forces the next Retrieve for req to assume the role again (after
// S3 answered ExpiredToken or, from MinIO, InvalidAccessKeyId).
func (b *Broker) Invalidate(req Request) {
	b.mu.Lock()
	c, ok := b.entries.Get(b.key(req).String())
	b.mu.Unlock()
	if ok {
		c.Invalidate()
	}
}

// assumeProvider calls AssumeRole for one Request: rate-limited, bounded by
// its own timeout, and falling back to one hour when the role's
// MaxSessionDuration refuses the requested duration.
type assumeProvider struct {
	b       *Broker
	req     Request
	roleKey string // the negative cache's key for req
}

func (p *assumeProvider) Retrieve(parent context.Context) (aws.Credentials, error) {
	b := p.b
	rk := p.roleKey
	if n := b.negativeFor(rk); n != nil {
		return aws.Credentials{}, &cachedFailure{n}
	}
	if n := b.sharedVerdict(parent, rk, p.req); n != nil {
		return aws.Credentials{}, &cachedFailure{n}
	}
	ctx, cancel := context.WithTimeout(parent, b.cfg.Timeout)
	defer cancel()
	creds, err := p.retrieve(ctx)
	switch {
	case err == nil:
		if b.recovered(rk, p.req) {
			b.unshare(parent, rk)
		}
	case parent.Err() == nil: // not our caller giving up: the role's (or STS's) failure
		b.share(parent, rk, err, b.fail(rk, p.req, err))
	}
	return creds, err
}

func (p *assumeProvider) retrieve(ctx context.Context) (aws.Credentials, error) {
	b := p.b
	d := b.duration(p.req)
	if v, ok := b.roleMax.Load(p.req.RoleARN); ok && d > v.(time.Duration) {
		d = v.(time.Duration)
	}
	out, err := p.assume(ctx, d)
	if err != nil && d > time.Hour && isDurationRefusal(err) {
		b.roleMax.Store(p.req.RoleARN, time.Hour)
		b.m.durationFallbacks.Inc()
		out, err = p.assume(ctx, time.Hour)
	}
	if err != nil {
		return aws.Credentials{}, err
	}
	if out.Credentials == nil || out.Credentials.AccessKeyId == nil || out.Credentials.Expiration == nil {
		return aws.Credentials{}, errors.New("AssumeRole returned no credentials")
	}
	c := out.Credentials
	return aws.Credentials{AccessKeyID: *c.AccessKeyId, SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken: aws.ToString(c.SessionToken), Source: "stevedore-broker", CanExpire: true, Expires: *c.Expiration}, nil
}

func (p *assumeProvider) assume(ctx context.Context, d time.Duration) (*sts.AssumeRoleOutput, error) {
	if err := p.b.limiter.Wait(ctx, p.req.Org); err != nil {
		p.b.m.assume.WithLabelValues(string(schema.ClassThrottled)).Inc()
		return nil, &localThrottle{err}
	}
	in := &sts.AssumeRoleInput{RoleArn: aws.String(p.req.RoleARN), RoleSessionName: aws.String(p.req.SessionName),
		DurationSeconds: aws.Int32(int32(d / time.Second))}
	if p.req.ExternalID != "" {
		in.ExternalId = aws.String(p.req.ExternalID)
	}
	if p.req.Policy != "" {
		in.Policy = aws.String(p.req.Policy)
	}
	if p.req.SourceIdentity != "" {
		in.SourceIdentity = aws.String(p.req.SourceIdentity)
	}
	for _, k := range slices.Sorted(maps.Keys(p.req.Tags)) {
		in.Tags = append(in.Tags, ststypes.Tag{Key: aws.String(k), Value: aws.String(p.req.Tags[k])})
	}
	start := time.Now()
	out, err := p.b.cfg.STS.AssumeRole(ctx, in)
	p.b.m.assumeDuration.Observe(time.Since(start).Seconds())
	result := "ok"
	if err != nil {
		result = string(Classify(&AssumeError{Err: err}).Class)
	}
	p.b.m.assume.WithLabelValues(result).Inc()
	return out, err
}

// isDurationRefusal recognises STS's ValidationError for a DurationSeconds
// over the role's MaxSessionDuration (or over the role-chaining limit).
func isDurationRefusal(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ValidationError" {
		return false
	}
	m := apiErr.ErrorMessage()
	return strings.Contains(m, "MaxSessionDuration") || strings.Contains(m, "DurationSeconds")
}

// localThrottle is our own rate limiter refusing to wait past the deadline.
type localThrottle struct{ err error }

func (e *localThrottle) Error() string {
	return "AssumeRole rate limit of this process reached: " + e.err.Error()
}

// DetectRoleChaining asks STS who we are; an assumed-role identity means
// every customer session is a chained one, capped at one hour by AWS.
func DetectRoleChaining(ctx context.Context, api interface {
	GetCallerIdentity(context.Context, *sts.GetCallerIdentityInput, ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error)
}) (chained bool, arn string, err error) {
	out, err := api.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return false, "", err
	}
	arn = aws.ToString(out.Arn)
	return strings.Contains(arn, ":assumed-role/"), arn, nil
}

// AssumeError is a failed AssumeRole.
type AssumeError struct {
	RoleARN string
	Err     error
	Cached  bool      // answered from the negative cache, without calling STS
	RetryAt time.Time // when the broker will try STS for this role again
}

func (e *AssumeError) Error() string { return fmt.Sprintf("assume role %s: %v", e.RoleARN, e.Err) }
func (e *AssumeError) Unwrap() error { return e.Err }

type metrics struct {
	assume            *prometheus.CounterVec
	assumeDuration    prometheus.Histogram
	requests          *prometheus.CounterVec
	entries           prometheus.Gauge
	durationFallbacks prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		assume: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_sts_assume_total",
			Help: "AssumeRole calls by result (ok or error class)."}, []string{"result"}),
		assumeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "stevedore_sts_assume_duration_seconds",
			Help: "AssumeRole latency.", Buckets: prometheus.DefBuckets}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_creds_requests_total",
			Help: "Credential lookups by outcome (hit, miss, negative: refused from the negative cache, shared_negative: refused on another worker's verdict)."}, []string{"outcome"}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stevedore_creds_entries",
			Help: "Cached credential sources."}),
		durationFallbacks: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_sts_duration_fallbacks_total",
			Help: "AssumeRole retried with one hour after the role's MaxSessionDuration refused the requested duration."}),
	}
	// Every result starts at zero, so alerts see the series before the first call.
	m.assume.WithLabelValues("ok")
	for _, c := range schema.ErrorClasses {
		m.assume.WithLabelValues(string(c))
	}
	for _, o := range []string{"hit", "miss", "negative", "shared_negative"} {
		m.requests.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.assume, m.assumeDuration, m.requests, m.entries, m.durationFallbacks)
	}
	return m
}
