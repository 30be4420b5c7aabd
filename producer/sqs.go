package producer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/producer/notify"
	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

// SQSAPI is the part of the SQS client the bridge uses.
type SQSAPI interface {
	ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(context.Context, *sqs.DeleteMessageBatchInput, ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibilityBatch(context.Context, *sqs.ChangeMessageVisibilityBatchInput, ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

// Queue is one SQS queue and the client that reads it (through our own
// identity, or a customer role assumed with its ExternalId).
type Queue struct {
	URL    string
	Client SQSAPI
	// Org binds a queue in a customer's account to the org it belongs to:
	// anyone who may sqs:SendMessage to it (the customer) can write records,
	// so its records are routed only to that org; a record naming a bucket
	// routed to another org goes to DEAD as foreign_bucket, audited.
	// Empty for stevedore's own queues.
	Org string
	// AllowOrgs, for one of stevedore's own queues, lists the only orgs its
	// records may be routed to (the queue policy admits those customers'
	// buckets); empty admits every org.
	AllowOrgs []string
	// health, for a queue attached over the API, is what the bridge saw.
	health *health
}

// admits reports whether a record routed to org may come through q.
func (q Queue) admits(org string) bool {
	if q.Org != "" {
		return org == q.Org
	}
	return len(q.AllowOrgs) == 0 || slices.Contains(q.AllowOrgs, org)
}

// BridgeConfig configures the SQS bridge. Zero values take the defaults in
// the comments.
type BridgeConfig struct {
	JS       jetstream.JetStream // required
	Registry *registry.Registry  // required
	// Queues are the queues given at start (--sqs-queue-url).
	Queues []Queue
	// Attach makes the Queue of a queue a customer attached over the API
	// (read through their integration's role); nil: attached queues are
	// not read. Queues or Attach is required.
	Attach func(*registry.NotificationQueue) (Queue, error)
	// HealthEvery is how often attached queues' health is written; default 5 s.
	HealthEvery time.Duration
	// Pollers per queue; default 2.
	Pollers int
	// WaitTime of each long poll; default 20 s (the SQS maximum).
	WaitTime time.Duration
	// Visibility a received message gets, renewed every Visibility/3 while
	// its batch is handled; default 60 s.
	Visibility time.Duration
	// MaxReceives: a message received more often goes to DEAD; default 5.
	MaxReceives int
	// ShutdownWait bounds how long a long poll in flight at shutdown may
	// still run; default 5 s.
	ShutdownWait time.Duration
	// RetryDelay: visibility given back to a message whose publishes failed,
	// so it returns after this long; default 10 s.
	RetryDelay time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// BeforePublish, when set, runs before the publishes of each parsed
	// message; an error keeps the message for retry. Tests use it to hold a
	// message in flight or to fail it.
	BeforePublish func(ctx context.Context, messageID string) error
}

// Bridge turns S3 notifications read from SQS into TASKS. An SQS message is
// deleted only after JetStream acknowledged every task and dead letter made
// from it; until then its visibility is extended. Task message IDs come from
// bucket, key, version and sequencer, so redeliveries publish nothing twice.
type Bridge struct {
	cfg      BridgeConfig
	log      *slog.Logger
	routes   *registry.RouteTable
	attached *registry.QueueSet // nil without cfg.Attach
	running  running            // the attached queues polled (attached.go)
	m        *bridgeMetrics
	pause    pauser
}

// bridgeMetrics are labelled by queue: the queue's name (the last part of
// its URL), so that a customer's queue that stops or floods shows as itself.
type bridgeMetrics struct {
	received, deleted, extended *prometheus.CounterVec
	deleteFailed, receiveErrors *prometheus.CounterVec
	records                     *prometheus.CounterVec // queue, outcome
	sequencersIgnored           *prometheus.CounterVec // queue
	paused                      prometheus.Counter
}

// queueLabel is a queue's metric label: its name, the last part of its URL.
func queueLabel(url string) string { return url[strings.LastIndexByte(url, '/')+1:] }

// Record outcomes.
const (
	RecordRouted     = "routed"
	RecordIgnored    = "ignored"
	RecordUnroutable = "unroutable"
	RecordInvalid    = "invalid"
	RecordForeign    = "foreign_bucket" // routed to an org the queue may not speak for
)

// NewBridge validates cfg and loads the route table (followed live until ctx ends).
func NewBridge(ctx context.Context, cfg BridgeConfig) (*Bridge, error) {
	if cfg.JS == nil || cfg.Registry == nil || (len(cfg.Queues) == 0 && cfg.Attach == nil) {
		return nil, errors.New("bridge: JS, Registry, and Queues or Attach are required")
	}
	cfg.HealthEvery = cmp.Or(cfg.HealthEvery, HealthEveryDefault)
	if cfg.Pollers == 0 {
		cfg.Pollers = 2
	}
	if cfg.WaitTime == 0 {
		cfg.WaitTime = 20 * time.Second
	}
	if cfg.Visibility == 0 {
		cfg.Visibility = time.Minute
	}
	if cfg.MaxReceives == 0 {
		cfg.MaxReceives = 5
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = 10 * time.Second
	}
	if cfg.ShutdownWait == 0 {
		cfg.ShutdownWait = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	routes, err := cfg.Registry.WatchRoutes(ctx)
	if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	m := &bridgeMetrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_sqs_messages_received_total", Help: "SQS messages received, by queue."}, []string{"queue"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_sqs_messages_deleted_total",
			Help: "SQS messages deleted after their tasks were acknowledged, by queue."}, []string{"queue"}),
		extended: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_sqs_visibility_extensions_total",
			Help: "Visibility-timeout extensions of messages being handled, by queue."}, []string{"queue"}),
		deleteFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_sqs_delete_failures_total",
			Help: "Batch-delete entries SQS refused (the message returns and is deduplicated), by queue."}, []string{"queue"}),
		receiveErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_sqs_receive_errors_total", Help: "Failed ReceiveMessage calls, by queue."}, []string{"queue"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_sqs_records_total",
			Help: "Notification records by queue and outcome (routed, ignored, unroutable, invalid, foreign_bucket)."}, []string{"queue", "outcome"}),
		sequencersIgnored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stevedore_sqs_sequencers_ignored_total",
			Help: "Notification records routed without their sequencer, which was not hexadecimal, by queue."}, []string{"queue"}),
		paused: prometheus.NewCounter(prometheus.CounterOpts{Name: "stevedore_sqs_backpressure_pauses_total",
			Help: "Times receiving paused because JetStream refused work."}),
	}
	for _, q := range cfg.Queues {
		m.zero(q.URL)
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(m.received, m.deleted, m.extended, m.deleteFailed, m.receiveErrors, m.records, m.sequencersIgnored, m.paused)
	}
	b := &Bridge{cfg: cfg, log: cfg.Logger, routes: routes, m: m}
	if cfg.Attach != nil {
		if b.attached, err = cfg.Registry.WatchQueues(ctx); err != nil {
			return nil, fmt.Errorf("bridge: %w", err)
		}
	}
	return b, nil
}

