// Package worker puts a worker together: the runner (worker/runner), which
// claims and settles messages, and its handlers — plan (JOBS: an index job
// page by page), index (TASKS: one object per task) and track (EVENTS:
// outcomes folded into job records). Config is the whole worker's; New
// builds the parts, Run runs them.
//
// Reading order: New and Run (this file) → runner.Run → index.Handler.Handle.
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/schema/schedules"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/extract"
	"github.com/stevedore-dev/stevedore/worker/index"
	"github.com/stevedore-dev/stevedore/worker/meter"
	"github.com/stevedore-dev/stevedore/worker/plan"
	"github.com/stevedore-dev/stevedore/worker/runner"
	"github.com/stevedore-dev/stevedore/worker/sweep"
	"github.com/stevedore-dev/stevedore/worker/tick"
	"github.com/stevedore-dev/stevedore/worker/token"
	"github.com/stevedore-dev/stevedore/worker/track"
)

// Defaults of Config, applied to zero fields by New (withDefaults) or, for
// the runner's own settings, by runner.New; cmd's flags use the same
// constants.
const (
	TaskConcurrencyDefault      = 32
	PlanConcurrencyDefault      = 4
	MaxObjectBytesDefault       = 2 << 30
	MaxDecompressedBytesDefault = 2 << 30
	ShutdownGraceDefault        = runner.ShutdownGraceDefault
	NameDefault                 = runner.NameDefault
	SpillEveryDefault           = runner.SpillEveryDefault
	StealAboveDefault           = runner.StealAboveDefault
	OrgTaskShareDefault         = 250_000
	SweepTimeoutDefault         = time.Hour
)

// orgOfTick is the org of a schedule tick's subject.
func orgOfTick(subject string) (string, bool) {
	org, _, ok := schema.OrgOfTickSubject(subject)
	return org, ok
}

// PlanPerOrg is how many of one org's job pages a worker plans at once.
const PlanPerOrg = 2

// sweepSlots is how many sweeps a worker runs at once (one per org): a
// sweep is long and mostly waits on HEADs.
const sweepSlots = 2

