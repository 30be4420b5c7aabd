// Package producer turns requests into JetStream messages: the HTTP API
// (index requests, job status) in the shape of the Captain API, and, later,
// the SQS bridge. It authenticates every request to one organization and
// scopes everything the request touches to it.
package producer

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/schema/schedules"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// MaxBodyBytes bounds request bodies.
const MaxBodyBytes = 1 << 20

// Config configures the API.
type Config struct {
	JS         jetstream.JetStream // required
	Registry   *registry.Registry  // required
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// PrincipalARN is stevedore's own role, the Principal of every trust
	// policy the API hands out (STEVEDORE_PRINCIPAL_ARN).
	PrincipalARN string
	// Verifier runs integration verification; nil answers 503 on /verify.
	Verifier Verifier
	// VerifyEvery is how often one org may start a verification (each one
	// calls STS three times and S3 twice with the tenant's role), with a
	// burst of VerifyBurst; defaults VerifyEveryDefault and VerifyBurstDefault.
	// Past it: 429 verify_rate_limited with Retry-After.
	VerifyEvery time.Duration
	VerifyBurst int
	// RequestRate and RequestBurst limit one org's API requests per second
	// in this process (429 rate_limited past them); defaults
	// RequestRateDefault and RequestBurstDefault.
	RequestRate  rate.Limit
	RequestBurst int
	// MaxQueuedJobs caps one org's job pages waiting to be planned (429
	// too_many_jobs past it): one tenant's burst of jobs waits in its own
	// client, not in front of the fleet's queue; default MaxQueuedJobsDefault.
	MaxQueuedJobs int
	// IdempotencyWindow is how long an Idempotency-Key stays bound to the
	// request that first used it; later, the same key starts a new job.
	// Default IdempotencyWindowDefault (24 h, as payment APIs do).
	IdempotencyWindow time.Duration
}

// Defaults of Config.
const (
	VerifyEveryDefault       = 10 * time.Second
	VerifyBurstDefault       = 3
	IdempotencyWindowDefault = 24 * time.Hour
	RequestRateDefault       = 50
	RequestBurstDefault      = 100
	MaxQueuedJobsDefault     = 1000
)

// Verifier checks an integration (see creds.Verifier).
type Verifier interface {
	Verify(ctx context.Context, t creds.Target) (*registry.Verification, error)
}

// API serves the HTTP endpoints. Create with New; it is an http.Handler.
type API struct {
	cfg       Config
	log       *slog.Logger
	jobs      *jobs.Store
	schedules *schedules.Store
	colls     *collections.Store
	eraser    *collections.Eraser
	mux       *http.ServeMux
	reqs      *prometheus.CounterVec
	limited   *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	verifies  *lru.Cache[string, *rate.Limiter] // per org; bounded
	requests  *lru.Cache[string, *rate.Limiter] // per org; bounded
	vmu       sync.Mutex
}

// New validates cfg and returns the API.
func New(ctx context.Context, cfg Config) (*API, error) {
	if cfg.JS == nil || cfg.Registry == nil {
		return nil, errors.New("producer: JS and Registry are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	store, err := jobs.Open(ctx, cfg.JS, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	sched, err := schedules.Open(ctx, cfg.JS, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	colls, err := collections.Open(ctx, cfg.JS, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	cfg.VerifyEvery = cmp.Or(cfg.VerifyEvery, VerifyEveryDefault)
	cfg.VerifyBurst = cmp.Or(cfg.VerifyBurst, VerifyBurstDefault)
	cfg.IdempotencyWindow = cmp.Or(cfg.IdempotencyWindow, IdempotencyWindowDefault)
	cfg.RequestRate = cmp.Or(cfg.RequestRate, RequestRateDefault)
	cfg.RequestBurst = cmp.Or(cfg.RequestBurst, RequestBurstDefault)
	cfg.MaxQueuedJobs = cmp.Or(cfg.MaxQueuedJobs, MaxQueuedJobsDefault)
	verifies, err := lru.New[string, *rate.Limiter](10_000)
	if err != nil {
		return nil, err
	}
	requests, err := lru.New[string, *rate.Limiter](10_000)
	if err != nil {
		return nil, err
	}
	a := &API{cfg: cfg, log: cfg.Logger, jobs: store, schedules: sched, colls: colls,
		eraser: &collections.Eraser{JS: cfg.JS, Store: colls, Jobs: store, Schedules: sched, Registry: cfg.Registry}, mux: http.NewServeMux(), verifies: verifies, requests: requests,
		reqs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_http_requests_total",
			Help: "API requests by route and status code."}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stevedore_http_request_duration_seconds",
			Help: "API request latency by route.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}, []string{"route"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_api_tenant_limited_total",
			Help: "Requests refused by a per-organization limit: requests (the request rate), jobs (job pages queued)."}, []string{"limit"})}
	for _, l := range []string{"requests", "jobs"} {
		a.limited.WithLabelValues(l)
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(a.reqs, a.latency, a.limited, newStaleness(sched, cfg.Now))
	}
	a.routes()
	return a, nil
}

