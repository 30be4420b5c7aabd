package creds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/aws/smithy-go"

	"github.com/stevedore-dev/stevedore/schema"
)

// Classified is an error class with an actionable hint.
type Classified struct {
	Class schema.ErrorClass
	Code  string // the AWS error code, when there is one
	Hint  string
}

// Retryable reports whether redelivering the message may succeed.
func (c Classified) Retryable() bool { return c.Class.Retryable() }

// Classify maps an error from STS or S3 to its class. Errors wrapped in an
// *AssumeError came from STS; others are taken as S3's.
func Classify(err error) Classified {
	if err == nil {
		return Classified{}
	}
	var ae *AssumeError
	fromSTS := errors.As(err, &ae)
	code := ""
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	msg := strings.ToLower(err.Error())
	var lt *localThrottle
	switch {
	case errors.As(err, &lt):
		return Classified{schema.ClassThrottled, "RateLimited", "this worker's AssumeRole rate limit was reached; retried with backoff"}
	case code == "Throttling" || code == "ThrottlingException" || code == "SlowDown" || code == "RequestLimitExceeded" || code == "TooManyRequestsException":
		return Classified{schema.ClassThrottled, code, "AWS is throttling requests; stevedore backs off and retries"}
	case fromSTS && (code == "InvalidClientTokenId" || code == "SignatureDoesNotMatch" || code == "ExpiredToken" || code == "IncompleteSignature" || code == "MissingAuthenticationToken" || code == "InvalidAccessKeyId"):
		return Classified{schema.ClassOurCredentials, code, "stevedore's own AWS identity was rejected by STS; this is an operator problem, not the customer's: check the worker's credentials"}
	case fromSTS && (code == "AccessDenied" || code == "NoSuchEntity" || code == "AccessDeniedException"):
		return Classified{schema.ClassTenantAuth, code, "AssumeRole was refused. AWS does not say why; check (1) the role exists, (2) its trust policy's Principal is stevedore's role ARN, (3) its sts:ExternalId condition equals your organization's ExternalId exactly"}
	case fromSTS && code == "RegionDisabledException":
		return Classified{schema.ClassTenantAuth, code, "STS is not activated in this region for the customer's account; activate it in IAM account settings or use another region"}
	case fromSTS && code == "ValidationError":
		return Classified{schema.ClassPermanent, code, "AssumeRole parameters were rejected (session duration over the role's maximum, or policy too large)"}
	case code == "ExpiredToken" || code == "InvalidAccessKeyId" || code == "TokenRefreshRequired":
		return Classified{schema.ClassStaleToken, code, "the cached session expired; stevedore re-assumes the role"}
	case code == "KMS.AccessDeniedException" || strings.Contains(msg, "kms"):
		return Classified{schema.ClassKMS, code, "the object is KMS-encrypted and the role may not decrypt it: add kms:Decrypt on the key to the role's permissions policy and allow the role in the key policy"}
	case code == "AccessDenied" || code == "AllAccessDisabled" || code == "InvalidBucketState":
		return Classified{schema.ClassTenantPermission, code, "S3 refused the assumed role: check the role's permissions policy allows s3:ListBucket on arn:aws:s3:::<bucket> and s3:GetObject on arn:aws:s3:::<bucket>/*"}
	case code == "NoSuchKey" || code == "NotFound" || code == "NoSuchBucket" || code == "NoSuchVersion":
		return Classified{schema.ClassNotFound, code, "the object or bucket does not exist (deleted since it was listed, or a wrong name)"}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return Classified{schema.ClassTransient, code, "timed out; retried"}
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return Classified{schema.ClassTransient, code, "network error; retried"}
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		return Classified{schema.ClassTransient, code, "AWS answered with a server error; retried"}
	}
	if fromSTS {
		return Classified{schema.ClassTransient, code, "AssumeRole failed; retried"}
	}
	if code != "" {
		return Classified{schema.ClassPermanent, code, "S3 refused the request"}
	}
	return Classified{schema.ClassTransient, code, "unexpected error; retried"}
}

// PublicMessage is err as a tenant may read it: an AWS error's operation,
// code and message (never a request ID or host name), stevedore's own
// classified or decode errors as they are, and for anything else (network,
// DNS, timeouts, Go errors that can carry our resolver's address or other
// internals) only its class. The raw error goes to stevedore's logs only.
func PublicMessage(err error) string {
	if err == nil {
		return ""
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		msg := apiErr.ErrorCode()
		if m := apiErr.ErrorMessage(); m != "" {
			msg += ": " + m
		}
		var op *smithy.OperationError
		if errors.As(err, &op) {
			msg = op.OperationName + ": " + msg
		}
		return msg
	}
	var ce *schema.ClassError
	var de *schema.DecodeError
	if errors.As(err, &ce) || errors.As(err, &de) {
		return err.Error()
	}
	c := Classify(err)
	switch c.Class {
	case schema.ClassTransient:
		return "AWS could not be reached or did not answer in time (transient); details are in stevedore's logs"
	case schema.ClassThrottled:
		return "throttled; details are in stevedore's logs"
	}
	return fmt.Sprintf("%s error; details are in stevedore's logs", c.Class)
}

// ClassifyError gives err its class, hint and stable code, once, as the
// schema's one error type: the class err carries (schema.Known) is kept;
// anything else is classified by the AWS error taxonomy (Classify). The
// result wraps err: its message is err's, and errors.Is/As see through it.
// It is the worker runner's Config.Classify.
func ClassifyError(err error) *schema.ClassError {
	f := &schema.ClassError{Err: err}
	var aws Classified
	if k := schema.Known(err); k != nil {
		f.Class, f.Hint = k.Class, k.Hint
	} else {
		aws = Classify(err)
		f.Class, f.Hint = aws.Class, aws.Hint
	}
	f.Code = errorCode(err, f.Class, aws.Code)
	return f
}

// errorCode is the stable code of err, of class (as ClassifyError found
// it) and AWS error code awsCode ("" when none).
func errorCode(err error, class schema.ErrorClass, awsCode string) string {
	var ce *schema.ClassError
	if errors.As(err, &ce) {
		switch {
		case ce.Class == schema.ClassMaxDeliver:
			return schema.CodeMaxDeliveries
		case ce.Code == CodeOrgDisabled, ce.Code == schema.CodeSidecarInvalid, ce.Code == schema.CodeTagsDenied:
			return ce.Code
		case ce.Code == CodeIntegrationNotActive || ce.Code == CodeBucketNotAllowed || ce.Code == CodeIntegrationNotFound:
			return schema.CodeIntegration
		}
	}
	var de *schema.DecodeError
	if errors.As(err, &de) {
		return schema.CodeInvalidMessage
	}
	if schema.IsOverLimit(err) || class == schema.ClassInternal {
		return schema.CodeInternalLimit
	}
	var ae *AssumeError
	switch {
	case class == schema.ClassTenantAuth && errors.As(err, &ae):
		return schema.CodeAssumeRoleDenied
	case class == schema.ClassTenantPermission:
		return schema.CodeAccessDenied
	case class == schema.ClassKMS:
		return schema.CodeKMSDenied
	case class == schema.ClassNotFound && awsCode == "NoSuchBucket":
		return schema.CodeNoSuchBucket
	case class == schema.ClassNotFound:
		return schema.CodeNoSuchKey
	case class == schema.ClassThrottled:
		return schema.CodeThrottled
	case class == schema.ClassTransient, class == schema.ClassStaleToken:
		return schema.CodeUnavailable
	case class == schema.ClassOurCredentials:
		return schema.CodeOurCredentials
	}
	return schema.CodeInternal
}