// withDefaults returns cfg with every zero field the worker itself reads
// set to its default; the runner applies its own (claiming, timeouts,
// affinity) the same way.
func (cfg Config) withDefaults() Config {
	cfg.TaskConcurrency = cmp.Or(cfg.TaskConcurrency, TaskConcurrencyDefault)
	cfg.TenantConcurrency = cmp.Or(cfg.TenantConcurrency, max(1, cfg.TaskConcurrency*3/4))
	cfg.TrackBatch = cmp.Or(cfg.TrackBatch, schema.TrackBatch)
	cfg.PlanConcurrency = cmp.Or(cfg.PlanConcurrency, PlanConcurrencyDefault)
	cfg.MaxObjectBytes = cmp.Or(cfg.MaxObjectBytes, MaxObjectBytesDefault)
	cfg.MaxDecompressedBytes = cmp.Or(cfg.MaxDecompressedBytes, MaxDecompressedBytesDefault)
	cfg.SessionPrefix = cmp.Or(cfg.SessionPrefix, creds.SessionPrefixDefault)
	cfg.Name = cmp.Or(cfg.Name, NameDefault)
	cfg.OrgTaskShare = cmp.Or(cfg.OrgTaskShare, OrgTaskShareDefault)
	cfg.SweepTimeout = cmp.Or(cfg.SweepTimeout, SweepTimeoutDefault)
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
	// TaskConcurrency is the number of tasks processed at once; default 32 (TaskConcurrencyDefault).
	TaskConcurrency int
	// TenantConcurrency caps one org's tasks in flight in this worker, so
	// other orgs always find a free slot; default 3/4 of TaskConcurrency.
	TenantConcurrency int
	// DiscoverEvery is how often the worker looks for orgs with tasks; default 250 ms.
	DiscoverEvery time.Duration
	// SpillEvery: an org is served by one worker (by rendezvous hashing
	// over the live workers) plus one more per SpillEvery of its tasks
	// waiting; default 64. See worker/runner/peers.go.
	SpillEvery int
	// StealAbove: a worker with nothing of its own orgs waiting helps
	// other orgs that have at least this many tasks waiting; default 16.
	StealAbove int
	// OrgTaskShare: an org with this many tasks waiting in TASKS gets no
	// more job pages planned until they drain (its share of the queue, ≈ an
	// eighth of TASKS' 1 GiB); default 250,000.
	OrgTaskShare int
	// NoAffinity makes every worker serve every org (AssumeRole calls then
	// grow with the workers); for measurements.
	NoAffinity bool
	// TrackBatch is the most events folded per batch; default schema.TrackBatch.
	TrackBatch int
	// PlanConcurrency is the number of job pages planned at once (at most
	// PlanPerOrg of one org's: a big bucket's lanes go on two at a time on
	// every worker, and other orgs' pages still find a slot); default 4.
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
	// OCR reads scans and images (Tesseract subprocesses, bounded); nil
	// skips them, saying OCR is not available.
	OCR *extract.OCR
	// PageSize is ListObjectsV2 MaxKeys per job page; default 1000.
	PageSize int32
	// SweepMaxShare is the largest share of a sync's scope its sweep
	// deletes without the job's allow_mass_delete; default 0.5 (1: no limit).
	SweepMaxShare float64
	// SweepTimeout bounds one sweep (two passes over the collection's
	// object states and a HEAD per candidate); default 1 hour.
	SweepTimeout time.Duration
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

// Worker claims and handles messages. Create with New, run with Run.
type Worker struct {
	cfg    Config
	log    *slog.Logger
	res    *creds.Resolver
	gate   *index.Gate
	index  *index.Handler
	runner *runner.Runner
}

// New validates cfg and returns a Worker bound to the streams and buckets.
func New(ctx context.Context, cfg Config) (*Worker, error) {
	if cfg.JS == nil || cfg.Registry == nil || cfg.Broker == nil {
		return nil, errors.New("worker: JS, Registry and Broker are required")
	}
	cfg, err := cfg.complete()
	if err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, log: cfg.Logger.With("worker", cfg.Name)}
	m := meter.New(cfg.Registerer)
	pub := &meter.Publisher{JS: cfg.JS, M: m}
	w.res = &creds.Resolver{Registry: cfg.Registry, Broker: cfg.Broker, AWS: cfg.AWS, S3PathStyle: cfg.S3PathStyle,
		SessionPrefix: cfg.SessionPrefix, SessionTemplate: cfg.SessionTemplate, OnStaleRetry: m.StaleRetries.Inc}
	store, err := jobs.Open(ctx, cfg.JS, nil)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	cache := store.Cache()
	colls, err := collections.Open(ctx, cfg.JS, nil)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w.gate = index.NewGate(cfg.JS, m, w.log)
	w.index, err = index.New(ctx, index.Config{JS: cfg.JS, Publish: pub.Publish, Metrics: m, Resolver: w.res, Registry: cfg.Registry, Jobs: cache,
		Collections: colls.Cache(), Encoding: cfg.Encoding, ChunkTokens: cfg.ChunkTokens, MaxObjectBytes: cfg.MaxObjectBytes, MaxDecompressedBytes: cfg.MaxDecompressedBytes,
		PDF: cfg.PDF, OCR: cfg.OCR, Gate: w.gate, Logger: w.log})
	if err != nil {
		return nil, err
	}
	planner, err := plan.New(plan.Config{Publish: pub.Publish, Metrics: m, Resolver: w.res, Jobs: cache, PageSize: cfg.PageSize, Logger: w.log})
	if err != nil {
		return nil, err
	}
	sweeper, err := sweep.New(ctx, sweep.Config{JS: cfg.JS, Publish: pub.Publish, Metrics: m, Resolver: w.res, Registry: cfg.Registry, Jobs: cache,
		Collections: colls, MaxShare: cfg.SweepMaxShare, Logger: w.log})
	if err != nil {
		return nil, err
	}
	sched, err := schedules.Open(ctx, cfg.JS, nil)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w.runner, err = runner.New(w.runnerConfig(handlers{planner, w.index, sweeper, tick.New(store, sched, m, w.log), track.New(store, sched, m, w.log)}, pub))
	if err != nil {
		return nil, err
	}
	return w, nil
}

