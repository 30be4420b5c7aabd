// Package meter holds the worker's domain metrics (objects, bytes, chunks,
// S3 requests, job outcomes), shared by its handlers, and the publisher that
// measures what it publishes. The runner's own metrics (claims,
// settlements) are in worker/runner.
package meter

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/extract"
)

// Metrics are the handlers' metrics. Create with New.
type Metrics struct {
	Stage        *prometheus.HistogramVec
	ChunksFull   prometheus.Gauge
	ChunksWaits  prometheus.Counter
	s3Requests   *prometheus.CounterVec
	Bytes        prometheus.Counter
	Objects      *prometheus.CounterVec
	skips        *prometheus.CounterVec // reason
	Chunks       prometheus.Counter
	Tokens       prometheus.Counter
	publish      prometheus.Histogram
	StaleRetries prometheus.Counter
	Lag          *prometheus.HistogramVec
	duplicates   prometheus.Counter
	unbatched    prometheus.Counter
	Unconfirmed  *prometheus.CounterVec
	JobsFinished *prometheus.CounterVec
	JobDuration  *prometheus.HistogramVec
	// SweepObjects counts what sweeps found, by result: candidate (held,
	// not in the listing), deleted, kept, unconfirmed.
	SweepObjects *prometheus.CounterVec
	// Sweeps counts ended sweeps by status (schema.Sweep*).
	Sweeps *prometheus.CounterVec
	// Erased counts documents erase jobs removed, Erases the erase jobs
	// that ended, by kind (delete_document, wipe, delete_collection).
	Erased, Erases *prometheus.CounterVec
	// ScheduleUpdatesFailed counts scheduled syncs whose end could not be
	// recorded on their schedule by the tracker (the next tick does).
	ScheduleUpdatesFailed prometheus.Counter
	// Ticks counts schedule ticks by outcome: started (a sync), duplicate
	// (handled before), overlap
	// (the last sync still ran), cleared (the schedule was gone).
	Ticks *prometheus.CounterVec
	// MetadataUpdates counts documents whose chunks were published again
	// for a metadata-only change (no extraction).
	MetadataUpdates prometheus.Counter
	// OCRPages counts pages (scanned PDF pages, image files' pages) read by OCR.
	OCRPages prometheus.Counter
}