// routes registers every endpoint, and the answers for the rest (405 with
// Allow, or 404 pointing at the OpenAPI document).
func (a *API) routes() {
	a.route("POST /v2/collections/{name}/index/s3", "index_bucket", a.index(schema.JobBucket))
	a.route("POST /v2/collections/{name}/index/s3/directory", "index_directory", a.index(schema.JobDirectory))
	a.route("POST /v2/collections/{name}/index/s3/file", "index_file", a.index(schema.JobFile))
	a.route("GET /v2/collections", "collection_list", a.listCollections)
	a.route("PUT /v2/collections/{name}", "collection_put", a.putCollection)
	a.route("GET /v2/collections/{name}", "collection_get", a.getCollection)
	a.route("DELETE /v2/collections/{name}", "collection_delete", a.deleteCollection)
	a.route("GET /v2/collections/{name}/documents", "document_list", a.listDocuments)
	a.route("DELETE /v2/collections/{name}/documents", "document_wipe", a.wipeDocuments)
	a.route("GET /v2/collections/{name}/documents/{document_id}", "document_get", a.getDocument)
	a.route("DELETE /v2/collections/{name}/documents/{document_id}", "document_delete", a.deleteDocument)
	a.route("GET /v2/jobs/{job_id}", "job", a.job)
	a.route("GET /v2/jobs", "job_list", a.listJobs)
	a.route("POST /v2/jobs/{job_id}/cancel", "job_cancel", a.cancelJob)
	a.route("POST /v2/jobs/{job_id}/retry", "job_retry", a.retryJob)
	a.route("PUT /v2/collections/{name}/schedule", "schedule_set", a.setSchedule)
	a.route("GET /v2/collections/{name}/schedule", "schedule_get", a.getSchedule)
	a.route("DELETE /v2/collections/{name}/schedule", "schedule_clear", a.clearSchedule)
	a.route("GET /v2/schedules", "schedule_list", a.listSchedules)
	a.route("POST /v2/notifications/queues", "queue_attach", a.attachQueue)
	a.route("GET /v2/notifications/queues", "queue_list", a.listQueues)
	a.route("GET /v2/notifications/queues/{id}", "queue_get", a.getQueue)
	a.route("DELETE /v2/notifications/queues/{id}", "queue_detach", a.detachQueue)
	a.route("POST /v2/collections/{name}/routes", "route_add", a.addRoute)
	a.route("GET /v2/collections/{name}/routes", "route_list", a.listRoutes)
	a.route("DELETE /v2/collections/{name}/routes/{id}", "route_delete", a.deleteRoute)
	a.route("GET /v2/organization", "organization", a.organization)
	a.route("GET /v2/audit", "audit", a.auditTrail)
	a.mux.HandleFunc("GET /v2/openapi.json", a.answered("openapi", func(w http.ResponseWriter, r *http.Request, _ string) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(schema.OpenAPI)
	}))
	a.route("POST /v2/integrations/aws", "integration_create", a.createIntegration)
	a.route("GET /v2/integrations", "integration_list", a.listIntegrations)
	a.route("GET /v2/integrations/{id}", "integration_get", a.getIntegration)
	a.route("POST /v2/integrations/{id}/verify", "integration_verify", a.verifyIntegration)
	a.route("DELETE /v2/integrations/{id}", "integration_revoke", a.revokeIntegration)
	a.mux.HandleFunc("/", a.answered("unrouted", func(w http.ResponseWriter, r *http.Request, _ string) {
		if allowed := a.methodsFor(r); len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeError(w, &apiError{http.StatusMethodNotAllowed, "method_not_allowed", r.Method + " is not allowed on " + r.URL.Path, "use " + strings.Join(allowed, " or ")})
			return
		}
		writeError(w, &apiError{http.StatusNotFound, "not_found", "no such endpoint: " + r.Method + " " + r.URL.Path, "see the OpenAPI document: GET /v2/openapi.json"})
	}))
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// apiError is an error response: {"error": {"code", "message", "hint"}}.
type apiError struct {
	status              int
	code, message, hint string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) { s.code = code; s.ResponseWriter.WriteHeader(code) }