// zero starts a queue's series at zero, so alerts see them before the
// first record.
func (m *bridgeMetrics) zero(url string) {
	ql := queueLabel(url)
	for _, o := range []string{RecordRouted, RecordIgnored, RecordUnroutable, RecordInvalid, RecordForeign} {
		m.records.WithLabelValues(ql, o)
	}
	for _, c := range []*prometheus.CounterVec{m.received, m.deleted, m.extended, m.deleteFailed, m.receiveErrors, m.sequencersIgnored} {
		c.WithLabelValues(ql)
	}
}

// Run polls every queue with cfg.Pollers pollers until ctx ends: those
// given at start, and those attached over the API as they come and go.
func (b *Bridge) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	if b.attached != nil {
		g.Go(func() error { b.follow(gctx); return nil })
	}
	for _, q := range b.cfg.Queues {
		for i := 0; i < b.cfg.Pollers; i++ {
			g.Go(func() error { b.poll(gctx, q); return nil })
		}
	}
	return g.Wait()
}

func (b *Bridge) poll(ctx context.Context, q Queue) {
	errDelay := time.Second
	for ctx.Err() == nil {
		if err := b.pause.wait(ctx); err != nil {
			return
		}
		// On shutdown the long poll gets ShutdownWait to return before it is
		// cancelled: a cancelled poll may leave the messages SQS was about to
		// return out of view until their visibility runs out (delayed, not
		// lost); what a finished poll brings is handed back at once.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.WaitTime+15*time.Second)
		stopAfter := context.AfterFunc(ctx, func() { time.AfterFunc(b.cfg.ShutdownWait, cancel) })
		out, err := q.Client.ReceiveMessage(rctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(q.URL), MaxNumberOfMessages: 10, WaitTimeSeconds: int32(b.cfg.WaitTime / time.Second),
			VisibilityTimeout:           int32(b.cfg.Visibility / time.Second),
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
		})
		stopAfter()
		cancel()
		if err == nil && ctx.Err() != nil {
			hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			b.releaseBatch(hctx, q, out.Messages, 0)
			hcancel()
			return
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.m.receiveErrors.WithLabelValues(queueLabel(q.URL)).Inc()
			q.health.failed(err)
			b.log.Warn("sqs receive failed", "queue", q.URL, "error", err, "retry_in", errDelay)
			sleep(ctx, errDelay)
			errDelay = min(2*errDelay, 30*time.Second)
			continue
		}
		errDelay = time.Second
		q.health.received()
		if len(out.Messages) > 0 {
			b.handleBatch(ctx, q, out.Messages)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// handleBatch handles up to ten messages concurrently, extending their
// visibility until each is settled, then deletes the finished ones in one
// batch and gives the others a short visibility so they return soon.
func (b *Bridge) handleBatch(ctx context.Context, q Queue, msgs []sqstypes.Message) {
	b.m.received.WithLabelValues(queueLabel(q.URL)).Add(float64(len(msgs)))
	var mu sync.Mutex
	inflight := map[string]sqstypes.Message{}
	for _, m := range msgs {
		inflight[aws.ToString(m.MessageId)] = m
	}
	stopExtending := b.extendVisibility(ctx, q, &mu, inflight)
	var wg sync.WaitGroup
	var done, retry []sqstypes.Message
	for _, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := b.handle(ctx, q, m)
			mu.Lock()
			defer mu.Unlock()
			delete(inflight, aws.ToString(m.MessageId))
			if err != nil {
				retry = append(retry, m)
				if ctx.Err() == nil {
					b.log.Warn("sqs message kept for retry", "queue", q.URL, "message_id", aws.ToString(m.MessageId), "error", err)
				}
				return
			}
			done = append(done, m)
		}()
	}
	wg.Wait()
	stopExtending()
	// Settle even when shutting down: deleting finished messages and handing
	// the others back must not wait for their visibility to run out.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	b.deleteBatch(sctx, q, done)
	delay := b.cfg.RetryDelay
	if ctx.Err() != nil {
		delay = 0 // shutting down: hand back at once
	}
	b.releaseBatch(sctx, q, retry, delay)
}

