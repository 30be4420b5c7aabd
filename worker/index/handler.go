// Package index is the handler of TASKS: it indexes or deletes one object
// per task. A task is decoded, its stored object state decides what is left
// to do (decide.go), the object is fetched with the tenant's role, its text
// streamed through extraction and chunking into CHUNKS, and a commit makes
// the version visible (body.go); the object state records it, and an
// outcome event tells the job. Deletes, and claims of notifications, are
// checked against S3 (confirm.go).
//
// Reading order: Handle (this file) → runTask (task.go) → decide
// (decide.go) → indexBody (body.go) → commit.
package index

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/worker/chunk"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/extract"
	"github.com/stevedore-dev/stevedore/worker/meter"
	"github.com/stevedore-dev/stevedore/worker/token"
)

// Config configures a Handler. Every field but PDF and Logger is required.
type Config struct {
	JS jetstream.JetStream
	// Publish publishes msgs and waits for every acknowledgement
	// (meter.Publisher.Publish in the worker).
	Publish  func(ctx context.Context, msgs []schema.Out) error
	Metrics  *meter.Metrics
	Resolver *creds.Resolver
	// Registry receives the AUDIT records of notification claims S3 did not
	// bear out.
	Registry *registry.Registry
	Jobs     *jobs.Cache
	// Collections says which collections are being deleted: their tasks
	// are skipped, and no commit is published into them.
	Collections *collections.Cache
	// Encoding and ChunkTokens: the default tokenizer and the tokens per chunk.
	Encoding    *token.Encoding
	ChunkTokens int
	// MaxObjectBytes: larger objects are skipped with reason too_large.
	MaxObjectBytes int64
	// MaxDecompressedBytes caps what a gzip object may decompress to.
	MaxDecompressedBytes int64
	// PDF reads PDFs; nil skips them as unsupported_type.
	PDF *extract.PDF
	// OCR reads scans and images; nil skips them as OCR unavailable.
	OCR *extract.OCR
	// Gate pauses claiming while CHUNKS is full (see Gate).
	Gate   *Gate
	Logger *slog.Logger
}

// Handler indexes TASKS messages; it is a runner.Handler.
type Handler struct {
	cfg Config
	log *slog.Logger
	m   *meter.Metrics
	// splitters by tokenizer name ("" is cfg.Encoding), made on first use.
	splitMu   sync.Mutex
	splitters map[string]*chunk.Splitter
	objects   jetstream.KeyValue
}