// answered wraps a handler with what every answer gets: its X-Request-Id,
// the request metrics and the access-log line.
func (a *API) answered(name string, h func(w http.ResponseWriter, r *http.Request, id string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID(r)
		w.Header().Set("X-Request-Id", id)
		sw := &statusWriter{ResponseWriter: w, code: 200}
		h(sw, r, id)
		a.reqs.WithLabelValues(name, strconv.Itoa(sw.code)).Inc()
		a.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
		a.log.Info("request", "route", name, "method", r.Method, "status", sw.code, "request_id", id, "duration_ms", time.Since(start).Milliseconds())
	}
}

func (a *API) route(pattern, name string, h func(http.ResponseWriter, *http.Request) error) {
	a.mux.HandleFunc(pattern, a.answered(name, func(sw http.ResponseWriter, r *http.Request, id string) {
		handle := h
		if nc := a.cfg.JS.Conn(); nc != nil && !nc.IsConnected() {
			// Answer at once instead of waiting out a request timeout.
			handle = func(http.ResponseWriter, *http.Request) error { return nats.ErrConnectionReconnecting }
		}
		if err := handle(sw, r); err != nil {
			var ae *apiError
			switch {
			case errors.As(err, &ae):
			case unavailable(err):
				a.log.Warn("request failed: NATS unavailable", "route", name, "request_id", id, "error", err)
				ae = &apiError{http.StatusServiceUnavailable, "unavailable", "the job store is unavailable right now", "retry after the Retry-After interval"}
			default:
				a.log.Error("request failed", "route", name, "request_id", id, "error", err)
				ae = &apiError{http.StatusInternalServerError, "internal", "internal error (request " + id + ")", "retry later; if it persists, contact support with the request ID"}
			}
			writeError(sw, ae)
		}
	}))
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.status == http.StatusServiceUnavailable || e.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "5")
	}
	writeJSON(w, e.status, map[string]any{"error": map[string]string{"code": e.code, "message": e.message, "hint": e.hint}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// authenticate resolves the bearer API key to its org and checks that the
// X-Organization-ID header names the same org.
func (a *API) authenticate(r *http.Request) (*registry.Org, error) {
	key, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return nil, &apiError{http.StatusUnauthorized, "unauthenticated", "missing Authorization: Bearer <api key>", "send the API key you received when the organization was created"}
	}
	org, err := a.cfg.Registry.Authenticate(r.Context(), key)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, &apiError{http.StatusUnauthorized, "invalid_api_key", "the API key is not valid (unknown or revoked)", "check the key; keys are shown once at creation"}
	}
	if errors.Is(err, registry.ErrOrgDisabled) {
		return nil, &apiError{http.StatusForbidden, "organization_disabled", "the organization is disabled", "contact the operator of this deployment"}
	}
	if err != nil {
		return nil, err
	}
	if h := r.Header.Get("X-Organization-ID"); h != org.ID {
		a.audit(r.Context(), org.ID, "auth.org_mismatch", "refused", "X-Organization-ID does not match the API key's organization")
		return nil, &apiError{http.StatusForbidden, "organization_mismatch", "X-Organization-ID does not match the API key's organization", "send the organization ID that the API key belongs to"}
	}
	if !a.allow(a.requests, org.ID, a.cfg.RequestRate, a.cfg.RequestBurst) {
		a.limited.WithLabelValues("requests").Inc()
		return nil, &apiError{http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("more than %g requests per second for this organization", float64(a.cfg.RequestRate)),
			"retry after the Retry-After interval; spread requests out"}
	}
	return org, nil
}

func (a *API) audit(ctx context.Context, org, action, outcome, detail string) {
	a.cfg.Registry.Audit(ctx, org, "api", action, outcome, detail)
}

// indexRequest is the body of the three index endpoints (Captain API shape).
type indexRequest struct {
	BucketName    string `json:"bucket_name"`
	BucketRegion  string `json:"bucket_region"`
	DirectoryPath string `json:"directory_path"`
	FileURI       string `json:"file_uri"`
	settingsRequest
	Auth *struct {
		Type       string `json:"type"`
		RoleARN    string `json:"role_arn"`
		ExternalID string `json:"external_id"`
	} `json:"auth"`
	AccessKeyID       string          `json:"aws_access_key_id"`
	SecretAccessKey   registry.Secret `json:"aws_secret_access_key"`
	SkipExisting      *bool           `json:"skip_existing"`
	OverwriteExisting bool            `json:"overwrite_existing"`
	MaxFiles          int             `json:"max_files"`
	// DeleteMissing (bucket and directory jobs; default true) makes the job
	// a sync: objects it held that the complete listing no longer has are
	// confirmed gone and deleted. AllowMassDelete lifts the share limit.
	DeleteMissing   *bool `json:"delete_missing"`
	AllowMassDelete bool  `json:"allow_mass_delete"`
}

