package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// integrationFor is the integration an index request names: the org's
// integration for the role, or, with static keys, the org's static-key
// integration (created on first use, the secret sealed under the KEK). An
// unknown role is refused before any AWS call, and audited; whether the
// integration may be used is creds.Allowed's to say.
func (a *API) integrationFor(ctx context.Context, org *registry.Org, req *indexRequest) (in *registry.Integration, credentialRef string, err error) {
	if req.Auth == nil {
		// validate refused static keys already when there is no KEK.
		in, ref, err := a.cfg.Registry.StaticKeys(ctx, "api", org.ID, req.AccessKeyID, req.SecretAccessKey, nil)
		if err != nil {
			return nil, "", &apiError{http.StatusUnprocessableEntity, "invalid_static_keys", err.Error(), ""}
		}
		return in, ref, nil
	}
	in, err = a.cfg.Registry.IntegrationByRole(ctx, org.ID, req.Auth.RoleARN)
	if errors.Is(err, registry.ErrNotFound) {
		a.audit(ctx, org.ID, "index.refused", "unknown_role", req.Auth.RoleARN)
		return nil, "", &apiError{http.StatusForbidden, "integration_not_found", "role " + schema.Quote(req.Auth.RoleARN) + " is not an integration of this organization",
			"register and verify the role first: POST /v2/integrations/aws, then POST /v2/integrations/{id}/verify"}
	}
	if err != nil {
		return nil, "", err
	}
	return in, "", nil
}

func (a *API) notActive(ctx context.Context, org *registry.Org, in *registry.Integration) error {
	a.audit(ctx, org.ID, "index.refused", "integration_"+in.Status, in.ID)
	hint := map[string]string{
		registry.StatusPending: "verify the integration: POST /v2/integrations/" + in.ID + "/verify",
		registry.StatusFailed:  "fix what the verification report says, then verify again: POST /v2/integrations/" + in.ID + "/verify",
		registry.StatusRevoked: "the integration was revoked; register the role again",
	}[in.Status]
	return &apiError{http.StatusForbidden, "integration_not_active", "integration " + in.ID + " is " + in.Status + ": " + in.StatusReason, hint}
}

// integrationView is the public shape of an integration: never a secret,
// the access key ID masked.
func integrationView(in *registry.Integration) *registry.Integration {
	v := *in
	if v.AccessKeyID != "" {
		v.AccessKeyID = registry.MaskKeyID(v.AccessKeyID)
	}
	v.CredentialRef = ""
	if v.Verification != nil && v.Verification.Steps == nil {
		rep := *v.Verification
		rep.Steps = []registry.VerificationStep{}
		v.Verification = &rep
	}
	return &v
}

type createIntegrationRequest struct {
	RoleARN                string   `json:"role_arn"`
	Buckets                []string `json:"buckets"`
	Prefixes               []string `json:"prefixes"`
	KMSKeyARN              string   `json:"kms_key_arn"`
	Region                 string   `json:"region"`
	SourceIdentity         bool     `json:"source_identity"`
	SessionTags            bool     `json:"session_tags"`
	SessionDurationSeconds int      `json:"session_duration_seconds"`
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body over %d bytes", MaxBodyBytes), "send a smaller body"}
	}
	if optional && len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return jsonError(err)
	}
	return nil
}

// Policies are the documents a customer pastes into IAM for an integration.
type Policies struct {
	TrustPolicy       map[string]any `json:"trust_policy"`
	PermissionsPolicy map[string]any `json:"permissions_policy"`
	CloudFormation    map[string]any `json:"cloudformation_template"`
	// ObjectTagsStatement is added to the permissions policy to index with
	// include_object_tags.
	ObjectTagsStatement map[string]any `json:"object_tags_statement"`
}

// Map is the policies as the API answer and the CLI's --json carry them,
// for the caller to add its own fields to.
func (p Policies) Map() map[string]any {
	return map[string]any{"trust_policy": p.TrustPolicy, "permissions_policy": p.PermissionsPolicy, "cloudformation_template": p.CloudFormation,
		"object_tags_statement": p.ObjectTagsStatement}
}

