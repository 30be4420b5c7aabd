// Package worker is the claim loop and everything a message needs: it plans
// index jobs page by page (JOBS), indexes or deletes one object per task
// (TASKS), and folds per-object outcomes into job status (EVENTS).
//
// Reading order: Run (this file) → serve/process (claim.go) → plan (plan.go)
// and index (task.go) → settle (outcome.go) → fold (tracker.go).
package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	lru "github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker/chunk"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/extract"
	"github.com/stevedore-dev/stevedore/worker/token"
)

// Defaults of Config, applied by New (withDefaults) to zero fields; cmd's
// flags use the same constants.
const (
	TaskConcurrencyDefault      = 8
	DiscoverEveryDefault        = 250 * time.Millisecond
	PlanConcurrencyDefault      = 4
	MaxObjectBytesDefault       = 2 << 30
	MaxDecompressedBytesDefault = 2 << 30
	PageSizeDefault             = 1000
	MessageTimeoutDefault       = 5 * time.Minute
	HeartbeatDefault            = 15 * time.Second
	ShutdownGraceDefault        = 20 * time.Second
	NameDefault                 = "worker"
	SpillEveryDefault           = 64
	StealAboveDefault           = 16
	OrgTaskShareDefault         = 250_000
)

// withDefaults returns cfg with every zero field set to its default: the
// one place defaults are applied.
func (cfg Config) withDefaults() Config {
	cfg.TaskConcurrency = cmp.Or(cfg.TaskConcurrency, TaskConcurrencyDefault)
	cfg.TenantConcurrency = cmp.Or(cfg.TenantConcurrency, max(1, cfg.TaskConcurrency*3/4))
	cfg.DiscoverEvery = cmp.Or(cfg.DiscoverEvery, DiscoverEveryDefault)
	cfg.TrackBatch = cmp.Or(cfg.TrackBatch, schema.TrackBatch)
	cfg.PlanConcurrency = cmp.Or(cfg.PlanConcurrency, PlanConcurrencyDefault)
	cfg.MaxObjectBytes = cmp.Or(cfg.MaxObjectBytes, MaxObjectBytesDefault)
	cfg.MaxDecompressedBytes = cmp.Or(cfg.MaxDecompressedBytes, MaxDecompressedBytesDefault)
	cfg.PageSize = cmp.Or(cfg.PageSize, PageSizeDefault)
	cfg.MessageTimeout = cmp.Or(cfg.MessageTimeout, MessageTimeoutDefault)
	cfg.Heartbeat = cmp.Or(cfg.Heartbeat, HeartbeatDefault)
	cfg.ShutdownGrace = cmp.Or(cfg.ShutdownGrace, ShutdownGraceDefault)
	cfg.SessionPrefix = cmp.Or(cfg.SessionPrefix, creds.SessionPrefixDefault)
	cfg.Name = cmp.Or(cfg.Name, NameDefault)
	cfg.SpillEvery = cmp.Or(cfg.SpillEvery, SpillEveryDefault)
	cfg.StealAbove = cmp.Or(cfg.StealAbove, StealAboveDefault)
	cfg.OrgTaskShare = cmp.Or(cfg.OrgTaskShare, OrgTaskShareDefault)
	cfg.Topology = cfg.Topology.WithDefaults()
	return cfg
}

