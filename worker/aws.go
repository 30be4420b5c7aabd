package worker

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// tenant is what the registry says about the org and role a message names.
type tenant struct {
	org *registry.Org
	in  *registry.Integration
}

// resolve looks the org and integration up in the registry: the role ARN and
// ExternalId come from there, never from the message body.
func (w *Worker) resolve(ctx context.Context, orgID, integrationID string) (*tenant, error) {
	org, err := w.cfg.Registry.Org(ctx, orgID)
	if err != nil {
		return nil, permanentf(creds.ClassTenantAuth, "resolve org: %w", err)
	}
	in, err := w.cfg.Registry.Integration(ctx, orgID, integrationID)
	if err != nil {
		return nil, permanentf(creds.ClassTenantAuth, "resolve integration: %w", err)
	}
	if in.Status != registry.StatusActive {
		return nil, permanentf(creds.ClassTenantAuth, "integration %s is %s: %s", in.ID, in.Status, in.StatusReason)
	}
	return &tenant{org: org, in: in}, nil
}

// credRequest is the broker request for reading bucket/prefix on behalf of
// t: the session policy allows exactly that scope.
func (w *Worker) credRequest(t *tenant, scope, bucket, prefix string) (creds.Request, error) {
	policy, err := creds.SessionPolicy(bucket, prefix)
	if err != nil {
		return creds.Request{}, permanentf(creds.ClassPermanent, "%w", err)
	}
	return creds.Request{
		RoleARN: t.in.RoleARN, ExternalID: t.org.ExternalID, Policy: policy,
		SessionName: creds.SessionName(w.cfg.SessionPrefix, t.org.ID, scope),
	}, nil
}

// withS3 runs call with an S3 client holding req's credentials, resolved
// first so an STS failure is never mistaken for an S3 denial. A stale-token
// answer (ExpiredToken; InvalidAccessKeyId from MinIO) invalidates the cached
// credentials and retries once.
func (w *Worker) withS3(ctx context.Context, req creds.Request, region string, call func(*s3.Client) error) error {
	for attempt := 0; ; attempt++ {
		provider, err := w.cfg.Broker.Retrieve(ctx, req)
		if err != nil {
			return err
		}
		client := s3.NewFromConfig(w.cfg.AWS, func(o *s3.Options) {
			o.Credentials = provider
			if region != "" {
				o.Region = region
			}
			o.UsePathStyle = w.cfg.S3PathStyle
			// MinIO and some S3-compatible stores return no checksum; the SDK
			// would log a line per GET about skipping validation.
			o.DisableLogOutputChecksumValidationSkipped = true
		})
		err = call(client)
		if err != nil && attempt == 0 && creds.Classify(err).Class == creds.ClassStaleToken {
			w.cfg.Broker.Invalidate(req)
			w.m.staleRetries.Inc()
			continue
		}
		if err != nil {
			return fmt.Errorf("s3: %w", err)
		}
		return nil
	}
}
