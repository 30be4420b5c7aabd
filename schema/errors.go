package schema

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrPermanent marks errors that no retry can fix. Test with errors.Is.
var ErrPermanent = errors.New("permanent")

// DecodeError reports why a message could not be decoded. It is permanent.
type DecodeError struct {
	Type   string // message type being decoded, e.g. "job"
	Reason string // short machine-readable reason: "invalid_json", "unsupported_version", "missing_field", "invalid_field", "too_large"
	Detail string // human-readable detail
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode %s: %s: %s", e.Type, e.Reason, e.Detail)
}

// Is makes errors.Is(err, ErrPermanent) true for decode errors.
func (e *DecodeError) Is(target error) bool { return target == ErrPermanent }

// ErrorClass is the class of a failure, carried on the wire in object
// events, job errors and dead letters (`error_class`). The class decides a
// message's outcome: see ErrorClass.Retryable.
type ErrorClass string

// Error classes, with their wire values.
const (
	ClassTenantAuth       ErrorClass = "tenant_auth"       // AssumeRole refused: trust policy, ExternalId or missing role
	ClassTenantPermission ErrorClass = "tenant_permission" // S3 refused the assumed role: permissions policy
	ClassKMS              ErrorClass = "kms"               // KMS key policy or kms:Decrypt missing
	ClassOurCredentials   ErrorClass = "our_credentials"   // our own identity is broken: page us
	ClassThrottled        ErrorClass = "throttled"         // slow down and retry
	ClassTransient        ErrorClass = "transient"         // network, 5xx, timeouts: retry
	ClassNotFound         ErrorClass = "not_found"         // the object or bucket is gone
	ClassStaleToken       ErrorClass = "stale_token"       // cached session expired: invalidate and retry once
	ClassPermanent        ErrorClass = "permanent"         // anything else no retry can fix
	ClassMaxDeliver       ErrorClass = "max_deliver"       // delivered MaxDeliver times without being settled
	ClassInternal         ErrorClass = "internal"          // stevedore's own limit: a message or record it built is over a server limit; no retry helps, page us
)

// ErrorClasses lists every class, for metrics that start each one at zero
// (so that rates and alerts see a series before the first error).
var ErrorClasses = []ErrorClass{ClassTenantAuth, ClassTenantPermission, ClassKMS, ClassOurCredentials, ClassThrottled,
	ClassTransient, ClassNotFound, ClassStaleToken, ClassPermanent, ClassMaxDeliver, ClassInternal}

// Retryable reports whether redelivering a message that failed with class c
// may succeed.
func (c ErrorClass) Retryable() bool {
	switch c {
	case ClassThrottled, ClassTransient, ClassStaleToken, ClassOurCredentials:
		return true
	}
	return false
}

// ClassError is an error whose class is already known (a registry refusal,
// a policy that cannot be built): classification takes it as it is.
// errors.Is(err, ErrPermanent) holds when its class is not retryable.
type ClassError struct {
	Class ErrorClass
	Code  string // a stable machine-readable code, e.g. "bucket_not_allowed"; may be empty
	Hint  string // what the customer or operator should fix; may be empty
	Err   error
}

// Known is the class and hint err carries without looking at where it
// came from (nil when it carries none): its own *ClassError's, a decode
// error's (ErrPermanent: permanent), or, for a message or record over a
// NATS size limit, ClassInternal (an operator problem, not the customer's).
// The result has no Err and no Code.
func Known(err error) *ClassError {
	var ce *ClassError
	switch {
	case errors.As(err, &ce):
		return &ClassError{Class: ce.Class, Hint: ce.Hint}
	case errors.Is(err, ErrPermanent):
		return &ClassError{Class: ClassPermanent}
	case IsOverLimit(err):
		return &ClassError{Class: ClassInternal, Hint: "a message or record stevedore built is over a NATS size limit: an operator problem, not the customer's"}
	}
	return nil
}

// Errorf returns a *ClassError of class c with a formatted message (%w wraps).
func Errorf(c ErrorClass, format string, args ...any) error {
	return &ClassError{Class: c, Err: fmt.Errorf(format, args...)}
}