// settingsRequest is how objects are to be read: what an index request
// says, and what a collection's settings (PUT /v2/collections/{name})
// default it to. checkOptions checks it for both.
type settingsRequest struct {
	ProcessingType string          `json:"processing_type"`
	Encoding       string          `json:"encoding"`
	CustomMetadata json.RawMessage `json:"custom_metadata"`
	// Chunking (default: the collection's, else the worker's).
	ChunkTokens  int `json:"chunk_size_tokens"`
	ChunkOverlap int `json:"chunk_overlap_tokens"`
	// Filters (bucket and directory jobs; default: the collection's).
	IncludePatterns []string   `json:"include_patterns"`
	ExcludePatterns []string   `json:"exclude_patterns"`
	MaxFileSize     int64      `json:"max_file_size"`
	ModifiedAfter   *time.Time `json:"modified_after"`
	// ObjectTags puts the objects' S3 tags in their metadata (default: the
	// collection's, else false).
	ObjectTags *bool `json:"include_object_tags"`
	// OCRLanguages: Tesseract language names, "+"-joined (default: the
	// collection's, else the workers').
	OCRLanguages string `json:"ocr_languages"`
}

// readSettings are how the request's objects are read.
func (req *settingsRequest) readSettings() schema.ReadSettings {
	return schema.ReadSettings{ProcessingType: req.ProcessingType, Encoding: req.Encoding, ChunkTokens: req.ChunkTokens, ChunkOverlap: req.ChunkOverlap,
		ObjectTags: req.ObjectTags != nil && *req.ObjectTags, OCRLanguages: req.OCRLanguages}
}

// filters are the request's filters (nil when it gives none).
func (req *settingsRequest) filters() *schema.Filters {
	f := &schema.Filters{Include: req.IncludePatterns, Exclude: req.ExcludePatterns, MaxFileSize: req.MaxFileSize, ModifiedAfter: req.ModifiedAfter}
	if f.Empty() {
		return nil
	}
	return f
}

func badRequest(code, msg, hint string) error {
	return &apiError{http.StatusBadRequest, code, msg, hint}
}

func (a *API) index(kind schema.JobKind) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req indexRequest
		org, job, in, body, err := a.jobRequest(w, r, &req, func() schema.JobKind { return kind })
		if err != nil {
			return err
		}
		h := sha256.Sum256([]byte(r.Method + " " + r.URL.Path + "\x00" + string(body)))
		return a.submit(w, r, org, job, in, hex.EncodeToString(h[:16]))
	}
}

// jobRequest reads a request that describes a job (an index request, a
// schedule's) into v, which holds req, and checks it all: the caller, the
// collection, the options, the credentials, and that the integration may
// read the bucket and prefix or key. kind is called once the body is read.
func (a *API) jobRequest(w http.ResponseWriter, r *http.Request, v any, kind func() schema.JobKind) (*registry.Org, *schema.Job, *registry.Integration, []byte, error) {
	org, err := a.authenticate(r)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	collection := r.PathValue("name")
	if !schema.ValidID(collection) {
		return nil, nil, nil, nil, badRequest("invalid_collection", "collection name must be 1-64 characters of A-Z a-z 0-9 _ -", "rename the collection")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return nil, nil, nil, nil, &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body over %d bytes", MaxBodyBytes), "send a smaller body"}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, nil, nil, nil, jsonError(err)
	}
	req := indexRequestOf(v)
	job, err := a.validate(r.Context(), org, collection, kind(), req)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	in, err := a.allowedIntegration(r.Context(), org, job, req)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return org, job, in, body, nil
}

// allowedIntegration is the integration the request names, checked for
// the job's bucket and prefix or key; it sets the job's integration and
// credential reference.
func (a *API) allowedIntegration(ctx context.Context, org *registry.Org, job *schema.Job, req *indexRequest) (*registry.Integration, error) {
	in, credentialRef, err := a.integrationFor(ctx, org, req)
	if err != nil {
		return nil, err
	}
	job.CredentialRef = credentialRef
	key := job.Prefix
	if job.Kind == schema.JobFile {
		key = job.Key
	}
	if err := creds.Allowed(in, job.Bucket, key); err != nil {
		var ce *schema.ClassError
		if errors.As(err, &ce) && ce.Code == creds.CodeIntegrationNotActive {
			return nil, a.notActive(ctx, org, in)
		}
		a.audit(ctx, org.ID, "index.refused", creds.CodeBucketNotAllowed, in.ID+" s3://"+job.Bucket+"/"+key)
		return nil, &apiError{http.StatusForbidden, creds.CodeBucketNotAllowed, err.Error(),
			"index a bucket and prefix the integration was registered for, or register another integration"}
	}
	job.IntegrationID = in.ID
	return in, nil
}

