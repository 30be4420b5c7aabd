package creds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/aws/smithy-go"

	"github.com/stevedore-dev/stevedore/schema"
)

// SharedVerdicts is where a fleet shares its verdicts on roles that STS
// refused for the tenant's reasons (trust policy, ExternalId, missing role):
// one process's refusal holds every process back for the same backoff, so a
// tenant whose trust policy is broken costs one AssumeRole per backoff step
// for the fleet, not per process. Nil (Config.Shared) keeps verdicts per
// process. Keys are hashes of the role key; values hold the refusal's code
// and message (never a credential).
type SharedVerdicts interface {
	Load(ctx context.Context, key string) (*Verdict, error) // nil, nil: none
	Store(ctx context.Context, key string, v Verdict) error
	Clear(ctx context.Context, key string) error
}

// Verdict is one shared refusal.
type Verdict struct {
	Code     string    `json:"code"`
	Message  string    `json:"message"`
	Failures int       `json:"failures"`
	Until    time.Time `json:"until"`
}

// sharedKey names a role key in SharedVerdicts.
func sharedKey(rk string) string {
	sum := sha256.Sum256([]byte(rk))
	return "role_" + hex.EncodeToString(sum[:16])
}

// VerdictError is a refusal another process saw, standing in for STS's
// answer (same code and message, so it is classified the same).
type VerdictError struct{ Code, Message string }

func (e *VerdictError) Error() string {
	return "api error " + e.Code + ": " + e.Message + " (seen by another worker)"
}
func (e *VerdictError) ErrorCode() string             { return e.Code }
func (e *VerdictError) ErrorMessage() string          { return e.Message }
func (e *VerdictError) ErrorFault() smithy.ErrorFault { return smithy.FaultClient }

// sharedVerdict returns the fleet's verdict on the role while it lasts, and
// keeps it as this process's own negative entry. It is asked only before an
// AssumeRole call, so it costs a read per session refresh, not per task.
func (b *Broker) sharedVerdict(ctx context.Context, rk string, req Request) *negative {
	if b.cfg.Shared == nil {
		return nil
	}
	v, err := b.cfg.Shared.Load(ctx, sharedKey(rk))
	if err != nil || v == nil || !b.cfg.Now().Before(v.Until) {
		return nil // an unreadable verdict is no verdict: STS decides
	}
	n := &negative{err: &VerdictError{Code: v.Code, Message: v.Message}, until: v.Until, failures: v.Failures}
	b.mu.Lock()
	_, had := b.negative[rk]
	if !had {
		b.negative[rk] = n
	}
	b.mu.Unlock()
	b.m.requests.WithLabelValues("shared_negative").Inc()
	if !had && b.cfg.OnHealth != nil {
		c := Classify(&AssumeError{RoleARN: req.RoleARN, Err: n.err})
		b.cfg.OnHealth(req, &c)
	}
	c := *n
	return &c
}

// share records a tenant's refusal for the fleet (best effort: without it
// each process backs off on its own, as before).
func (b *Broker) share(ctx context.Context, rk string, err error, n negative) {
	if b.cfg.Shared == nil || Classify(&AssumeError{Err: err}).Class != schema.ClassTenantAuth {
		return
	}
	v := Verdict{Code: "AccessDenied", Message: err.Error(), Failures: n.failures, Until: n.until}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		v.Code, v.Message = apiErr.ErrorCode(), apiErr.ErrorMessage()
	}
	_ = b.cfg.Shared.Store(context.WithoutCancel(ctx), sharedKey(rk), v)
}

// unshare clears the fleet's verdict once this process's assume succeeded.
func (b *Broker) unshare(ctx context.Context, rk string) {
	if b.cfg.Shared != nil {
		_ = b.cfg.Shared.Clear(context.WithoutCancel(ctx), sharedKey(rk))
	}
}
