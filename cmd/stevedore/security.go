package main

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// loadKEK reads the key-encryption key for static AWS keys: 32 bytes, as
// base64 or hex, from the file at path or else from STEVEDORE_KEK. None
// configured is not an error: static keys are then refused. The key is never
// a flag value (it would show in ps).
func loadKEK(path string) ([]byte, error) {
	raw := os.Getenv("STEVEDORE_KEK")
	src := "STEVEDORE_KEK"
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--kek-file: %w", err)
		}
		raw, src = string(b), path
	}
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, nil
	}
	if k, err := hex.DecodeString(raw); err == nil && len(k) == 32 {
		return k, nil
	}
	if k, err := base64.StdEncoding.DecodeString(raw); err == nil && len(k) == 32 {
		return k, nil
	}
	return nil, fmt.Errorf("%s: the KEK must be 32 bytes as 64 hex digits or base64", src)
}

// stsClient is our own identity's STS client: at most two attempts, since S3
// retries × STS retries multiply.
func stsClient(cfg aws.Config) *sts.Client {
	return sts.NewFromConfig(cfg, func(o *sts.Options) { o.RetryMaxAttempts = 2 })
}

// newVerifier builds the integration verifier; the development override for
// emulators is announced loudly every time it is on.
// sessionNaming is how RoleSessionNames are built (--session-prefix, --session-name).
type sessionNaming struct{ prefix, template string }

func newVerifier(cfg aws.Config, pathStyle bool, names sessionNaming, devEmulatorSTS bool, reg *registry.Registry, log *slog.Logger) *creds.Verifier {
	if devEmulatorSTS {
		log.Warn("DEVELOPMENT OVERRIDE ON: verification accepts an STS that ignores ExternalId (MinIO); a role whose trust policy lacks the ExternalId condition would be accepted. Never use --dev-emulator-sts in production.")
	}
	return &creds.Verifier{
		STS: stsClient(cfg), Identity: cfg.Credentials, AWS: cfg, S3PathStyle: pathStyle, SessionPrefix: names.prefix, SessionTemplate: names.template, DevEmulatorSTS: devEmulatorSTS,
		Resolver: &creds.Resolver{Registry: reg, AWS: cfg, S3PathStyle: pathStyle, SessionPrefix: names.prefix, SessionTemplate: names.template},
	}
}