func (a *API) validate(ctx context.Context, org *registry.Org, collection string, kind schema.JobKind, req *indexRequest) (*schema.Job, error) {
	if err := a.checkAuth(ctx, org, req); err != nil {
		return nil, err
	}
	if err := a.collectionDefaults(ctx, org.ID, collection, kind, req); err != nil {
		return nil, err
	}
	skip, err := checkOptions(req)
	if err != nil {
		return nil, err
	}
	job := &schema.Job{Org: org.ID, Collection: collection, Kind: kind, Bucket: req.BucketName, Region: cmp.Or(req.BucketRegion, "us-east-1"),
		MaxFiles: req.MaxFiles, SkipExisting: skip, OverwriteExisting: req.OverwriteExisting, ReadSettings: req.readSettings(),
		CustomMetadata: req.CustomMetadata, CreatedAt: a.cfg.Now().UTC()}
	if err := checkTarget(job, req); err != nil {
		return nil, err
	}
	if job.Filters = req.filters(); job.Filters != nil && job.Kind == schema.JobFile {
		return nil, badRequest("invalid_option", "filters apply to bucket and directory jobs, not to a file", "drop include_patterns, exclude_patterns, max_file_size and modified_after")
	}
	if err := checkSync(job, req); err != nil {
		return nil, err
	}
	return job, nil
}

// checkSync sets whether the job is a sync (delete_missing: the default for
// bucket and directory jobs) and whether it may delete in bulk.
func checkSync(job *schema.Job, req *indexRequest) error {
	if job.Kind == schema.JobFile {
		if req.DeleteMissing != nil && *req.DeleteMissing || req.AllowMassDelete {
			return badRequest("invalid_option", "delete_missing and allow_mass_delete apply to bucket and directory jobs", "a file job on a deleted key deletes it anyway")
		}
		return nil
	}
	job.DeleteMissing = req.DeleteMissing == nil || *req.DeleteMissing
	if req.AllowMassDelete && !job.DeleteMissing {
		return badRequest("conflicting_options", "allow_mass_delete needs delete_missing", "drop allow_mass_delete, or set delete_missing to true")
	}
	job.AllowMassDelete = req.AllowMassDelete
	return nil
}

// checkAuth checks the request's credentials: a role with the org's
// ExternalId, or static keys where a KEK is configured, never both.
func (a *API) checkAuth(ctx context.Context, org *registry.Org, req *indexRequest) error {
	hasRole, hasKeys := req.Auth != nil, req.AccessKeyID != "" || req.SecretAccessKey != ""
	switch {
	case hasRole && hasKeys:
		return &apiError{http.StatusUnprocessableEntity, "ambiguous_credentials", "send either auth (assume_role) or aws_access_key_id/aws_secret_access_key, not both", "remove one of them"}
	case hasKeys && !a.cfg.Registry.HasKEK():
		a.audit(ctx, org.ID, "index.refused", "static_keys_unsupported", "no KEK configured")
		return &apiError{http.StatusUnprocessableEntity, "static_keys_unsupported", "access-key authentication is not enabled on this deployment (no key-encryption key is configured)", "use a cross-account role: auth {type: assume_role, role_arn, external_id}"}
	case hasKeys && (req.AccessKeyID == "" || req.SecretAccessKey == ""):
		return &apiError{http.StatusUnprocessableEntity, "incomplete_static_keys", "send both aws_access_key_id and aws_secret_access_key", ""}
	case !hasRole && !hasKeys:
		return &apiError{http.StatusUnprocessableEntity, "missing_credentials", "auth is required", "send auth {type: assume_role, role_arn, external_id}"}
	case hasRole:
		if req.Auth.Type != "assume_role" {
			return &apiError{http.StatusUnprocessableEntity, "invalid_auth_type", fmt.Sprintf("auth.type %q is not supported", req.Auth.Type), `use "assume_role"`}
		}
		if err := registry.CheckExternalID(org, req.Auth.ExternalID); err != nil {
			a.audit(ctx, org.ID, "index.refused", "external_id_mismatch", "role "+req.Auth.RoleARN)
			return &apiError{http.StatusForbidden, "external_id_mismatch", "external_id does not match the one issued to this organization", "use your organization's current external_id (GET /v2/organization; it changes when rotated), and the same value in your role's trust policy"}
		}
		if _, err := registry.ParseRoleARN(req.Auth.RoleARN); err != nil {
			return badRequest("invalid_role_arn", err.Error(), "copy the role ARN from the IAM console")
		}
	}
	return nil
}