// extendVisibility keeps the messages still in inflight (guarded by mu)
// invisible to other receivers, extending them every third of the
// visibility timeout, until the returned stop is called (it waits for an
// extension under way).
func (b *Bridge) extendVisibility(ctx context.Context, q Queue, mu *sync.Mutex, inflight map[string]sqstypes.Message) (stop func()) {
	stopped := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(b.cfg.Visibility / 3)
		defer t.Stop()
		for {
			select {
			case <-stopped:
				return
			case <-t.C:
			}
			mu.Lock()
			var entries []sqstypes.ChangeMessageVisibilityBatchRequestEntry
			for id, m := range inflight {
				entries = append(entries, sqstypes.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(id), ReceiptHandle: m.ReceiptHandle,
					VisibilityTimeout: int32(b.cfg.Visibility / time.Second)})
			}
			mu.Unlock()
			if len(entries) == 0 {
				continue
			}
			if _, err := q.Client.ChangeMessageVisibilityBatch(context.WithoutCancel(ctx), &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(q.URL), Entries: entries}); err != nil {
				b.log.Warn("sqs visibility extension failed", "queue", q.URL, "error", err)
			} else {
				b.m.extended.WithLabelValues(queueLabel(q.URL)).Add(float64(len(entries)))
			}
		}
	}()
	return func() { close(stopped); <-finished }
}