// Config configures a Worker. Zero values take the defaults in the comments.
type Config struct {
	JS       jetstream.JetStream // required
	Registry *registry.Registry  // required: resolves role ARN and ExternalId
	Broker   *creds.Broker       // required: assumed-role credentials
	// AWS is the base SDK configuration for S3 clients (endpoints, retries);
	// credentials come from the broker, region from the message.
	AWS aws.Config
	// S3PathStyle selects path-style S3 addressing (MinIO); default false.
	S3PathStyle bool
	// Topology must match the one the streams were created with (MaxDeliver).
	Topology schema.Topology
	// TaskConcurrency is the number of tasks processed at once; default 8.
	TaskConcurrency int
	// TenantConcurrency caps one org's tasks in flight in this worker, so
	// other orgs always find a free slot; default 3/4 of TaskConcurrency.
	TenantConcurrency int
	// DiscoverEvery is how often the worker looks for orgs with tasks; default 250 ms.
	DiscoverEvery time.Duration
	// SpillEvery: an org is served by one worker (by rendezvous hashing
	// over the live workers) plus one more per SpillEvery of its tasks
	// waiting; default 64. See affinity.go.
	SpillEvery int
	// StealAbove: a worker with nothing of its own orgs waiting helps
	// other orgs that have at least this many tasks waiting; default 16.
	StealAbove int
	// OrgTaskShare: an org with this many tasks waiting in TASKS gets no
	// more job pages planned until they drain (its share of the queue, ≈ an
	// eighth of TASKS' 1 GiB); default 250,000.
	OrgTaskShare int
	// NoAffinity makes every worker serve every org (the behaviour before
	// tenant affinity: AssumeRole calls grow with the workers); for
	// measurements.
	NoAffinity bool
	// TrackBatch is the most events folded per batch; default schema.TrackBatch.
	TrackBatch int
	// PlanConcurrency is the number of job pages planned at once (one per
	// org); default 4.
	PlanConcurrency int
	// ChunkTokens is the maximum tokens per chunk; default 512.
	ChunkTokens int
	// Encoding is the tokenizer; default cl100k_base.
	Encoding *token.Encoding
	// MaxObjectBytes: larger objects are skipped with reason too_large;
	// default 2 GiB. Bodies are streamed, so this is not a memory bound.
	MaxObjectBytes int64
	// MaxDecompressedBytes caps what a gzip object may decompress to
	// (decompressed_too_large past it); default 2 GiB.
	MaxDecompressedBytes int64
	// PDF reads PDFs (a bounded pool of PDFium instances, shared by the
	// task slots); nil skips PDFs as unsupported_type.
	PDF *extract.PDF
	// PageSize is ListObjectsV2 MaxKeys per job page; default 1000.
	PageSize int32
	// MessageTimeout bounds the processing of one message; default 5 minutes.
	MessageTimeout time.Duration
	// Heartbeat is the InProgress interval while a message is worked on; default 15 s.
	Heartbeat time.Duration
	// ShutdownGrace is how long in-flight work may finish after Run's context
	// is cancelled before it is handed back; default 20 s.
	ShutdownGrace time.Duration
	// SessionPrefix starts every RoleSessionName; default "stevedore".
	SessionPrefix string
	// SessionTemplate is the RoleSessionName template ({prefix}, {org},
	// {job}); default creds.SessionTemplateDefault.
	SessionTemplate string
	// Registerer receives the worker's metrics; nil means none.
	Registerer prometheus.Registerer
	// Logger; nil discards.
	Logger *slog.Logger
	// Name identifies this worker in logs; default "worker".
	Name string
}

// Worker claims and processes messages. Create with New, run with Run.
type Worker struct {
	cfg Config
	log *slog.Logger
	m   *metrics
	res *creds.Resolver
	// jobCache holds job records tasks read (cancelled, custom metadata)
	// for a second, so a cancel takes effect at once fleet-wide.
	jobCache *lru.LRU[string, jobRecord]
	gate     chunksGate            // CHUNKS full: claiming paused
	fleet    atomic.Pointer[fleet] // the live workers as Run sees them (nil: NoAffinity, or not running)
	// splitters by tokenizer name ("" is cfg.Encoding), made on first use.
	splitMu   sync.Mutex
	splitters map[string]*chunk.Splitter
	objects   jetstream.KeyValue
	jobs      jetstream.KeyValue
}