// checkOptions checks the request's options and normalises them in req
// (processing type, tokenizer); it returns whether existing objects are
// skipped (the default, unless overwrite_existing).
func checkOptions(req *indexRequest) (skip bool, err error) {
	skip = true
	if req.SkipExisting != nil {
		skip = *req.SkipExisting
	}
	if skip && req.OverwriteExisting && req.SkipExisting != nil {
		return false, badRequest("conflicting_options", "skip_existing and overwrite_existing cannot both be true", "choose one")
	}
	if req.OverwriteExisting {
		skip = false
	}
	if !schema.ValidProcessingType(req.ProcessingType) {
		return false, badRequest("invalid_processing_type", "processing_type must be basic or advanced", "")
	}
	req.ProcessingType = cmp.Or(req.ProcessingType, schema.ProcessingBasic)
	if !schema.ValidEncoding(req.Encoding) {
		return false, badRequest("invalid_encoding", "encoding must be cl100k_base or o200k_base", "cl100k_base (the default) for text-embedding-3 and GPT-4; o200k_base for GPT-4o")
	}
	if req.Encoding == schema.DefaultEncoding {
		req.Encoding = ""
	}
	if req.MaxFiles < 0 {
		return false, badRequest("invalid_max_files", "max_files must not be negative", "")
	}
	if len(req.CustomMetadata) > 0 && !strings.HasPrefix(strings.TrimSpace(string(req.CustomMetadata)), "{") {
		return false, badRequest("invalid_custom_metadata", "custom_metadata must be a JSON object", "")
	}
	if len(req.CustomMetadata) > 16<<10 {
		return false, badRequest("invalid_custom_metadata", "custom_metadata is over 16 KiB", "keep metadata small; it is copied into every chunk")
	}
	if err := req.filters().Validate(); err != nil {
		return false, badRequest("invalid_filters", err.Error(), `e.g. "exclude_patterns": ["*.log", "tmp/**"]`)
	}
	if !schema.ValidOCRLanguages(req.OCRLanguages) {
		return false, badRequest("invalid_ocr_languages", fmt.Sprintf("ocr_languages %q: Tesseract language names joined by +, e.g. eng+deu", schema.Prefix(req.OCRLanguages, 64)),
			"a language a worker does not have installed skips the scans it would read, saying so")
	}
	if err := schema.ValidChunking(req.ChunkTokens, req.ChunkOverlap); err != nil {
		return false, badRequest("invalid_chunking", err.Error(), fmt.Sprintf("e.g. \"chunk_size_tokens\": 512, \"chunk_overlap_tokens\": 64 (%d to %d tokens; overlap at most half)", schema.MinChunkTokens, schema.MaxChunkTokens))
	}
	return skip, nil
}

// checkTarget checks and sets what the job reads: its region, bucket, and
// the directory's prefix or the file's key.
func checkTarget(job *schema.Job, req *indexRequest) error {
	if !schema.ValidRegion(job.Region) {
		return badRequest("invalid_region", fmt.Sprintf("bucket_region %q is not an AWS region name", job.Region), `use the bucket's region, e.g. "us-east-1" or "eu-central-1"`)
	}
	switch job.Kind {
	case schema.JobDirectory:
		if req.DirectoryPath == "" {
			return badRequest("missing_directory_path", "directory_path is required", "send the prefix to index, e.g. reports/2026/")
		}
		job.Prefix = strings.TrimPrefix(req.DirectoryPath, "/")
	case schema.JobFile:
		rest, ok := strings.CutPrefix(req.FileURI, "s3://")
		bucket, key, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 || key == "" {
			return badRequest("invalid_file_uri", "file_uri must be s3://<bucket>/<key>", "")
		}
		if job.Bucket != "" && job.Bucket != bucket {
			return badRequest("bucket_mismatch", "bucket_name does not match file_uri's bucket", "")
		}
		job.Bucket, job.Key = bucket, key
	}
	if !schema.ValidBucket(job.Bucket) {
		return badRequest("invalid_bucket_name", fmt.Sprintf("bucket_name %q is not a valid S3 bucket name", job.Bucket), "")
	}
	if len(job.Key) > 1024 || len(job.Prefix) > 1024 {
		return badRequest("key_too_long", "S3 keys are at most 1024 bytes", "")
	}
	return nil
}

