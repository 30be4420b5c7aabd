// Package sweep is the handler of sweeps: once a sync (a bucket or
// directory job with delete_missing) has listed its whole scope and every
// listed object has an outcome, it finds the objects stevedore still holds
// in that scope that the listing did not contain, confirms each gone with
// the tenant's role (HEAD → 404), and tombstones its chunks.
//
// What guards against mass deletes: only a complete listing is swept (the
// tracker publishes the sweep only then; max_files or a cancel skips it), a
// HEAD that is not a clean 404 deletes nothing, and a sweep whose
// candidates exceed MaxShare of the scope deletes nothing unless the job
// allows it (allow_mass_delete) — refused, counted and audited.
//
// Cost: two streaming passes over the collection's object states (count,
// then act), never all of them in memory, and one HEAD per candidate.
package sweep

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/meter"
)

// Defaults of Config.
const (
	MaxShareDefault    = 0.5
	ConcurrencyDefault = 16
)

// Config configures a Handler. Every field but MaxShare, Concurrency and
// Logger is required.
type Config struct {
	JS jetstream.JetStream
	// Publish publishes msgs and waits for every acknowledgement.
	Publish  func(ctx context.Context, msgs []schema.Out) error
	Metrics  *meter.Metrics
	Resolver *creds.Resolver
	Registry *registry.Registry // the AUDIT of refused sweeps
	Jobs     *jobs.Cache
	// Collections removes a deleted collection's record (erase jobs).
	Collections *collections.Store
	// MaxShare is the largest share of the scope's held objects a sweep
	// deletes without the job's allow_mass_delete; default 0.5; 1 turns
	// the check off.
	MaxShare float64
	// Concurrency is the HEADs in flight per sweep; default 16.
	Concurrency int
	Logger      *slog.Logger
}

// Handler sweeps syncs; it is a runner.Handler.
type Handler struct {
	cfg     Config
	objects jetstream.KeyValue
	log     *slog.Logger
}

// New returns a Handler bound to the object states.
func New(ctx context.Context, cfg Config) (*Handler, error) {
	if cfg.JS == nil || cfg.Publish == nil || cfg.Metrics == nil || cfg.Resolver == nil || cfg.Registry == nil || cfg.Jobs == nil || cfg.Collections == nil {
		return nil, errors.New("sweep: JS, Publish, Metrics, Resolver, Registry, Jobs and Collections are required")
	}
	cfg.MaxShare = cmp.Or(cfg.MaxShare, MaxShareDefault)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, ConcurrencyDefault)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	objects, err := cfg.JS.KeyValue(ctx, schema.BucketObjects)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	return &Handler{cfg: cfg, objects: objects, log: cfg.Logger}, nil
}

// Name is the stage label of the handler's metrics and logs.
func (h *Handler) Name() string { return "sweep" }

// Handle sweeps one sync's scope and publishes how it ended (JobSwept),
// or runs an erase job (erase.go). Redelivered after a crash it starts
// again: what was deleted is no longer a candidate, and every publish has a
// deterministic ID.
func (h *Handler) Handle(ctx context.Context, msg jetstream.Msg) error {
	job, err := schema.DecodeJob(msg.Data())
	if err != nil {
		return err
	}
	if job.Kind == schema.JobRetry {
		return h.retry(ctx, job)
	}
	if job.Kind.Erases() {
		if md, err := msg.Metadata(); err == nil && md.NumDelivered > 1 {
			if moved, err := h.handOver(ctx, job); err != nil || moved {
				return err
			}
		}
		return h.erase(ctx, job)
	}
	if !job.Sweep || job.Kind == schema.JobFile {
		return schema.Errorf(schema.ClassPermanent, "sweep: job %s page %d is not a sweep", job.JobID, job.Page)
	}
	result, err := h.sweep(ctx, job)
	if err != nil {
		return err
	}
	return h.ended(ctx, job, result)
}

// GiveUp is the sweep's give-up outcome: the sweep failed, with why; the
// job ends completed_with_errors.
func (h *Handler) GiveUp(data []byte, f *schema.ClassError) ([]schema.Out, error) {
	job, err := schema.DecodeJob(data)
	if err != nil {
		return nil, nil
	}
	if job.Kind.Erases() || job.Kind == schema.JobRetry {
		ev := &schema.JobEvent{EventID: schema.JobFailedEventID(job.JobID), JobID: job.JobID, Org: job.Org, Collection: job.Collection,
			Type: schema.JobFailed, Reason: schema.Bound(string(job.Kind) + " could not finish: " + f.Err.Error()), // NATS's errors: no AWS detail to keep private ErrorClass: string(f.Class),
			ErrorCode: f.Code, At: time.Now().UTC()}
		return []schema.Out{{Subject: schema.JobEventSubject(job.Org, job.Collection), MsgID: ev.EventID, Msg: ev}}, nil
	}
	h.cfg.Metrics.Sweeps.WithLabelValues(schema.SweepFailed).Inc()
	return []schema.Out{swept(job, &schema.Sweep{Status: schema.SweepFailed, Reason: schema.Bound(creds.PublicMessage(f.Err))})}, nil
}