// New validates cfg and returns a Worker bound to the KV buckets.
func New(ctx context.Context, cfg Config) (*Worker, error) {
	if cfg.JS == nil || cfg.Registry == nil || cfg.Broker == nil {
		return nil, errors.New("worker: JS, Registry and Broker are required")
	}
	cfg = cfg.withDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Encoding == nil {
		enc, err := token.Get(token.Cl100kBase)
		if err != nil {
			return nil, err
		}
		cfg.Encoding = enc
	}
	if cfg.AWS.HTTPClient == nil {
		// One connection pool for every S3 client the worker builds (one per
		// credential set): without it each client would dial anew.
		// Virtual-hosted S3 is a host per bucket, so the pool keeps up to
		// a thousand idle connections, and a slot's worth per host: fewer
		// would close and re-dial connections under load.
		cfg.AWS.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConns = 1000
			t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, cfg.TaskConcurrency+cfg.PlanConcurrency)
		})
	}
	sp, err := chunk.New(cfg.Encoding, cfg.ChunkTokens)
	if err != nil {
		return nil, err
	}
	objects, err := cfg.JS.KeyValue(ctx, schema.BucketObjects)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	jobs, err := cfg.JS.KeyValue(ctx, schema.BucketJobs)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w := &Worker{
		cfg: cfg, log: cfg.Logger.With("worker", cfg.Name), m: newMetrics(cfg.Registerer),
		objects: objects, jobs: jobs, splitters: map[string]*chunk.Splitter{"": sp, cfg.Encoding.Name(): sp},
	}
	w.jobCache = lru.NewLRU[string, jobRecord](10_000, nil, time.Second)
	w.res = &creds.Resolver{Registry: cfg.Registry, Broker: cfg.Broker, AWS: cfg.AWS, S3PathStyle: cfg.S3PathStyle,
		SessionPrefix: cfg.SessionPrefix, SessionTemplate: cfg.SessionTemplate, OnStaleRetry: w.m.staleRetries.Inc}
	return w, nil
}

// splitterFor returns the splitter for a task's tokenizer (its name; ""
// is the worker's default).
func (w *Worker) splitterFor(encoding string) (*chunk.Splitter, error) {
	w.splitMu.Lock()
	defer w.splitMu.Unlock()
	if sp := w.splitters[encoding]; sp != nil {
		return sp, nil
	}
	enc, err := token.Get(encoding)
	if err != nil {
		return nil, err
	}
	sp, err := chunk.New(enc, w.cfg.ChunkTokens)
	if err != nil {
		return nil, err
	}
	w.splitters[encoding] = sp
	return sp, nil
}

// errShutdown is the cause attached to in-flight work cancelled because the
// grace period after shutdown ran out: such messages are handed back at once.
var errShutdown = errors.New("worker shutting down")

// lookup finds the streams and the consumer Run claims from.
func (w *Worker) lookup(ctx context.Context) (jobs, tasks jetstream.Stream, tracker jetstream.Consumer, err error) {
	if jobs, err = w.cfg.JS.Stream(ctx, schema.StreamJobs); err != nil {
		return nil, nil, nil, fmt.Errorf("worker: stream %s: %w", schema.StreamJobs, err)
	}
	if tasks, err = w.cfg.JS.Stream(ctx, schema.StreamTasks); err != nil {
		return nil, nil, nil, fmt.Errorf("worker: stream %s: %w", schema.StreamTasks, err)
	}
	if tracker, err = w.cfg.JS.Consumer(ctx, schema.StreamEvents, schema.ConsumerTracker); err != nil {
		return nil, nil, nil, fmt.Errorf("worker: consumer %s/%s: %w", schema.StreamEvents, schema.ConsumerTracker, err)
	}
	return jobs, tasks, tracker, nil
}