// submit records the job and publishes its first page. With an
// Idempotency-Key the job ID is derived from it (and the org), and the key is
// bound to the request (requestHash: endpoint and body), as payment APIs do:
// a retry with the same request answers 200 with the job's current view (the
// first answer was 201); the same key with another request is 409
// idempotency_key_reused. A key is bound for Config.IdempotencyWindow after
// its first use; after that it starts a new job.
func (a *API) submit(w http.ResponseWriter, r *http.Request, org *registry.Org, job *schema.Job, in *registry.Integration, requestHash string) error {
	ctx := r.Context()
	key := r.Header.Get("Idempotency-Key")
	keyed := key != ""
	if keyed {
		job.JobID = derivedJobID(org.ID, key)
	} else {
		job.JobID = jobs.NewID()
	}
	if err := a.ensureCollection(ctx, org.ID, job.Collection); err != nil {
		return err
	}
	var status *schema.JobStatus
	for attempt := 0; ; attempt++ {
		status = schema.NewJobStatus(job)
		if keyed {
			status.RequestHash = requestHash
		}
		err := a.jobs.Create(ctx, status)
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyExists) || !keyed || attempt == 100 {
			return fmt.Errorf("create job: %w", err)
		}
		prev, _, err := a.jobs.Get(ctx, org.ID, job.JobID)
		if err != nil {
			return fmt.Errorf("load job: %w", err)
		}
		if a.cfg.Now().Sub(prev.CreatedAt) < a.cfg.IdempotencyWindow {
			return a.replay(w, r, prev, requestHash)
		}
		// The key expired with the window: it names a new job, whose ID
		// follows from the expired one's.
		job.JobID = derivedJobID(org.ID, prev.JobID)
	}
	if err := a.underJobQuota(ctx, org.ID); err != nil {
		a.jobs.Delete(context.WithoutCancel(ctx), status)
		return err
	}
	if err := a.jobs.Publish(ctx, job); err != nil {
		if schema.IsBackpressure(err) {
			return &apiError{http.StatusServiceUnavailable, "backpressure", "the job queue is full or unavailable", "retry after the Retry-After interval"}
		}
		return err
	}
	a.log.Info("job submitted", "org", org.ID, "collection", job.Collection, "job_id", job.JobID, "bucket", job.Bucket, "kind", string(job.Kind))
	resp := map[string]any{"job_id": job.JobID, "status": schema.JobStatusPending}
	if h := in.Unhealthy; h != nil {
		resp["warning"] = map[string]string{"code": "integration_unhealthy", "message": fmt.Sprintf("integration %s is failing since %s (%s %s); the job will fail fast until it recovers",
			in.ID, h.Since.Format(time.RFC3339), h.Class, h.Code), "hint": h.Hint}
	}
	writeJSON(w, http.StatusCreated, resp)
	return nil
}

// derivedJobID is the job ID an Idempotency-Key (or an expired key's job ID)
// names in org: the same inputs, the same job.
func derivedJobID(org, from string) string {
	h := sha256.Sum256([]byte(org + "\x00" + from))
	return "job_" + hex.EncodeToString(h[:10])
}

// replay answers a retried request whose Idempotency-Key created job s.
func (a *API) replay(w http.ResponseWriter, r *http.Request, s *schema.JobStatus, requestHash string) error {
	if s.RequestHash != requestHash {
		return &apiError{http.StatusConflict, "idempotency_key_reused", "this Idempotency-Key was used for another request (job " + s.JobID + ")",
			"use a new key for a new request; retry with exactly the same endpoint and body to get the first job"}
	}
	writeJSON(w, http.StatusOK, s.View(a.cfg.Now()))
	return nil
}

func jobNotFound(id string) error {
	return &apiError{http.StatusNotFound, "job_not_found", "no job " + id + " in this organization", "use the job_id returned by the index request"}
}

func (a *API) job(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	id := r.PathValue("job_id")
	s, _, err := a.jobs.Get(r.Context(), org.ID, id)
	if errors.Is(err, jobs.ErrNotFound) {
		return jobNotFound(id)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.View(a.cfg.Now()))
	return nil
}