func (b *Bridge) deleteBatch(ctx context.Context, q Queue, msgs []sqstypes.Message) {
	if len(msgs) == 0 {
		return
	}
	entries := make([]sqstypes.DeleteMessageBatchRequestEntry, 0, len(msgs))
	for _, m := range msgs {
		entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: m.MessageId, ReceiptHandle: m.ReceiptHandle})
	}
	out, err := q.Client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(q.URL), Entries: entries})
	if err != nil {
		// Every task is durable and deduplicated: the messages come back
		// after their visibility and are deleted then.
		b.m.deleteFailed.WithLabelValues(queueLabel(q.URL)).Add(float64(len(entries)))
		b.log.Warn("sqs batch delete failed", "queue", q.URL, "messages", len(entries), "error", err)
		return
	}
	b.m.deleted.WithLabelValues(queueLabel(q.URL)).Add(float64(len(out.Successful)))
	for _, f := range out.Failed {
		b.m.deleteFailed.WithLabelValues(queueLabel(q.URL)).Inc()
		b.log.Warn("sqs delete refused", "queue", q.URL, "message_id", aws.ToString(f.Id), "code", aws.ToString(f.Code), "reason", aws.ToString(f.Message))
	}
}

func (b *Bridge) releaseBatch(ctx context.Context, q Queue, msgs []sqstypes.Message, delay time.Duration) {
	if len(msgs) == 0 {
		return
	}
	var entries []sqstypes.ChangeMessageVisibilityBatchRequestEntry
	for _, m := range msgs {
		entries = append(entries, sqstypes.ChangeMessageVisibilityBatchRequestEntry{Id: m.MessageId, ReceiptHandle: m.ReceiptHandle,
			VisibilityTimeout: int32(delay / time.Second)})
	}
	if _, err := q.Client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(q.URL), Entries: entries}); err != nil {
		b.log.Warn("sqs release failed; the messages return after their visibility timeout", "queue", q.URL, "error", err)
	}
}