// complete applies the defaults and the things defaults cannot be: the
// tokenizer, the logger and the S3 connection pool.
func (cfg Config) complete() (Config, error) {
	cfg = cfg.withDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Encoding == nil {
		enc, err := token.Get(token.Cl100kBase)
		if err != nil {
			return cfg, err
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
	return cfg, nil
}

// runnerConfig is the runner's part of cfg: JOBS and TASKS claimed per
// org, EVENTS folded in order. One org's tasks may fill at most its share
// of TASKS (OrgTaskShare): past it, its next job pages wait until its
// backlog drains, so one tenant's jobs never fill the queue that every
// tenant's work goes to.
// handlers are the worker's handlers, one per queue.
type handlers struct {
	plan  *plan.Handler
	index *index.Handler
	sweep *sweep.Handler
	tick  *tick.Handler
	track *track.Handler
}

// taskTimeout bounds one task. With OCR a task may wait for the OCR of
// the documents ahead of it (the slots share the Tesseract processes) and
// then take its own document's OCR budget: the bound leaves room for a
// full budget per turn it may wait. Claims are kept alive by heartbeats
// meanwhile; a crashed worker's tasks are redelivered after the ack wait.
func taskTimeout(cfg Config) time.Duration {
	d := cmp.Or(cfg.MessageTimeout, runner.MessageTimeoutDefault)
	if cfg.OCR == nil {
		return d
	}
	turns := (cfg.TaskConcurrency + cfg.OCR.Processes() - 1) / cfg.OCR.Processes()
	return d + time.Duration(turns)*cfg.OCR.DocTimeout()
}

func (w *Worker) runnerConfig(h handlers, pub *meter.Publisher) runner.Config {
	cfg := w.cfg
	topo := cfg.Topology
	return runner.Config{
		JS: cfg.JS, Classify: creds.ClassifyError, Publish: pub.Publish, Gate: w.gate,
		Queues: []runner.Queue{
			{Kind: "jobs", Stream: schema.StreamJobs, Filter: schema.AllJobs, OrgOf: schema.OrgOfJobSubject, Consumer: topo.PlannerConfig,
				PerOrg: PlanPerOrg, Slots: cfg.PlanConcurrency, MaxDeliver: topo.MaxDeliver, UpdateConsumers: topo.Update,
				HoldOn: "tasks", HoldAbove: cfg.OrgTaskShare, Handler: h.plan},
			{Kind: "tasks", Stream: schema.StreamTasks, Filter: schema.AllTasks, OrgOf: schema.OrgOfTaskSubject, Consumer: topo.IndexerConfig,
				PerOrg: cfg.TenantConcurrency, Slots: cfg.TaskConcurrency, MaxDeliver: topo.MaxDeliver, UpdateConsumers: topo.Update,
				Report: true, Timeout: taskTimeout(cfg), Handler: h.index},
			{Kind: "sweeps", Stream: schema.StreamJobs, Filter: schema.AllSweeps, OrgOf: schema.OrgOfSweepSubject, Consumer: topo.SweeperConfig,
				PerOrg: 1, Slots: sweepSlots, MaxDeliver: topo.MaxDeliver, UpdateConsumers: topo.Update, Timeout: cfg.SweepTimeout, Handler: h.sweep},
			{Kind: "ticks", Stream: schema.StreamSchedules, Filter: schema.AllTicks, OrgOf: orgOfTick, Consumer: topo.TickerConfig,
				PerOrg: 1, Slots: 1, MaxDeliver: topo.MaxDeliver, UpdateConsumers: topo.Update, Handler: h.tick},
		},
		Ordered: &runner.Ordered{Stream: schema.StreamEvents, Consumer: schema.ConsumerTracker, Group: schema.TrackerGroup,
			Batch: cfg.TrackBatch, AckWait: min(topo.AckWait, schema.TrackerAckWait), Handler: h.track},
		DiscoverEvery: cfg.DiscoverEvery, SpillEvery: cfg.SpillEvery, StealAbove: cfg.StealAbove, NoAffinity: cfg.NoAffinity,
		MessageTimeout: cfg.MessageTimeout, Heartbeat: cfg.Heartbeat, ShutdownGrace: cfg.ShutdownGrace,
		Name: cfg.Name, Registerer: cfg.Registerer, Logger: w.log,
	}
}

// Run claims and handles messages until ctx is cancelled, then stops
// claiming, lets in-flight work finish for up to ShutdownGrace, and hands
// back what is left. It returns nil after a clean shutdown.
func (w *Worker) Run(ctx context.Context) error {
	// Tenants are resolved from a watched copy of the registry: no registry
	// read per task (see registry.View for how changes apply).
	view, err := w.cfg.Registry.Watch(ctx, 0)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started: a clean shutdown
		}
		return err
	}
	w.res.Directory = view
	go w.gate.Watch(ctx)
	w.log.Info("worker starting", "task_concurrency", w.cfg.TaskConcurrency, "tenant_concurrency", w.cfg.TenantConcurrency, "plan_concurrency", w.cfg.PlanConcurrency)
	return w.runner.Run(ctx)
}