// listJobs is GET /v2/jobs?collection=&status=&limit=&cursor=: the org's
// jobs, newest first.
func (a *API) listJobs(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := jobs.Filter{Collection: q.Get("collection"), Status: q.Get("status"), Cursor: q.Get("cursor")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			return badRequest("invalid_limit", "limit must be an integer from 1 to 100", "")
		}
		f.Limit = n
	}
	page, err := a.jobs.List(r.Context(), org.ID, f)
	if errors.Is(err, jobs.ErrBadCursor) {
		return badRequest("invalid_cursor", "cursor is not one this endpoint returned", "pass next_cursor from the previous page as it is")
	}
	if errors.Is(err, jobs.ErrBadStatus) {
		return badRequest("invalid_status", err.Error(), "")
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// cancelJob is POST /v2/jobs/{job_id}/cancel: idempotent; 409 when the job
// had already finished.
func (a *API) cancelJob(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	id := r.PathValue("job_id")
	s, err := a.jobs.Cancel(r.Context(), org.ID, id)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return jobNotFound(id)
	case errors.Is(err, jobs.ErrFinished):
		return &apiError{http.StatusConflict, "job_finished", "job " + id + " already finished (" + s.Status + ")", "nothing to cancel"}
	case err != nil:
		return err
	}
	a.audit(r.Context(), org.ID, "job.cancel", "ok", id)
	writeJSON(w, http.StatusOK, s.View(a.cfg.Now()))
	return nil
}

// retryJob is POST /v2/jobs/{job_id}/retry: a new job (kind retry) that
// re-runs only the objects the job failed on or timed out extracting; 409
// while the job runs.
func (a *API) retryJob(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	id := r.PathValue("job_id")
	prev, _, err := a.jobs.Get(r.Context(), org.ID, id)
	if errors.Is(err, jobs.ErrNotFound) {
		return jobNotFound(id)
	}
	if err != nil {
		return err
	}
	switch {
	case prev.Kind != schema.JobBucket && prev.Kind != schema.JobDirectory && prev.Kind != schema.JobFile && prev.Kind != schema.JobRetry:
		return badRequest("invalid_option", "only index jobs are retried; job "+id+" is a "+string(prev.Kind)+" job", "")
	case !prev.Final():
		return &apiError{http.StatusConflict, "job_running", "job " + id + " is still " + prev.Status, "retry once it is final"}
	}
	if err := a.ensureCollection(r.Context(), org.ID, prev.Collection); err != nil {
		return err
	}
	st, err := a.jobs.Retry(r.Context(), prev, jobs.NewID())
	if err != nil {
		return err
	}
	a.audit(r.Context(), org.ID, "job.retry", "ok", id+" → "+st.JobID)
	writeJSON(w, http.StatusCreated, map[string]any{"job_id": st.JobID, "status": st.Status, "retry_of": id})
	return nil
}

// underJobQuota refuses a new job while org has MaxQueuedJobs job pages
// waiting to be planned (JOBS holds a page until it is planned).
func (a *API) underJobQuota(ctx context.Context, org string) error {
	stream, err := a.cfg.JS.Stream(ctx, schema.StreamJobs)
	if err != nil {
		return fmt.Errorf("jobs stream: %w", err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(schema.OrgJobs(org)))
	if err != nil {
		return fmt.Errorf("jobs stream: %w", err)
	}
	var queued uint64
	for _, n := range info.State.Subjects {
		queued += n
	}
	if queued >= uint64(a.cfg.MaxQueuedJobs) {
		a.limited.WithLabelValues("jobs").Inc()
		return &apiError{http.StatusTooManyRequests, "too_many_jobs", fmt.Sprintf("this organization has %d job pages waiting to be planned (at most %d)", queued, a.cfg.MaxQueuedJobs),
			"retry after the Retry-After interval, when earlier jobs have started"}
	}
	return nil
}

// allowVerify spends one of org's verifications (Config.VerifyEvery).
func (a *API) allowVerify(org string) bool {
	return a.allow(a.verifies, org, rate.Every(a.cfg.VerifyEvery), a.cfg.VerifyBurst)
}

// allow takes a token of org's limiter in limits (made on first use).
func (a *API) allow(limits *lru.Cache[string, *rate.Limiter], org string, r rate.Limit, burst int) bool {
	a.vmu.Lock()
	defer a.vmu.Unlock()
	l, ok := limits.Get(org)
	if !ok {
		l = rate.NewLimiter(r, burst)
		limits.Add(org, l)
	}
	return l.Allow()
}

// auditTrail is GET /v2/audit?since=RFC3339&limit=N: the org's own AUDIT
// records, oldest first (never a secret: the records hold none).
func (a *API) auditTrail(w http.ResponseWriter, r *http.Request) error {
	org, err := a.authenticate(r)
	if err != nil {
		return err
	}
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		if since, err = time.Parse(time.RFC3339, v); err != nil {
			return badRequest("invalid_since", "since must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z", "")
		}
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			return badRequest("invalid_limit", "limit must be an integer from 1 to 1000", "")
		}
	}
	records, err := a.cfg.Registry.AuditTrail(r.Context(), org.ID, since, limit)
	if err != nil {
		return err
	}
	if records == nil {
		records = []registry.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": records})
	return nil
}