// New makes the metrics, registered with reg (nil: none).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ChunksFull: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stevedore_chunks_full",
			Help: "1 while CHUNKS is at its byte limit and this worker claims no tasks (downstream is behind), else 0."}),
		ChunksWaits: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_chunks_full_waits_total",
			Help: "Chunk publishes CHUNKS refused as full; each waits for room and publishes again."}),
		Stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stevedore_task_stage_duration_seconds",
			Help: "Time spent in each step of a task (get, chunk, publish).", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"step"}),
		s3Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_s3_requests_total",
			Help: "S3 requests by operation and result (ok or error class)."}, []string{"op", "result"}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_s3_fetched_bytes_total", Help: "Object bytes read from S3."}),
		JobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_jobs_finished_total",
			Help: "Jobs that reached a final status, by status (completed, completed_with_errors, failed)."}, []string{"status"}),
		JobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stevedore_job_duration_seconds",
			Help: "From a job's creation to its final status, by status.", Buckets: prometheus.ExponentialBuckets(0.1, 4, 10)}, []string{"status"}),
		Objects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_objects_total",
			Help: "Objects by outcome (indexed, skipped, failed, deleted)."}, []string{"outcome"}),
		skips: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_objects_skipped_total",
			Help: "Objects skipped by what their content is, by reason (extract.Reasons: unsupported_type, too_large, text_too_large, corrupt_archive …): a limit hit is counted here."}, []string{"reason"}),
		Chunks:  prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_chunks_published_total", Help: "Chunks published to CHUNKS."}),
		Tokens:  prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_tokens_published_total", Help: "Tokens in published chunks."}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "stevedore_publish_duration_seconds", Help: "Time until JetStream acknowledged a batch of publishes.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}),
		Unconfirmed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_notifications_unconfirmed_total",
			Help: "Notification claims S3 did not bear out, by reason: not_deleted_in_s3 (a delete of an object S3 still has), create_not_as_claimed (S3 returned another version than the record named; its sequencer is not stored), stale_sequencer_overridden (a stored sequencer contradicted S3)."}, []string{"reason"}),
		StaleRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_s3_stale_credential_retries_total",
			Help: "S3 calls retried after a stale-token answer invalidated cached credentials."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_publish_duplicates_total",
			Help: "Publishes JetStream recognised as duplicates by Nats-Msg-Id (redone work that changed nothing); a listing page's tasks go as one batch, whose duplicates are not counted."}),
		unbatched: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_publish_unbatched_total",
			Help: "Listing pages whose tasks NATS would not take as one fast batch (TASKS without allow_batched, nats-server < 2.14, or TASKS at its limit of open batches), published one by one instead: slower, nothing lost."}),
		SweepObjects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_sweep_objects_total",
			Help: "Objects sweeps of syncs looked at, by result: candidate (held in the scope, not in the complete listing), deleted (S3 confirmed it gone: tombstoned), excluded (the job's filters now leave it out: tombstoned without asking S3), kept (S3 still has it), unconfirmed (S3 did not answer a clean 404: kept)."}, []string{"result"}),
		Sweeps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_sweeps_total",
			Help: "Sweeps of syncs that ended, by status: done, incomplete (some candidates unconfirmed), refused (over the mass-delete share), skipped (cancelled), failed."}, []string{"status"}),
		Erased: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_erased_documents_total",
			Help: "Documents erase jobs removed (chunks tombstoned, state removed), by job kind: delete_document, wipe, delete_collection."}, []string{"kind"}),
		Erases: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_erase_jobs_total",
			Help: "Erase jobs that ended, by kind: delete_document, wipe, delete_collection."}, []string{"kind"}),
		ScheduleUpdatesFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_schedule_updates_failed_total",
			Help: "Scheduled syncs whose end the tracker could not record on their schedule (the schedule's next tick records it)."}),
		Ticks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_schedule_ticks_total",
			Help: "Schedule ticks by outcome: started (a sync job), duplicate (a tick handled before: no second job), overlap (the schedule's last sync was still running: no second one), cleared (the schedule was gone)."}, []string{"outcome"}),
		MetadataUpdates: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_metadata_updates_total", Help: "Documents whose chunks were published again with new metadata (user metadata, sidecar, tags or custom metadata changed; the same bytes), without extracting."}),
		OCRPages:        prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_ocr_pages_total", Help: "Pages read by OCR (Tesseract): scanned PDF pages and the pages of image files."}),
		Lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stevedore_notification_lag_seconds",
			Help:    "From an S3 event's eventTime to its chunks (or tombstone) being durable in CHUNKS, by outcome.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300}}, []string{"outcome"}),
	}
	m.zero()
	if reg != nil {
		reg.MustRegister(m.ChunksFull, m.ChunksWaits, m.Stage, m.s3Requests, m.Bytes, m.Objects, m.skips, m.Chunks, m.Tokens, m.publish, m.StaleRetries, m.Lag, m.duplicates, m.unbatched, m.Unconfirmed, m.JobsFinished, m.JobDuration, m.SweepObjects, m.Sweeps, m.Erased, m.Erases, m.ScheduleUpdatesFailed, m.Ticks, m.MetadataUpdates, m.OCRPages)
	}
	return m
}

// zero starts every known label value at zero: a series exists before its
// first event, so rates, alerts and dashboards see it.
func (m *Metrics) zero() {
	for _, o := range []schema.Outcome{schema.OutcomeIndexed, schema.OutcomeSkipped, schema.OutcomeFailed, schema.OutcomeDeleted} {
		m.Objects.WithLabelValues(string(o))
	}
	for _, r := range extract.Reasons {
		m.skips.WithLabelValues(r)
	}
	for _, s := range []string{schema.JobStatusCompleted, schema.JobStatusCompletedWithErrors, schema.JobStatusFailed, schema.JobStatusCancelled} {
		m.JobsFinished.WithLabelValues(s)
	}
	for _, o := range []schema.Outcome{schema.OutcomeIndexed, schema.OutcomeDeleted} {
		m.Lag.WithLabelValues(string(o))
	}
	for _, r := range []string{"candidate", "deleted", "excluded", "kept", "unconfirmed"} {
		m.SweepObjects.WithLabelValues(r)
	}
	for _, k := range []schema.JobKind{schema.JobDeleteDocument, schema.JobWipe, schema.JobDeleteCollection} {
		m.Erased.WithLabelValues(string(k))
		m.Erases.WithLabelValues(string(k))
	}
	for _, o := range []string{"started", "duplicate", "overlap", "cleared"} {
		m.Ticks.WithLabelValues(o)
	}
	for _, st := range []string{schema.SweepDone, schema.SweepIncomplete, schema.SweepRefused, schema.SweepSkipped, schema.SweepFailed} {
		m.Sweeps.WithLabelValues(st)
	}
}

// S3 counts one S3 request of op by its result.
func (m *Metrics) S3(op string, err error) {
	result := "ok"
	if err != nil {
		result = string(creds.Classify(err).Class)
	}
	m.s3Requests.WithLabelValues(op, result).Inc()
}

// Skipped counts an object skipped for reason (unknown reasons as "other",
// so the label stays bounded).
func (m *Metrics) Skipped(reason string) {
	if !slices.Contains(extract.Reasons, reason) {
		reason = "other"
	}
	m.skips.WithLabelValues(reason).Inc()
}