// handle turns one SQS message into tasks and dead letters and waits until
// JetStream acknowledged all of them. nil means the message may be deleted.
func (b *Bridge) handle(ctx context.Context, q Queue, m sqstypes.Message) error {
	id := aws.ToString(m.MessageId)
	body := []byte(aws.ToString(m.Body))
	received, _ := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
	// One dead letter per SQS message, its body once, whatever number of
	// its records failed: a tenant's message of 8,000 bad records is one
	// dead letter, not 8,000 copies of its body.
	dead := func(reason, class string, records []schema.DeadRecord) outMsg {
		return outMsg{Subject: schema.DeadSubject("SQS"), MsgID: schema.DeadIDPrefix + "sqs:" + id, Msg: &schema.DeadLetter{Stream: "SQS", Subject: q.URL + "#" + id,
			Deliveries: uint64(received), Reason: schema.Bound(reason), ErrorClass: class, Records: records, Payload: body, At: time.Now().UTC()}}
	}
	if received > b.cfg.MaxReceives {
		b.m.records.WithLabelValues(queueLabel(q.URL), RecordInvalid).Inc()
		return b.publish(ctx, []outMsg{dead(fmt.Sprintf("max_receives: received %d times (limit %d) without being handled", received, b.cfg.MaxReceives), "permanent", nil)})
	}
	msg, err := notify.Parse(body)
	if err == nil && len(msg.Records) > MaxRecordsPerMessage {
		err = fmt.Errorf("too_many_records: %d records in one message; S3 sends one, stevedore reads at most %d", len(msg.Records), MaxRecordsPerMessage)
	}
	if err != nil {
		b.m.records.WithLabelValues(queueLabel(q.URL), RecordInvalid).Inc()
		return b.publish(ctx, []outMsg{dead("invalid: "+err.Error(), "permanent", nil)})
	}
	if msg.Test {
		b.m.records.WithLabelValues(queueLabel(q.URL), RecordIgnored).Inc()
		b.log.Info("s3:TestEvent received", "queue", q.URL)
		return nil
	}
	out, outcomes, failed := b.records(q, msg.Records)
	if len(failed) > 0 {
		reason := failed[0].Reason
		if len(failed) > 1 {
			reason = fmt.Sprintf("%d of %d records unusable; the first: %s", len(failed), len(msg.Records), reason)
		}
		out = append(out, dead(reason, failed[0].ErrorClass, failed))
	}
	if b.cfg.BeforePublish != nil {
		if err := b.cfg.BeforePublish(ctx, id); err != nil {
			return err
		}
	}
	if err := b.publish(ctx, out); err != nil {
		return err
	}
	b.account(ctx, q, id, msg.Records, outcomes)
	return nil
}

// account counts the published outcomes of message id's records, and
// audits once a message whose records name buckets the queue may not speak
// for (once per message, not per record, so a tenant cannot multiply AUDIT
// writes by packing records).
func (b *Bridge) account(ctx context.Context, q Queue, id string, recs []notify.Record, outcomes []string) {
	foreign, routed := 0, 0
	for i, o := range outcomes {
		b.m.records.WithLabelValues(queueLabel(q.URL), o).Inc()
		switch o {
		case RecordForeign:
			foreign++
		case RecordRouted:
			routed++
		}
		if o == RecordRouted && recs[i].SequencerIgnored {
			b.m.sequencersIgnored.WithLabelValues(queueLabel(q.URL)).Inc()
		}
	}
	q.health.routed(routed)
	if foreign > 0 {
		b.cfg.Registry.Audit(ctx, q.Org, "sqs", "notification.refused", RecordForeign,
			fmt.Sprintf("%d record(s) of message %s on %s name buckets the queue may not speak for", foreign, id, q.URL))
		b.log.Warn("notification records for buckets the queue may not speak for: dead-lettered", "queue", q.URL, "org", q.Org, "records", foreign, "outcome", RecordForeign)
	}
}

// MaxRecordsPerMessage is the most notification records one SQS message
// may hold: S3 and EventBridge send one, SNS wraps one; more is a tenant
// writing to its own queue, and the whole message is dead-lettered.
const MaxRecordsPerMessage = 100

// records decides what each record of a message becomes: the tasks to
// publish, every record's outcome, and the records that cannot be used.
func (b *Bridge) records(q Queue, recs []notify.Record) (out []outMsg, outcomes []string, failed []schema.DeadRecord) {
	for i, rec := range recs {
		o, reason := b.record(q, rec, &out)
		outcomes = append(outcomes, o)
		if reason != "" {
			class := "permanent"
			if o == RecordUnroutable || o == RecordForeign {
				class = o
			}
			failed = append(failed, schema.DeadRecord{Index: i, Reason: schema.Bound(reason), ErrorClass: class})
		}
	}
	return out, outcomes, failed
}