// Run claims and processes messages until ctx is cancelled, then stops
// claiming, lets in-flight work finish for up to ShutdownGrace, and hands back
// what is left. It returns nil after a clean shutdown.
func (w *Worker) Run(ctx context.Context) error {
	jobs, tasks, tracker, err := w.lookup(ctx)
	if err == nil {
		// Tenants are resolved from a watched copy of the registry: no
		// registry read per task (see registry.View for how changes apply).
		var view *registry.View
		if view, err = w.cfg.Registry.Watch(ctx, 0); err == nil {
			w.res.Directory = view
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started: a clean shutdown
		}
		return err
	}
	// work outlives ctx by the grace period, so in-flight messages can finish.
	work, stop := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stop(nil)
	go func() {
		select {
		case <-ctx.Done():
		case <-work.Done():
			return
		}
		t := time.NewTimer(w.cfg.ShutdownGrace)
		defer t.Stop()
		select {
		case <-t.C:
			stop(errShutdown)
		case <-work.Done():
		}
	}()
	var fl *fleet
	if !w.cfg.NoAffinity {
		if fl, err = w.joinFleet(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		w.fleet.Store(fl)
	}
	planners := newTenants(w, w.jobQueue(), jobs, fl)
	fair := newTenants(w, w.taskQueue(), tasks, fl)
	// One org's tasks may fill at most its share of TASKS: past it, its
	// next job pages wait (planned once its backlog drains), so one
	// tenant's jobs never fill the queue that every tenant's work goes to.
	planners.hold = func(org string) bool { return fair.waiting(org) >= uint64(w.cfg.OrgTaskShare) }
	g := new(errgroup.Group)
	g.Go(func() error { return w.serveFair(ctx, work, planners, w.planStage(), w.cfg.PlanConcurrency) })
	go w.gate.watch(ctx, w)
	if w.cfg.Registerer != nil {
		if err := w.cfg.Registerer.Register(fair); err != nil {
			w.log.Warn("fairness metrics not registered", "error", err)
		} else {
			defer w.cfg.Registerer.Unregister(fair)
		}
	}
	g.Go(func() error {
		return w.serveFair(ctx, work, fair, w.indexStage(), w.cfg.TaskConcurrency)
	})
	g.Go(func() error { return w.serveTracker(ctx, work, tracker) })
	g.Go(func() error { return w.watchMaxDeliveries(ctx) })
	w.log.Info("worker started", "task_concurrency", w.cfg.TaskConcurrency, "tenant_concurrency", w.cfg.TenantConcurrency, "plan_concurrency", w.cfg.PlanConcurrency)
	err = g.Wait()
	w.log.Info("worker stopped")
	return err
}

// jobCancelled reports whether job jobID was cancelled. An unreadable job
// record counts as not cancelled (the work goes on; the tracker reports it).
func (w *Worker) jobCancelled(ctx context.Context, jobID string) bool {
	if jobID == "" {
		return false
	}
	info, _ := w.jobInfo(ctx, jobID)
	return info.cancelled
}

// jobRecord is what tasks read of their job's record: whether it was
// cancelled, and the request's custom metadata (kept on the record, not in
// every task).
type jobRecord struct {
	cancelled bool
	meta      json.RawMessage
}

// jobInfo reads job jobID's record, cached for a second (so a cancel takes
// effect at once fleet-wide, and a job's tasks cost one read a second).
func (w *Worker) jobInfo(ctx context.Context, jobID string) (jobRecord, error) {
	if c, ok := w.jobCache.Get(jobID); ok {
		return c, nil
	}
	e, err := w.jobs.Get(ctx, jobID)
	if err != nil {
		return jobRecord{}, err
	}
	var st struct {
		Status         string          `json:"status"`
		CustomMetadata json.RawMessage `json:"custom_metadata"`
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return jobRecord{}, err
	}
	rec := jobRecord{cancelled: st.Status == schema.JobStatusCancelled, meta: st.CustomMetadata}
	w.jobCache.Add(jobID, rec)
	return rec, nil
}

// customMetadata is what a task's chunks carry: the task's own (tasks of
// earlier versions carried it), else its job record's. A record that cannot
// be read now is retried, not indexed without its metadata.
func (w *Worker) customMetadata(ctx context.Context, task *schema.Task) (json.RawMessage, error) {
	if len(task.CustomMetadata) > 0 || task.JobID == "" {
		return task.CustomMetadata, nil
	}
	info, err := w.jobInfo(ctx, task.JobID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		w.log.Warn("the job record is gone: chunks are published without its custom metadata", "job_id", task.JobID)
		return nil, nil
	}
	if err != nil {
		return nil, schema.Errorf(schema.ClassTransient, "read the job record for its custom metadata: %w", err)
	}
	return info.meta, nil
}