// PoliciesFor builds the trust policy (principal: our role; condition: the
// org's ExternalId), the least-privilege permissions policy and a
// CloudFormation template creating the role.
func PoliciesFor(principalARN string, org *registry.Org, in *registry.Integration) Policies {
	return Policies{
		TrustPolicy:         creds.TrustPolicy(principalARN, org.ExternalID, in.SourceIdentity, in.SessionTags),
		PermissionsPolicy:   creds.PermissionsPolicy(in.Buckets, in.Prefixes, in.KMSKeyARN),
		CloudFormation:      creds.CloudFormation(principalARN, org.ExternalID, in.Buckets, in.Prefixes, in.KMSKeyARN, in.SourceIdentity, in.SessionTags),
		ObjectTagsStatement: creds.TagsStatement(in.Buckets, in.Prefixes),
	}
}

func (a *API) createIntegration(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	var req createIntegrationRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if a.cfg.PrincipalARN == "" {
		return &apiError{http.StatusServiceUnavailable, "principal_not_configured", "this deployment has no principal ARN to put in trust policies", "operators: set STEVEDORE_PRINCIPAL_ARN"}
	}
	for _, b := range req.Buckets {
		if !schema.ValidBucket(b) {
			return badRequest("invalid_bucket_name", fmt.Sprintf("%q is not a valid S3 bucket name", b), "")
		}
	}
	in, err := a.cfg.Registry.AddIntegration(r.Context(), "api", org.ID, registry.Spec{
		RoleARN: req.RoleARN, Buckets: req.Buckets, Prefixes: req.Prefixes, KMSKeyARN: req.KMSKeyARN, Region: req.Region,
		SourceIdentity: req.SourceIdentity, SessionTags: req.SessionTags, SessionDuration: time.Duration(req.SessionDurationSeconds) * time.Second,
	})
	if errors.Is(err, registry.ErrExists) {
		return &apiError{http.StatusConflict, "integration_exists", err.Error(), "use the existing integration, or revoke it first"}
	}
	if errors.Is(err, registry.ErrLimit) {
		return &apiError{http.StatusUnprocessableEntity, "limit_exceeded", err.Error(),
			fmt.Sprintf("an organization has at most %d integrations, each naming at most %d buckets and %d prefixes of at most %d bytes",
				registry.MaxIntegrationsPerOrg, registry.MaxBucketsPerIntegration, registry.MaxPrefixesPerIntegration, registry.MaxPrefixBytes)}
	}
	if err != nil {
		return badRequest("invalid_integration", err.Error(), "role_arn is arn:aws:iam::<12-digit account>:role/<name>")
	}
	answer := PoliciesFor(a.cfg.PrincipalARN, org, in).Map()
	answer["integration"], answer["external_id"] = integrationView(in), org.ExternalID
	answer["next"] = "create the role with these policies (or the CloudFormation template), then POST /v2/integrations/" + in.ID + "/verify"
	writeJSON(w, http.StatusCreated, answer)
	return nil
}

// organization shows the caller's org: the ExternalId to put in trust
// policies, and when it was last rotated. Never the API key hashes.
func (a *API) organization(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"org_id": org.ID, "name": org.Name, "external_id": org.ExternalID,
		"created_at": org.CreatedAt, "external_id_rotated_at": org.ExternalIDRotatedAt})
	return nil
}

func (a *API) listIntegrations(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	ins, err := a.cfg.Registry.Integrations(r.Context(), org.ID)
	if err != nil {
		return err
	}
	out := []*registry.Integration{}
	for _, in := range ins {
		out = append(out, integrationView(in))
	}
	writeJSON(w, http.StatusOK, map[string]any{"integrations": out})
	return nil
}

// orgIntegration loads the integration named in the path, within the caller's org.
func (a *API) orgIntegration(r *http.Request) (*registry.Org, *registry.Integration, error) {
	org, err := a.authenticate(r)
	if err != nil {
		return nil, nil, err
	}
	id := r.PathValue("id")
	notFound := &apiError{http.StatusNotFound, "integration_not_found", "no integration " + id + " in this organization", "GET /v2/integrations lists them"}
	if !schema.ValidID(id) {
		return nil, nil, notFound
	}
	in, err := a.cfg.Registry.Integration(r.Context(), org.ID, id)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, nil, notFound
	}
	return org, in, err
}

