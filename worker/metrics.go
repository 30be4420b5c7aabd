package worker

import (
	"github.com/prometheus/client_golang/prometheus"
	"slices"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/extract"
)

type metrics struct {
	claimed      *prometheus.CounterVec
	settled      *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	claim        *prometheus.HistogramVec
	stage        *prometheus.HistogramVec
	chunksFull   prometheus.Gauge
	chunksWaits  prometheus.Counter
	inflight     *prometheus.GaugeVec
	s3Requests   *prometheus.CounterVec
	bytes        prometheus.Counter
	objects      *prometheus.CounterVec
	skips        *prometheus.CounterVec // reason
	chunks       prometheus.Counter
	tokens       prometheus.Counter
	publish      prometheus.Histogram
	dead         *prometheus.CounterVec
	staleRetries prometheus.Counter
	lag          *prometheus.HistogramVec
	redelivered  *prometheus.CounterVec
	duplicates   prometheus.Counter
	unconfirmed  *prometheus.CounterVec
	jobsFinished *prometheus.CounterVec
	jobDuration  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		claimed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_messages_claimed_total",
			Help: "Messages claimed, by stage (plan, task, track)."}, []string{"stage"}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_messages_settled_total",
			Help: "Messages settled, by stage, outcome (ack, nak, dead, handed_back) and error class."}, []string{"stage", "outcome", "error_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stevedore_message_duration_seconds",
			Help: "Time to process one message, by stage.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"stage"}),
		claim: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stevedore_claim_duration_seconds",
			Help:    "Round trip of a pull that claimed a message, by stage (plan, task): how long JetStream takes to hand out work.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"stage"}),
		chunksFull: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stevedore_chunks_full",
			Help: "1 while CHUNKS is at its byte limit and this worker claims no tasks (downstream is behind), else 0."}),
		chunksWaits: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_chunks_full_waits_total",
			Help: "Chunk publishes CHUNKS refused as full; each waits for room and publishes again."}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stevedore_task_stage_duration_seconds",
			Help: "Time spent in each step of a task (get, chunk, publish).", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"step"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "stevedore_messages_inflight",
			Help: "Messages being processed, by stage."}, []string{"stage"}),
		s3Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_s3_requests_total",
			Help: "S3 requests by operation and result (ok or error class)."}, []string{"op", "result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_s3_fetched_bytes_total", Help: "Object bytes read from S3 (named stevedore_s3_bytes_fetched_total before)."}),
		jobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_jobs_finished_total",
			Help: "Jobs that reached a final status, by status (completed, completed_with_errors, failed)."}, []string{"status"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stevedore_job_duration_seconds",
			Help: "From a job's creation to its final status, by status.", Buckets: prometheus.ExponentialBuckets(0.1, 4, 10)}, []string{"status"}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_objects_total",
			Help: "Objects by outcome (indexed, skipped, failed, deleted)."}, []string{"outcome"}),
		skips: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_objects_skipped_total",
			Help: "Objects skipped by what their content is, by reason (extract.Reasons: unsupported_type, too_large, text_too_large, corrupt_archive …): a limit hit is counted here."}, []string{"reason"}),
		chunks:  prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_chunks_published_total", Help: "Chunks published to CHUNKS."}),
		tokens:  prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_tokens_published_total", Help: "Tokens in published chunks."}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "stevedore_publish_duration_seconds", Help: "Time until JetStream acknowledged a batch of publishes.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}),
		unconfirmed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_notifications_unconfirmed_total",
			Help: "Notification claims S3 did not bear out, by reason: not_deleted_in_s3 (a delete of an object S3 still has), create_not_as_claimed (S3 returned another version than the record named; its sequencer is not stored), stale_sequencer_overridden (a stored sequencer contradicted S3)."}, []string{"reason"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_dead_letters_total",
			Help: "Messages copied to DEAD, by error class."}, []string{"error_class"}),
		staleRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_s3_stale_credential_retries_total",
			Help: "S3 calls retried after a stale-token answer invalidated cached credentials."}),
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_messages_redelivered_total",
			Help: "Claims of messages delivered before (a worker crashed, timed out or handed them back), by stage."}, []string{"stage"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_publish_duplicates_total",
			Help: "Publishes JetStream recognised as duplicates by Nats-Msg-Id (redone work that changed nothing)."}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stevedore_notification_lag_seconds",
			Help:    "From an S3 event's eventTime to its chunks (or tombstone) being durable in CHUNKS, by outcome.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300}}, []string{"outcome"}),
	}
	// Every known label value starts at zero: a series exists before its
	// first event, so rates, alerts and dashboards see it.
	for _, c := range schema.ErrorClasses {
		m.dead.WithLabelValues(string(c))
	}
	for _, st := range []string{"plan", "task", "track"} {
		m.claimed.WithLabelValues(st)
		m.redelivered.WithLabelValues(st)
		m.inflight.WithLabelValues(st)
		m.claim.WithLabelValues(st)
	}
	for _, o := range []schema.Outcome{schema.OutcomeIndexed, schema.OutcomeSkipped, schema.OutcomeFailed, schema.OutcomeDeleted} {
		m.objects.WithLabelValues(string(o))
	}
	for _, r := range extract.Reasons {
		m.skips.WithLabelValues(r)
	}
	for _, s := range []string{schema.JobStatusCompleted, schema.JobStatusCompletedWithErrors, schema.JobStatusFailed, schema.JobStatusCancelled} {
		m.jobsFinished.WithLabelValues(s)
	}
	for _, r := range []string{ReasonNotDeletedInS3, reasonCreateNotAsClaimed, reasonStaleOverridden} {
		m.unconfirmed.WithLabelValues(r)
	}
	for _, o := range []schema.Outcome{schema.OutcomeIndexed, schema.OutcomeDeleted} {
		m.lag.WithLabelValues(string(o))
	}
	if reg != nil {
		reg.MustRegister(m.claim, m.chunksFull, m.chunksWaits, m.claimed, m.settled, m.duration, m.stage, m.inflight, m.s3Requests, m.bytes, m.objects, m.skips, m.chunks, m.tokens, m.publish, m.dead, m.staleRetries, m.lag, m.redelivered, m.duplicates, m.unconfirmed, m.jobsFinished, m.jobDuration)
	}
	return m
}

func (m *metrics) s3(op string, err error) {
	result := "ok"
	if err != nil {
		result = string(creds.Classify(err).Class)
	}
	m.s3Requests.WithLabelValues(op, result).Inc()
}

// skipped counts an object skipped for reason (unknown reasons as "other",
// so the label stays bounded).
func (m *metrics) skipped(reason string) {
	if !slices.Contains(extract.Reasons, reason) {
		reason = "other"
	}
	m.skips.WithLabelValues(reason).Inc()
}