// sweep counts the scope, refuses a mass delete, then deletes what S3
// confirms gone.
func (h *Handler) sweep(ctx context.Context, job *schema.Job) (*schema.Sweep, error) {
	cctx, cancel := context.WithTimeout(ctx, schema.RequestTimeout)
	cancelled := h.cfg.Jobs.Cancelled(cctx, job.JobID)
	cancel()
	if cancelled {
		return &schema.Sweep{Status: schema.SweepSkipped, Reason: "the job was cancelled: nothing was swept"}, nil
	}
	t, err := h.cfg.Resolver.Tenant(ctx, job.Org, job.IntegrationID, job.Bucket, job.Prefix)
	if err != nil {
		return nil, err
	}
	t.CredentialRef = job.CredentialRef
	held, candidates, err := h.count(ctx, job)
	if err != nil {
		return nil, err
	}
	res := &schema.Sweep{Status: schema.SweepDone, Held: held, Candidates: candidates}
	if refused := h.refuse(ctx, job, res); refused {
		return res, nil
	}
	s := &pass{h: h, job: job, tenant: t}
	if err := s.run(ctx); err != nil {
		return nil, err
	}
	res.Deleted, res.Excluded, res.Kept, res.Unconfirmed = s.deleted.Load(), s.excluded.Load(), s.kept.Load(), s.unconfirmed.Load()
	if res.Unconfirmed > 0 {
		res.Status = schema.SweepIncomplete
		res.Reason = fmt.Sprintf("%d candidates could not be confirmed gone (S3 did not answer a clean 404): kept, for the next sync", res.Unconfirmed)
	}
	return res, nil
}

// refuse reports whether the sweep would delete more than MaxShare of what
// is held and the job does not allow it; then res says so, and the refusal
// is audited.
func (h *Handler) refuse(ctx context.Context, job *schema.Job, res *schema.Sweep) bool {
	if job.AllowMassDelete || h.cfg.MaxShare >= 1 || res.Candidates == 0 || float64(res.Candidates) <= h.cfg.MaxShare*float64(res.Held) {
		return false
	}
	res.Status, res.MaxShare = schema.SweepRefused, h.cfg.MaxShare
	res.Reason = fmt.Sprintf("%d of the %d objects held in the scope (%.0f%%) are missing from the listing, over the %.0f%% limit: nothing was deleted; "+
		"if they are really gone, sync again with \"allow_mass_delete\": true", res.Candidates, res.Held, 100*float64(res.Candidates)/float64(res.Held), 100*h.cfg.MaxShare)
	h.cfg.Registry.Audit(ctx, job.Org, "worker", "sync.sweep_refused", "mass_delete", fmt.Sprintf("job %s s3://%s/%s: %d of %d held missing", job.JobID, job.Bucket, job.Prefix, res.Candidates, res.Held))
	h.log.Warn("sweep refused: too many objects missing from the listing", "org", job.Org, "collection", job.Collection, "job_id", job.JobID,
		"held", res.Held, "candidates", res.Candidates, "max_share", h.cfg.MaxShare)
	return true
}

// ended publishes how the sweep ended, and counts it.
func (h *Handler) ended(ctx context.Context, job *schema.Job, res *schema.Sweep) error {
	if err := h.cfg.Publish(ctx, []schema.Out{swept(job, res)}); err != nil {
		return err
	}
	h.cfg.Metrics.Sweeps.WithLabelValues(res.Status).Inc()
	h.log.Info("sweep ended", "org", job.Org, "collection", job.Collection, "job_id", job.JobID, "status", res.Status,
		"held", res.Held, "candidates", res.Candidates, "deleted", res.Deleted, "kept", res.Kept, "unconfirmed", res.Unconfirmed)
	return nil
}

func swept(job *schema.Job, res *schema.Sweep) schema.Out {
	ev := &schema.JobEvent{EventID: schema.SweptEventID(job.JobID), JobID: job.JobID, Org: job.Org, Collection: job.Collection,
		Type: schema.JobSwept, Page: job.Page, Sweep: res, At: time.Now().UTC()}
	return schema.Out{Subject: schema.JobEventSubject(job.Org, job.Collection), MsgID: ev.EventID, Msg: ev}
}

// count streams the collection's object states: how many the scope holds,
// and how many of those no listing saw since the sync began (candidates).
func (h *Handler) count(ctx context.Context, job *schema.Job) (held, candidates int64, err error) {
	err = h.each(ctx, job, func(_ jetstream.KeyValueEntry, st *schema.ObjectState) error {
		held++
		if !st.SeenSince(job.JobID, job.CreatedAt) {
			candidates++
		}
		return nil
	})
	return held, candidates, err
}

// each calls fn for every object state held in job's scope (indexed,
// skipped or failed, in its bucket, under its prefix), streaming
// (collections.Each).
func (h *Handler) each(ctx context.Context, job *schema.Job, fn func(jetstream.KeyValueEntry, *schema.ObjectState) error) error {
	err := collections.Each(ctx, h.cfg.JS, job.Org, job.Collection, func(e jetstream.KeyValueEntry, st *schema.ObjectState) error {
		if st.Bucket != job.Bucket || !strings.HasPrefix(st.Key, job.Prefix) ||
			(st.Status != schema.ObjectIndexed && st.Status != schema.ObjectSkipped && st.Status != schema.ObjectFailed) {
			return nil
		}
		return fn(e, st)
	})
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	return nil
}