func (e *ClassError) Error() string { return e.Err.Error() }
func (e *ClassError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrPermanent) true for classes no retry can fix.
func (e *ClassError) Is(target error) bool { return target == ErrPermanent && !e.Class.Retryable() }

// JetStream API error codes that mean "no room": a stream's limits with
// DiscardNew (maximum messages/bytes, JSStreamStoreFailedF) or the server's
// resources (JSInsufficientResourcesErr).
const (
	jsErrStoreFailed           = 10077
	jsErrInsufficientResources = 10023
)

// IsBackpressure reports whether a publish was refused because JetStream is
// full (a stream at its limits, the server out of resources) or did not
// answer at all (no stream responded): the caller should slow down and try
// again later (HTTP 503 with Retry-After, the SQS bridge pauses). Decided by
// JetStream's API error codes, not by the error text.
func IsBackpressure(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jsErrStoreFailed || apiErr.ErrorCode == jsErrInsufficientResources
	}
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

// Stable error codes of failed objects and jobs (`error_code`), for programs
// to switch on; the message and hint are for people.
const (
	CodeAccessDenied     = "access_denied"        // S3 refused the assumed role (permissions policy)
	CodeAssumeRoleDenied = "assume_role_denied"   // STS refused: trust policy, ExternalId, or no such role
	CodeKMSDenied        = "kms_denied"           // the object's KMS key may not be used
	CodeNoSuchBucket     = "no_such_bucket"       // the bucket does not exist
	CodeNoSuchKey        = "no_such_key"          // the object is gone
	CodeThrottled        = "throttled"            // AWS or our own rate limit, after retries
	CodeUnavailable      = "aws_unavailable"      // network, timeouts, 5xx, after retries
	CodeOurCredentials   = "our_credentials"      // our own identity was refused or is missing: not the customer's problem
	CodeIntegration      = "integration_unusable" // the integration is not active or does not cover the bucket
	CodeInvalidMessage   = "invalid_message"      // a message could not be decoded
	CodeMaxDeliveries    = "max_deliveries"       // the worker crashed or timed out on every attempt
	CodeInternal         = "internal"             // anything else
	CodeInternalLimit    = "internal_limit"       // a message or record stevedore built is over a NATS limit: our failure, not the customer's
	CodeSidecarInvalid   = "sidecar_invalid"      // the document's metadata file cannot be read as metadata
	CodeTagsDenied       = "tags_denied"          // include_object_tags, and the role may not read the object's tags
)

// jsErrMessageTooLarge is JetStream's "message size exceeds maximum
// allowed" (JSStreamMessageExceedsMaximumErr), also a KV value over the
// bucket's limit.
const jsErrMessageTooLarge = 10054

// IsOverLimit reports whether err says a message or KV value stevedore
// built exceeds a NATS limit (the client's max payload or the stream's
// max message size): a failure of ours, not transient, not the tenant's.
func IsOverLimit(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrMessageTooLarge {
		return true
	}
	return errors.Is(err, nats.ErrMaxPayload)
}

// MaxReasonBytes bounds every reason and detail stevedore writes where a
// tenant's bytes can reach it (logs, object state, job errors, dead
// letters, audit details): a tenant controls part names, MIME types and
// ARNs, and must not fill a log line or a record with them.
const MaxReasonBytes = 256

// Bound returns s cut to at most MaxReasonBytes bytes of valid UTF-8,
// ending in "…" when cut.
func Bound(s string) string {
	if len(s) <= MaxReasonBytes {
		return s
	}
	return strings.ToValidUTF8(Prefix(s, MaxReasonBytes-len("…")), "") + "…"
}

// Prefix is s cut to at most n bytes, at a rune start.
func Prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Quote is a tenant-supplied string as it may appear inside a reason: Go
// quoted (control bytes and invalid UTF-8 escaped) and at most 64 bytes of
// it.
func Quote(s string) string {
	if len(s) > 64 {
		return strconv.Quote(Prefix(s, 64)) + "…"
	}
	return strconv.Quote(s)
}