// record decides what one record becomes: a task appended to out, an
// ignored event, or the reason it cannot be used (a dead record).
func (b *Bridge) record(q Queue, rec notify.Record, out *[]outMsg) (outcome, reason string) {
	if rec.Err != nil {
		return RecordInvalid, "invalid: " + rec.Err.Error()
	}
	if rec.Kind == notify.Ignored {
		return RecordIgnored, ""
	}
	rt := b.routes.Match(rec.Bucket, rec.Key)
	if rt == nil {
		return RecordUnroutable, fmt.Sprintf("unroutable: no route for s3://%s/%s (stevedore route add)", rec.Bucket, schema.Quote(rec.Key))
	}
	if !q.admits(rt.Org) {
		return RecordForeign, fmt.Sprintf("foreign_bucket: s3://%s/%s is routed to another organization than this queue may speak for", rec.Bucket, schema.Quote(rec.Key))
	}
	// No ordering decision here: a record's sequencer is only a claim. The
	// worker checks it against the object state and, where they disagree,
	// against S3 itself.
	op := schema.OpIndex
	if rec.Kind == notify.Delete {
		op = schema.OpDelete
	}
	t := &schema.Task{Op: op, Org: rt.Org, Collection: rt.Collection, IntegrationID: rt.IntegrationID, Bucket: rec.Bucket,
		Region: rec.Region, Key: rec.Key, ScopePrefix: rt.Prefix, VersionID: rec.VersionID, ETag: strings.Trim(rec.ETag, `"`),
		Size: rec.Size, Sequencer: rec.Sequencer, SkipExisting: true, CustomMetadata: rt.CustomMetadata,
		ReadSettings: schema.ReadSettings{ProcessingType: rt.ProcessingType, Encoding: rt.Encoding}}
	if !rec.EventTime.IsZero() {
		et := rec.EventTime
		t.EventTime = &et
	}
	// The sequencer identifies the event; without one (some emulators), the
	// ETag and event time stand in, so a later change is never deduplicated away.
	event := rec.Sequencer + "|" + string(op)
	if rec.Sequencer == "" {
		event += "|" + t.ETag + "|" + rec.EventTime.Format(time.RFC3339Nano)
	}
	*out = append(*out, outMsg{Subject: schema.TaskSubject(rt.Org, rt.Collection), MsgID: schema.EventTaskMsgID(rt.Org, rt.Collection, rec.Bucket, rec.Key, rec.VersionID, event), Msg: t})
	return RecordRouted, ""
}

// outMsg is one message to publish with its deduplication ID.
type outMsg = schema.Out

// publish sends every message and waits for all acks. A stream that refuses
// work (full) pauses receiving; the caller keeps the SQS message for a later
// attempt.
func (b *Bridge) publish(ctx context.Context, msgs []outMsg) error {
	if _, err := schema.PublishAll(ctx, b.cfg.JS, msgs); err != nil {
		return b.refused(err)
	}
	return nil
}

// refused pauses receiving when JetStream is full or unavailable.
func (b *Bridge) refused(err error) error {
	if schema.IsBackpressure(err) {
		if b.pause.trigger() {
			b.m.paused.Inc()
			b.log.Warn("JetStream refused work: receiving paused", "error", err)
		}
	}
	return err
}

// pauser stops every poller for an escalating interval after JetStream
// refused work, so a full stream neither drops messages nor spins.
type pauser struct {
	mu    sync.Mutex
	until time.Time
	delay time.Duration
}

func (p *pauser) trigger() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Before(p.until) {
		return false
	}
	if p.delay == 0 || now.Sub(p.until) > time.Minute {
		p.delay = time.Second
	} else {
		p.delay = min(2*p.delay, 30*time.Second)
	}
	p.until = now.Add(p.delay)
	return true
}

func (p *pauser) wait(ctx context.Context) error {
	p.mu.Lock()
	d := time.Until(p.until)
	p.mu.Unlock()
	if d > 0 {
		sleep(ctx, d)
	}
	return ctx.Err()
}