func (a *API) getIntegration(w http.ResponseWriter, r *http.Request) error {
	_, in, err := a.orgIntegration(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, integrationView(in))
	return nil
}

func (a *API) verifyIntegration(w http.ResponseWriter, r *http.Request) error {
	org, in, err := a.orgIntegration(r)
	if err != nil {
		return err
	}
	var req struct {
		Bucket string `json:"bucket"`
	}
	if err := decodeBody(w, r, &req, true); err != nil {
		return err
	}
	if in.Status == registry.StatusRevoked {
		return &apiError{http.StatusConflict, "integration_revoked", "integration " + in.ID + " is revoked", "register the role again"}
	}
	if req.Bucket == "" && len(in.Buckets) > 0 {
		req.Bucket = in.Buckets[0]
	}
	if req.Bucket == "" {
		return &apiError{http.StatusUnprocessableEntity, "bucket_required", "the integration names no bucket, so verification has nothing to probe", `send {"bucket": "<a bucket the role can read>"}`}
	}
	if !in.Allows(req.Bucket, firstOr(in.Prefixes)) {
		return &apiError{http.StatusUnprocessableEntity, "bucket_not_allowed", "bucket " + req.Bucket + " is not one of the integration's buckets", ""}
	}
	if a.cfg.Verifier == nil {
		return &apiError{http.StatusServiceUnavailable, "verifier_unavailable", "this process cannot reach AWS to verify", "operators: run the producer with AWS credentials"}
	}
	if !a.allowVerify(org.ID) {
		return &apiError{http.StatusTooManyRequests, "verify_rate_limited", fmt.Sprintf("at most %d verifications at once and one per %s per organization", a.cfg.VerifyBurst, a.cfg.VerifyEvery),
			"wait for the Retry-After interval, then verify again"}
	}
	rep, err := a.cfg.Verifier.Verify(r.Context(), creds.Target{Org: org, In: in, Bucket: req.Bucket})
	if err != nil {
		// Our identity failed, not the customer's role: nothing is recorded
		// against the integration.
		a.log.Error("verification could not run", "org", org.ID, "integration", in.ID, "error", err)
		return &apiError{http.StatusServiceUnavailable, "verifier_unavailable", "stevedore could not verify right now (its own AWS identity failed); your integration is unchanged",
			"retry later; the operators are alerted"}
	}
	in, err = a.cfg.Registry.RecordVerification(r.Context(), "api", org.ID, in.ID, rep)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"integration": integrationView(in), "verification": rep})
	return nil
}

func firstOr(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// ?data=delete also erases what the integration indexed (a wipe job per
// collection, of the documents read with it); retain (the default) keeps it.
func (a *API) revokeIntegration(w http.ResponseWriter, r *http.Request) error {
	org, in, err := a.orgIntegration(r)
	if err != nil {
		return err
	}
	data := r.URL.Query().Get("data")
	if data != "" && data != "retain" && data != "delete" {
		return badRequest("invalid_data_policy", "data must be retain or delete", "retain keeps what the integration indexed; delete erases it")
	}
	in, err = a.cfg.Registry.Revoke(r.Context(), "api", org.ID, in.ID, "revoked by the customer through the API")
	if err != nil {
		return err
	}
	v := struct {
		*registry.Integration
		WipeJobs []string `json:"wipe_jobs,omitempty"`
	}{Integration: integrationView(in)}
	if data == "delete" {
		sts, err := a.eraser.EraseIntegration(r.Context(), org.ID, in.ID)
		if err != nil {
			return err
		}
		ids := make([]string, 0, len(sts))
		for _, st := range sts {
			ids = append(ids, st.JobID)
		}
		v.WipeJobs = ids
		a.audit(r.Context(), org.ID, "integration.erase", "started", fmt.Sprintf("%s: %d wipe jobs", in.ID, len(ids)))
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
