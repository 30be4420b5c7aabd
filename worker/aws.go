package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// tenant is what the registry says about the org and integration a message names.
type tenant struct {
	org *registry.Org
	in  *registry.Integration
}

// owner is the ExpectedBucketOwner of every S3 call: the role's account
// (unknown, and so not sent, for static keys).
func (t *tenant) owner() *string {
	if t.in.Account == "" {
		return nil
	}
	return aws.String(t.in.Account)
}

// resolve looks the org and integration up in the registry: the role ARN and
// ExternalId come from there, never from the message body. Only an active
// integration is used, and only for the buckets and prefixes it allows.
func (w *Worker) resolve(ctx context.Context, orgID, integrationID, bucket, key string) (*tenant, error) {
	org, err := w.cfg.Registry.Org(ctx, orgID)
	if err != nil {
		return nil, schema.Errorf(schema.ClassTenantAuth, "resolve org: %w", err)
	}
	in, err := w.cfg.Registry.Integration(ctx, orgID, integrationID)
	if err != nil {
		return nil, schema.Errorf(schema.ClassTenantAuth, "resolve integration: %w", err)
	}
	if in.Status != registry.StatusActive {
		return nil, schema.Errorf(schema.ClassTenantAuth, "integration %s is %s: %s", in.ID, in.Status, in.StatusReason)
	}
	if !in.Allows(bucket, key) {
		return nil, schema.Errorf(schema.ClassTenantPermission, "integration %s does not allow s3://%s/%s", in.ID, bucket, key)
	}
	return &tenant{org: org, in: in}, nil
}

// credRequest is the broker request for reading bucket/prefix on behalf of
// t: the session policy allows exactly that scope.
func (w *Worker) credRequest(t *tenant, scope, bucket, prefix string) (creds.Request, error) {
	policy, err := creds.SessionPolicy(bucket, prefix)
	if err != nil {
		return creds.Request{}, schema.Errorf(schema.ClassPermanent, "%w", err)
	}
	req := creds.Request{
		RoleARN: t.in.RoleARN, ExternalID: t.org.ExternalID, Policy: policy, Duration: t.in.SessionDuration,
		SessionName: creds.SessionName(w.cfg.SessionPrefix, t.org.ID, scope),
		Org:         t.org.ID, Integration: t.in.ID,
	}
	if t.in.SourceIdentity {
		req.SourceIdentity = creds.SessionName(w.cfg.SessionPrefix, t.org.ID, "")
	}
	if t.in.SessionTags {
		req.Tags = map[string]string{"stevedore-org": t.org.ID, "stevedore-scope": scope}
	}
	return req, nil
}

// credentials returns the provider for t: the broker's cached, scoped
// session for a role, or the sealed static keys opened for this call.
func (w *Worker) credentials(ctx context.Context, t *tenant, req creds.Request) (aws.CredentialsProvider, error) {
	if t.in.Kind != registry.KindStaticKeys {
		return w.cfg.Broker.Retrieve(ctx, req)
	}
	secret, err := w.cfg.Registry.StaticSecret(ctx, t.in)
	if err != nil {
		return nil, schema.Errorf(schema.ClassOurCredentials, "%w", err)
	}
	return credentials.NewStaticCredentialsProvider(t.in.AccessKeyID, secret.Reveal(), ""), nil
}

// withS3 runs call with an S3 client holding t's credentials, resolved first
// so an STS failure is never mistaken for an S3 denial. A stale-token answer
// (ExpiredToken; InvalidAccessKeyId from MinIO) invalidates the cached
// credentials and retries once.
func (w *Worker) withS3(ctx context.Context, t *tenant, req creds.Request, region string, call func(*s3.Client) error) error {
	for attempt := 0; ; attempt++ {
		provider, err := w.credentials(ctx, t, req)
		if err != nil {
			return err
		}
		if region == "" {
			region = t.in.Region
		}
		err = call(creds.NewS3(w.cfg.AWS, provider, region, w.cfg.S3PathStyle))
		if err != nil && attempt == 0 && t.in.Kind != registry.KindStaticKeys && creds.Classify(err).Class == schema.ClassStaleToken {
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

// RecordHealth returns the broker's Config.OnHealth: it records the
// broker's view of a role on its integration (the API and job errors carry
// the reason). The broker calls it on transitions only.
func RecordHealth(reg *registry.Registry, log *slog.Logger) func(creds.Request, *creds.Classified) {
	return func(req creds.Request, c *creds.Classified) {
		if req.Org == "" || req.Integration == "" {
			return
		}
		var h *registry.Health
		if c != nil {
			h = &registry.Health{Class: string(c.Class), Code: c.Code, Hint: c.Hint, Since: time.Now().UTC()}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := reg.SetHealth(ctx, "worker", req.Org, req.Integration, h); err != nil {
			log.Warn("could not record integration health", "org", req.Org, "integration", req.Integration, "error", err)
		}
	}
}
