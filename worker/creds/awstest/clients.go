package awstest

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Our own identity (the worker's default credential chain) as the fakes know it.
const (
	OurAccessKeyID = "AKIASTEVEDOREWORKER1"
	OurSecretKey   = "stevedore-own-secret-access-key-0001"
	Principal      = "arn:aws:iam::999999999999:role/stevedore-worker"
	Account        = "123456789012" // the customer's account: owner of the buckets
)

// Start returns a fake STS that knows our identity and a fake S3 owned by Account.
func Start(t testing.TB) (*STS, *S3) {
	st := NewSTS(t, map[string]string{OurAccessKeyID: Principal})
	return st, NewS3(t, st, Account)
}

// noDelay makes retries immediate, so tests never wait on backoff.
var noDelay = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })

// Client is an STS client with our identity, two attempts and no retry
// delay, as the fleet configures it except for the delay.
func (s *STS) Client() *sts.Client {
	return sts.New(sts.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(s.URL),
		Credentials: credentials.NewStaticCredentialsProvider(OurAccessKeyID, OurSecretKey, ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 2
			o.Backoff = noDelay
			o.RateLimiter = noRateLimit{}
		}),
	})
}

// Config is the base AWS configuration for S3 clients against the fake S3.
func (s *S3) Config() aws.Config {
	return aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(s.URL), RetryMaxAttempts: 1}
}

type noRateLimit struct{}

func (noRateLimit) GetToken(context.Context, uint) (func() error, error) {
	return func() error { return nil }, nil
}
func (noRateLimit) AddTokens(uint) error { return nil }