// New returns a Handler bound to the object-state bucket.
func New(ctx context.Context, cfg Config) (*Handler, error) {
	if cfg.JS == nil || cfg.Publish == nil || cfg.Metrics == nil || cfg.Resolver == nil || cfg.Registry == nil || cfg.Jobs == nil || cfg.Collections == nil || cfg.Encoding == nil || cfg.Gate == nil {
		return nil, errors.New("index: JS, Publish, Metrics, Resolver, Registry, Jobs, Collections, Encoding and Gate are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sp, err := chunk.New(cfg.Encoding, cfg.ChunkTokens)
	if err != nil {
		return nil, err
	}
	objects, err := cfg.JS.KeyValue(ctx, schema.BucketObjects)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	for _, r := range []string{ReasonNotDeletedInS3, reasonCreateNotAsClaimed, reasonStaleOverridden} {
		cfg.Metrics.Unconfirmed.WithLabelValues(r) // a series exists before its first event
	}
	return &Handler{cfg: cfg, log: cfg.Logger, m: cfg.Metrics, objects: objects,
		splitters: map[string]*chunk.Splitter{"": sp, cfg.Encoding.Name(): sp}}, nil
}

// Name is the stage label of the handler's metrics and logs.
func (h *Handler) Name() string { return "task" }

// Handle handles one task: decide → fetch → extract → chunk → publish
// chunks → commit → record object state → publish the outcome event.
// Errors go back to the runner, which decides; a task given up on still
// gets a "failed" outcome (GiveUp), so the job's counters stay exact and
// the job completes.
func (h *Handler) Handle(ctx context.Context, msg jetstream.Msg) error {
	task, err := decodeTask(msg.Data())
	if err != nil {
		return err
	}
	ev, err := h.runTask(ctx, task)
	if err != nil {
		return err
	}
	if err := h.cfg.Publish(ctx, []schema.Out{eventMsg(ev)}); err != nil {
		return err
	}
	h.m.Objects.WithLabelValues(string(ev.Outcome)).Inc()
	if task.EventTime != nil && (ev.Outcome == schema.OutcomeIndexed || ev.Outcome == schema.OutcomeDeleted) {
		h.m.Lag.WithLabelValues(string(ev.Outcome)).Observe(time.Since(*task.EventTime).Seconds())
	}
	return nil
}

// decodeTask decodes a task. A task on a sidecar (a notification of its
// change, or a job naming it) becomes its document's: a sidecar is never
// a document, and its change re-reads its document's metadata — the
// sidecar's version, ETag and sequencer say nothing of the document's, so
// only the outcome's ID keeps them (ViaSidecar).
func decodeTask(data []byte) (*schema.Task, error) {
	task, err := schema.DecodeTask(data)
	if err != nil || !schema.IsSidecar(task.Key) {
		return task, err
	}
	task.ViaSidecar = "sidecar:" + task.VersionID + task.Sequencer
	task.Key, task.Op = schema.SidecarDocument(task.Key), schema.OpIndex
	task.VersionID, task.ETag, task.Sequencer, task.Size, task.LastModified = "", "", "", 0, nil
	task.SidecarKnown, task.SidecarETag = false, ""
	task.SkipExisting, task.OverwriteExisting = true, false
	return task, nil
}

// GiveUp is the indexer's give-up outcome: the object failed, with the
// reason and hint. Its failed status is written first; if that cannot be
// written, the give-up fails and the runner keeps the task for later.
func (h *Handler) GiveUp(data []byte, f *schema.ClassError) ([]schema.Out, error) {
	task, err := decodeTask(data)
	if err != nil {
		return nil, nil // undecodable: no job to tell
	}
	ev := event(task, schema.OutcomeFailed)
	ev.Reason, ev.ErrorClass, ev.ErrorCode = PublicReason(f), string(f.Class), f.Code
	if err := h.recordFailure(task, ev); err != nil {
		return nil, err
	}
	return []schema.Out{eventMsg(ev)}, nil
}

// recordFailure records, as its document's status, that an object's index
// task was given up — unless an indexed version of it stands (its chunks
// stay valid and visible) or an erase has it. The write is tried three
// times (the state read again each time: a NATS node restarting or a
// concurrent write fails one); the last error is returned.
func (h *Handler) recordFailure(task *schema.Task, ev *schema.ObjectEvent) error {
	if task.Op != schema.OpIndex {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	key := schema.ObjectKey(task.Org, task.Collection, task.Bucket, task.Key)
	var err error
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		if err = h.saveFailure(ctx, key, task, ev); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	return fmt.Errorf("record the failed status of %s: %w", task.Key, err)
}

// saveFailure writes the failed status of task's object, key, once.
func (h *Handler) saveFailure(ctx context.Context, key string, task *schema.Task, ev *schema.ObjectEvent) error {
	st, rev, err := h.loadState(ctx, key)
	if err != nil {
		return err
	}
	if st != nil && (st.Status == schema.ObjectIndexed || st.Status == schema.ObjectErasing) {
		return nil
	}
	failed := &schema.ObjectState{Bucket: task.Bucket, Key: task.Key, ETag: task.ETag, VersionID: task.VersionID, Status: schema.ObjectFailed,
		Reason: ev.Reason, ErrorCode: cmp.Or(ev.ErrorCode, ev.ErrorClass), JobID: task.JobID, IntegrationID: task.IntegrationID, UpdatedAt: time.Now().UTC()}
	markSeen(failed, task, st) // a sync's listing held it: not a sweep candidate
	if st != nil {
		failed.Sequencer = st.Sequencer
	}
	return h.saveState(ctx, key, failed, rev)
}

// GaveUp counts the failed object once its outcome is durable.
func (h *Handler) GaveUp() { h.m.Objects.WithLabelValues(string(schema.OutcomeFailed)).Inc() }

// PublicReason is a classified error as a customer reads it: the error
// without internals (creds.PublicMessage of the error it wraps) and its
// hint, at most schema.MaxReasonBytes. The raw error is logged by the runner.
func PublicReason(f *schema.ClassError) string {
	msg := creds.PublicMessage(f.Err)
	if f.Hint != "" {
		msg += " (" + f.Hint + ")"
	}
	return schema.Bound(msg)
}

// event is task's outcome o, without details.
func event(t *schema.Task, o schema.Outcome) *schema.ObjectEvent {
	return &schema.ObjectEvent{EventID: schema.ObjectEventID(t.JobID, t.Op, t.Bucket, t.Key, t.VersionID+t.Sequencer+t.ViaSidecar), JobID: t.JobID,
		Org: t.Org, Collection: t.Collection, Bucket: t.Bucket, Key: t.Key, ETag: t.ETag, Outcome: o, At: time.Now().UTC()}
}

func eventMsg(ev *schema.ObjectEvent) schema.Out {
	return schema.Out{Subject: schema.ObjectEventSubject(ev.Org, ev.Collection), MsgID: ev.EventID, Msg: ev}
}
