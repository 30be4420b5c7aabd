// Package creds is the credential broker: it turns "org X needs to read bucket
// B under prefix P" into AWS credentials for the customer's role, assumed with
// the org's ExternalId and a session policy scoped to B/P, and caches them so
// that a credential key costs at most one AssumeRole per credential lifetime
// per process, whatever the message rate.
//
// One cached source exists per Key (role ARN, ExternalId, session name,
// session-policy hash, duration, STS region). Each is an aws.CredentialsCache
// around stscreds.AssumeRoleProvider (a bare provider calls STS on every
// request); the cache's own single flight means concurrent callers share one
// STS call. Entries live in an LRU bounded by Config.MaxEntries with expiry
// after Config.IdleTTL.
//
// A *Broker is safe for concurrent use.
package creds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	lru "github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Broker. Zero values take the defaults in the comments.
type Config struct {
	// STS is the client used for AssumeRole (an *sts.Client built from our
	// own identity, the default credential chain). Required.
	STS stscreds.AssumeRoleAPIClient
	// Duration of each assumed session; default 1 hour (also the cap when our
	// own identity is itself a role session, "role chaining"). MinIO needs ≥ 15 min.
	Duration time.Duration
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
	// Registerer receives the broker's metrics; nil means none.
	Registerer prometheus.Registerer
}

// Request says which role to assume and for what.
type Request struct {
	RoleARN     string
	ExternalID  string // the org's, from the registry; never from a message
	SessionName string // see SessionName
	Policy      string // session policy JSON; see SessionPolicy
}

// Key identifies one cached credential source.
type Key struct {
	RoleARN, ExternalID, SessionName, PolicyHash, Region string
	Duration                                             time.Duration
}

func (k Key) String() string {
	return k.RoleARN + "|" + k.ExternalID + "|" + k.SessionName + "|" + k.PolicyHash + "|" + k.Region + "|" + strconv.FormatInt(int64(k.Duration), 10)
}

// Broker hands out cached, scoped credentials.
type Broker struct {
	cfg     Config
	mu      sync.Mutex
	entries *lru.LRU[string, *aws.CredentialsCache]
	m       *metrics
}

// New validates cfg and returns a Broker.
func New(cfg Config) (*Broker, error) {
	if cfg.STS == nil {
		return nil, errors.New("creds: Config.STS is required")
	}
	if cfg.Duration == 0 {
		cfg.Duration = time.Hour
	}
	if cfg.Duration < 15*time.Minute || cfg.Duration > 12*time.Hour {
		return nil, fmt.Errorf("creds: Duration %s must be between 15m and 12h", cfg.Duration)
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
	b := &Broker{cfg: cfg, m: newMetrics(cfg.Registerer)}
	b.entries = lru.NewLRU[string, *aws.CredentialsCache](cfg.MaxEntries, nil, cfg.IdleTTL)
	return b, nil
}

func (b *Broker) key(req Request) Key {
	h := sha256.Sum256([]byte(req.Policy))
	return Key{RoleARN: req.RoleARN, ExternalID: req.ExternalID, SessionName: req.SessionName,
		PolicyHash: hex.EncodeToString(h[:8]), Region: b.cfg.Region, Duration: b.cfg.Duration}
}

// Provider returns the cached credential source for req, creating it
// atomically on first use. It never calls STS itself; Retrieve does, once per
// credential lifetime.
func (b *Broker) Provider(req Request) aws.CredentialsProvider {
	k := b.key(req).String()
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.entries.Get(k); ok {
		b.m.requests.WithLabelValues("hit").Inc()
		return c
	}
	b.m.requests.WithLabelValues("miss").Inc()
	inner := stscreds.NewAssumeRoleProvider(&countingSTS{api: b.cfg.STS, m: b.m}, req.RoleARN, func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = req.SessionName
		o.Duration = b.cfg.Duration
		if req.ExternalID != "" {
			o.ExternalID = aws.String(req.ExternalID)
		}
		if req.Policy != "" {
			o.Policy = aws.String(req.Policy)
		}
	})
	c := aws.NewCredentialsCache(&timeoutProvider{inner: inner, timeout: b.cfg.Timeout}, func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = b.cfg.ExpiryWindow
		o.ExpiryWindowJitterFrac = 0.5
	})
	b.entries.Add(k, c)
	b.m.entries.Set(float64(b.entries.Len()))
	return c
}

// Retrieve resolves credentials for req before any S3 call, so an STS failure
// is reported as an *AssumeError and never mistaken for an S3 denial.
func (b *Broker) Retrieve(ctx context.Context, req Request) (aws.CredentialsProvider, error) {
	p := b.Provider(req)
	if _, err := p.Retrieve(ctx); err != nil {
		return nil, &AssumeError{RoleARN: req.RoleARN, Err: err}
	}
	return p, nil
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

// AssumeError is a failed AssumeRole.
type AssumeError struct {
	RoleARN string
	Err     error
}

func (e *AssumeError) Error() string { return fmt.Sprintf("assume role %s: %v", e.RoleARN, e.Err) }
func (e *AssumeError) Unwrap() error { return e.Err }

// timeoutProvider bounds each AssumeRole, because aws.CredentialsCache runs
// the refresh without the caller's deadline.
type timeoutProvider struct {
	inner   aws.CredentialsProvider
	timeout time.Duration
}

func (p *timeoutProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	return p.inner.Retrieve(ctx)
}

// countingSTS records every AssumeRole call in metrics.
type countingSTS struct {
	api stscreds.AssumeRoleAPIClient
	m   *metrics
}

func (c *countingSTS) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, opts ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	start := time.Now()
	out, err := c.api.AssumeRole(ctx, in, opts...)
	c.m.assumeDuration.Observe(time.Since(start).Seconds())
	result := "ok"
	if err != nil {
		result = string(Classify(&AssumeError{Err: err}).Class)
	}
	c.m.assume.WithLabelValues(result).Inc()
	return out, err
}

type metrics struct {
	assume         *prometheus.CounterVec
	assumeDuration prometheus.Histogram
	requests       *prometheus.CounterVec
	entries        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		assume: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_sts_assume_total",
			Help: "AssumeRole calls by result (ok or error class)."}, []string{"result"}),
		assumeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "stevedore_sts_assume_duration_seconds",
			Help: "AssumeRole latency.", Buckets: prometheus.DefBuckets}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_creds_requests_total",
			Help: "Credential source lookups by outcome (hit, miss)."}, []string{"outcome"}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stevedore_creds_entries",
			Help: "Cached credential sources."}),
	}
	if reg != nil {
		reg.MustRegister(m.assume, m.assumeDuration, m.requests, m.entries)
	}
	return m
}
