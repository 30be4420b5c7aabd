package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stevedore-dev/stevedore/producer/notify"
	"github.com/stevedore-dev/stevedore/producer/sqstest"
	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/schema/registry/registrytest"
)

type bridgeEnv struct {
	tf     *registrytest.Fixture
	sqs    *sqstest.Server
	client *sqs.Client
	url    string
}

func newBridgeEnv(t *testing.T, visibility time.Duration) *bridgeEnv {
	t.Helper()
	tf := registrytest.Tenant(t)
	srv := sqstest.Start(t)
	e := &bridgeEnv{tf: tf, sqs: srv, client: srv.Client(), url: srv.Queue(t, "notifications", visibility)}
	if _, err := tf.Registry.AddRoute(context.Background(), "test", registry.Route{Org: tf.Org.ID, Collection: "docs", Bucket: "acme-docs"}); err != nil {
		t.Fatal(err)
	}
	return e
}

// run starts a bridge on the queue and returns a function that stops it.
func (e *bridgeEnv) run(t *testing.T, cfg BridgeConfig, client SQSAPI) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg.JS, cfg.Registry = e.tf.JS, e.tf.Registry
	if cfg.Queues == nil {
		cfg.Queues = []Queue{{URL: e.url, Client: client}}
	}
	if cfg.WaitTime == 0 {
		cfg.WaitTime = time.Second
	}
	b, err := NewBridge(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (e *bridgeEnv) send(t *testing.T, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		if _, err := e.client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(e.url), MessageBody: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
}

// drained waits until the queue holds no message, visible or in flight,
// in three readings in a row: moto reads each count at its own clock, so a
// message whose visibility runs out between the two reads is in neither
// (one reading of 0 and 0 while a message waited to come back made a
// redelivery test fail under load).
func (e *bridgeEnv) drained(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for empty := 0; ; {
		out, err := e.client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(e.url),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		if err != nil {
			t.Fatal(err)
		}
		if out.Attributes["ApproximateNumberOfMessages"] == "0" && out.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0" {
			empty++
		} else {
			empty = 0
		}
		if empty == 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not drained: %v", out.Attributes)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamMsgs returns every message left in a stream (work queues keep them
// until a worker acks; no worker runs here).
func streamMsgs(t *testing.T, js jetstream.JetStream, name string) [][]byte {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	var out [][]byte
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err == nil {
			out = append(out, m.Data)
		}
	}
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("notify/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBridgeRoutesEveryShape sends one message of every notification shape
// (and some bad ones) through moto's SQS and checks what reached TASKS and
// DEAD, the record outcomes, and that sending everything again (SQS
// redelivers at least once) publishes nothing new.
func TestBridgeRoutesEveryShape(t *testing.T) {
	e := newBridgeEnv(t, 30*time.Second)
	ctx := context.Background()
	// The index already reflects a later event for stale.txt: the bridge
	// still routes it (a sequencer is a claim; the worker checks it against
	// the state and S3).
	objects, _ := e.tf.JS.KeyValue(ctx, schema.BucketObjects)
	state, _ := json.Marshal(&schema.ObjectState{Bucket: "acme-docs", Key: "stale.txt", Sequencer: "00FF", Status: schema.ObjectIndexed})
	if _, err := objects.Put(ctx, schema.ObjectKey(e.tf.Org.ID, "docs", "acme-docs", "stale.txt"), state); err != nil {
		t.Fatal(err)
	}
	forgedSequencer := `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-11-23T10:00:00Z","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"acme-docs"},"object":{"key":"x.txt","sequencer":"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"}}}]}`
	stale := `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-11-23T10:00:00Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"acme-docs"},"object":{"key":"stale.txt","eTag":"x","sequencer":"00AA"}}}]}`
	unroutable := `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-11-23T10:00:00Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"someone-elses"},"object":{"key":"x.txt","sequencer":"01"}}}]}`
	bodies := []string{
		testdata(t, "s3_put.json"), testdata(t, "sns_wrapped.json"), testdata(t, "s3_multi.json"),
		testdata(t, "eventbridge_created.json"), testdata(t, "eventbridge_deleted.json"), testdata(t, "eventbridge_restore.json"),
		testdata(t, "testevent.json"), testdata(t, "sns_testevent.json"),
		`{"Records":[{"eventVersion":"2.1"`, `{"hello":"world"}`, stale, unroutable, forgedSequencer,
	}
	e.send(t, bodies...)
	reg := prometheus.NewRegistry()
	stop := e.run(t, BridgeConfig{Registerer: reg}, e.client)
	e.drained(t)
	stop()

	var keys []string
	for _, data := range streamMsgs(t, e.tf.JS, schema.StreamTasks) {
		task, err := schema.DecodeTask(data)
		if err != nil {
			t.Fatal(err)
		}
		if task.Org != e.tf.Org.ID || task.Collection != "docs" || task.IntegrationID != e.tf.In.ID || task.JobID != "" {
			t.Fatalf("task %+v", task)
		}
		keys = append(keys, string(task.Op)+" "+task.Key)
	}
	sort.Strings(keys)
	// s3_put and its SNS-wrapped copy are one event (same sequencer): one task.
	want := []string{"delete eb/raw key+plus.txt", "delete expired.txt", "delete old.txt", "delete versioned.txt",
		"index a/b=c&d.md", "index eb/raw key+plus.txt", "index reports/Q3 plan (2026) c++.txt", "index stale.txt"}
	if strings.Join(keys, "|") != strings.Join(want, "|") {
		t.Fatalf("tasks\n got %q\nwant %q", keys, want)
	}
	// One dead letter per SQS message (the body once); a message whose
	// records failed lists each of them.
	var reasons []string
	letters := 0
	for _, data := range streamMsgs(t, e.tf.JS, schema.StreamDead) {
		d, err := schema.DecodeDeadLetter(data)
		if err != nil {
			t.Fatal(err)
		}
		letters++
		if len(d.Records) == 0 {
			reasons = append(reasons, strings.SplitN(d.Reason, ":", 2)[0])
		}
		for _, r := range d.Records {
			reasons = append(reasons, strings.SplitN(r.Reason, ":", 2)[0])
		}
		if len(d.Payload) == 0 || d.Stream != "SQS" {
			t.Fatalf("dead letter without the raw body: %+v", d)
		}
	}
	sort.Strings(reasons)
	if got := strings.Join(reasons, " "); got != "invalid invalid invalid invalid invalid unroutable" || letters != 5 {
		t.Fatalf("%d dead letters: %s", letters, got)
	}
	// The record counters count handling attempts: a message SQS hands out
	// again (moto loses a concurrent delete now and then while reporting it
	// done) is counted again, while what it produced is deduplicated (the
	// tasks and dead letters above are exact). So each is at least what one
	// pass gives, and at most one more pass of its messages.
	outcomes := map[string]float64{}
	once := map[string]float64{RecordRouted: 9, RecordIgnored: 4, RecordUnroutable: 1, RecordInvalid: 5}
	for o, n := range once {
		outcomes[o] = labeled(t, reg, "stevedore_sqs_records_total", o)
		if outcomes[o] < n || outcomes[o] > 2*n {
			t.Fatalf("outcomes %v, want %v (each at most once more on redelivery)", outcomes, once)
		}
	}
	t.Logf("record outcomes from a run mixing every shape: %v", outcomes)
	// Every SQS series names its queue (the last part of the URL).
	queue := e.url[strings.LastIndex(e.url, "/")+1:]
	for _, name := range []string{"stevedore_sqs_records_total", "stevedore_sqs_messages_received_total", "stevedore_sqs_messages_deleted_total"} {
		all := counter(t, reg, name)
		mine := sumCounter(t, reg, name, func(m *dto.Metric) bool {
			for _, l := range m.GetLabel() {
				if l.GetName() == "queue" && l.GetValue() == queue {
					return true
				}
			}
			return false
		})
		if all == 0 || mine != all {
			t.Fatalf("%s: %v in all, %v labelled queue=%q", name, all, mine, queue)
		}
	}

	// Everything again: SQS redelivery publishes no task twice.
	before := len(streamMsgs(t, e.tf.JS, schema.StreamTasks))
	e.send(t, bodies...)
	stop = e.run(t, BridgeConfig{Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}, e.client)
	e.drained(t)
	stop()
	if after := len(streamMsgs(t, e.tf.JS, schema.StreamTasks)); after != before {
		t.Fatalf("redelivered notifications published %d new tasks", after-before)
	}
}

// labeled sums a counter's series whose outcome label is outcome.
func labeled(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	return sumCounter(t, reg, name, func(m *dto.Metric) bool {
		for _, l := range m.GetLabel() {
			if l.GetName() == "outcome" && l.GetValue() == outcome {
				return true
			}
		}
		return false
	})
}

// counter sums every series of a counter.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	return sumCounter(t, reg, name, func(*dto.Metric) bool { return true })
}

func sumCounter(t *testing.T, reg *prometheus.Registry, name string, keep func(*dto.Metric) bool) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if keep(m) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// faultySQS fails deletes and releases, as if the process died after
// publishing and before deleting.
type faultySQS struct {
	SQSAPI
	failDeletes atomic.Bool
	deletes     atomic.Int64
}

func (f *faultySQS) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, o ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	f.deletes.Add(1)
	if f.failDeletes.Load() {
		return nil, errors.New("connection reset (simulated crash before delete)")
	}
	return f.SQSAPI.DeleteMessageBatch(ctx, in, o...)
}

func (f *faultySQS) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, o ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if f.failDeletes.Load() {
		return nil, errors.New("connection reset (simulated crash)")
	}
	return f.SQSAPI.ChangeMessageVisibilityBatch(ctx, in, o...)
}

func TestRedeliveryAfterCrashBeforeDelete(t *testing.T) {
	e := newBridgeEnv(t, 2*time.Second)
	e.send(t, testdata(t, "s3_put.json"))
	faulty := &faultySQS{SQSAPI: e.client}
	faulty.failDeletes.Store(true)
	stop := e.run(t, BridgeConfig{Visibility: 2 * time.Second}, faulty)
	// Wait until the task is durable and the delete was attempted, then "crash".
	for faulty.deletes.Load() == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if n := len(streamMsgs(t, e.tf.JS, schema.StreamTasks)); n != 1 {
		t.Fatalf("%d tasks after the first attempt, want 1", n)
	}
	// The message comes back after its visibility timeout; a new bridge
	// handles it again, publishes nothing new and deletes it.
	faulty.failDeletes.Store(false)
	reg := prometheus.NewRegistry()
	stop = e.run(t, BridgeConfig{Visibility: 2 * time.Second, Registerer: reg}, e.client)
	e.drained(t)
	stop()
	if n := len(streamMsgs(t, e.tf.JS, schema.StreamTasks)); n != 1 {
		t.Fatalf("%d tasks after redelivery, want 1", n)
	}
	if got := counter(t, reg, "stevedore_sqs_messages_deleted_total"); got != 1 {
		t.Fatalf("deleted %v", got)
	}
}

func TestVisibilityExtendedWhileHandling(t *testing.T) {
	e := newBridgeEnv(t, 3*time.Second)
	e.send(t, testdata(t, "s3_put.json"))
	hold := make(chan struct{})
	held := make(chan struct{}, 1)
	reg := prometheus.NewRegistry()
	stop := e.run(t, BridgeConfig{Visibility: 3 * time.Second, Pollers: 1, Registerer: reg, BeforePublish: func(ctx context.Context, _ string) error {
		held <- struct{}{}
		select {
		case <-hold:
		case <-ctx.Done():
		}
		return ctx.Err()
	}}, e.client)
	<-held
	// Held three times the visibility timeout: extensions keep it invisible.
	deadline := time.Now().Add(9 * time.Second)
	for time.Now().Before(deadline) {
		out, err := e.client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(e.url), WaitTimeSeconds: 1, VisibilityTimeout: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) > 0 {
			t.Fatal("a message being handled became visible to another reader")
		}
	}
	if n := counter(t, reg, "stevedore_sqs_visibility_extensions_total"); n < 2 {
		t.Fatalf("visibility extensions %v", n)
	}
	close(hold)
	e.drained(t)
	stop()
	t.Logf("visibility extensions while held for 9 s at a 3 s timeout: %v", counter(t, reg, "stevedore_sqs_visibility_extensions_total"))
}

func TestPoisonMessageGoesToDeadAfterMaxReceives(t *testing.T) {
	e := newBridgeEnv(t, 2*time.Second)
	e.send(t, testdata(t, "s3_put.json"))
	var attempts atomic.Int64
	reg := prometheus.NewRegistry()
	stop := e.run(t, BridgeConfig{Visibility: 2 * time.Second, MaxReceives: 3, RetryDelay: time.Millisecond, Registerer: reg,
		BeforePublish: func(context.Context, string) error {
			attempts.Add(1)
			return errors.New("simulated failure on every attempt")
		}}, e.client)
	e.drained(t)
	stop()
	dead := streamMsgs(t, e.tf.JS, schema.StreamDead)
	if len(dead) != 1 || attempts.Load() != 3 {
		t.Fatalf("%d dead letters after %d attempts", len(dead), attempts.Load())
	}
	d, _ := schema.DecodeDeadLetter(dead[0])
	if !strings.HasPrefix(d.Reason, "max_receives") || d.Deliveries != 4 {
		t.Fatalf("dead letter %+v", d)
	}
	if n := len(streamMsgs(t, e.tf.JS, schema.StreamTasks)); n != 0 {
		t.Fatalf("%d tasks", n)
	}
}

func TestBackpressurePausesAndLosesNothing(t *testing.T) {
	e := newBridgeEnv(t, 2*time.Second)
	ctx := context.Background()
	s, _ := e.tf.JS.Stream(ctx, schema.StreamTasks)
	info, _ := s.Info(ctx)
	cfg := info.Config
	cfg.MaxMsgs = 1
	if _, err := e.tf.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tf.JS.Publish(ctx, schema.TaskSubject(e.tf.Org.ID, "docs"), []byte(`{"v":1}`)); err != nil {
		t.Fatal(err) // the stream is now full
	}
	e.send(t, testdata(t, "s3_put.json"))
	reg := prometheus.NewRegistry()
	stop := e.run(t, BridgeConfig{Visibility: 2 * time.Second, RetryDelay: time.Second, MaxReceives: 100, Registerer: reg}, e.client)
	for counter(t, reg, "stevedore_sqs_backpressure_pauses_total") == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if counter(t, reg, "stevedore_sqs_messages_deleted_total") != 0 {
		t.Fatal("a message was deleted while its task was refused")
	}
	// Room again: the kept message is published and deleted. Wait for the
	// bridge's own delete, not for moto's approximate queue counts (which a
	// busy machine caught between a release and the next receive).
	if err := s.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); counter(t, reg, "stevedore_sqs_messages_deleted_total") < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the kept message was never deleted after room was made")
		}
	}
	e.drained(t)
	stop()
	tasks := streamMsgs(t, e.tf.JS, schema.StreamTasks)
	if len(tasks) != 1 || counter(t, reg, "stevedore_sqs_messages_deleted_total") != 1 {
		t.Fatalf("%d tasks, %v deleted", len(tasks), counter(t, reg, "stevedore_sqs_messages_deleted_total"))
	}
	t.Logf("backpressure: %v pauses, %v receives before room was made", counter(t, reg, "stevedore_sqs_backpressure_pauses_total"), counter(t, reg, "stevedore_sqs_messages_received_total"))
}

// TestCustomerQueueSpeaksOnlyForItsOrg: a queue in Mallory's account carries
// records naming Acme's bucket (routed to Acme). They go to DEAD as
// foreign_bucket, audited; nothing is published for Acme. Mallory's own
// bucket's records go through. An own queue with an org allowlist refuses
// the same way.
func TestCustomerQueueSpeaksOnlyForItsOrg(t *testing.T) {
	e := newBridgeEnv(t, 30*time.Second) // acme-docs is routed to e.tf.Org
	ctx := context.Background()
	reg := e.tf.Registry
	mallory, _, _ := reg.CreateOrg(ctx, "test", "Mallory")
	in, _ := reg.AddIntegration(ctx, "test", mallory.ID, registry.Spec{RoleARN: "arn:aws:iam::210987654321:role/reader", Buckets: []string{"mallory-docs"}})
	if _, err := reg.RecordVerification(ctx, "test", mallory.ID, in.ID, &registry.Verification{At: time.Now(), OK: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddRoute(ctx, "test", registry.Route{Org: mallory.ID, Collection: "docs", Bucket: "mallory-docs"}); err != nil {
		t.Fatal(err)
	}
	record := func(bucket, key, event string) string {
		return `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-11-23T10:00:00Z","eventName":"` + event +
			`","s3":{"bucket":{"name":"` + bucket + `"},"object":{"key":"` + key + `","eTag":"x","sequencer":"0055AED6DCD90281E5"}}}]}`
	}
	e.send(t, record("acme-docs", "contract.txt", "ObjectRemoved:Delete"), record("acme-docs", "big.bin", "ObjectCreated:Put"),
		record("mallory-docs", "own.txt", "ObjectCreated:Put"))
	reg2 := prometheus.NewRegistry()
	stop := e.run(t, BridgeConfig{Registerer: reg2, Queues: []Queue{{URL: e.url, Client: e.client, Org: mallory.ID}}}, e.client)
	e.drained(t)
	stop()

	for _, data := range streamMsgs(t, e.tf.JS, schema.StreamTasks) {
		task, _ := schema.DecodeTask(data)
		if task.Org != mallory.ID || task.Key != "own.txt" {
			t.Fatalf("a customer queue published a task for another org: %+v", task)
		}
	}
	var foreign int
	for _, data := range streamMsgs(t, e.tf.JS, schema.StreamDead) {
		d, _ := schema.DecodeDeadLetter(data)
		if d.ErrorClass == RecordForeign && strings.HasPrefix(d.Reason, "foreign_bucket") && len(d.Payload) > 0 {
			foreign++
		}
	}
	if foreign != 2 || labeled(t, reg2, "stevedore_sqs_records_total", RecordForeign) != 2 {
		t.Fatalf("%d foreign_bucket dead letters, metric %v", foreign, labeled(t, reg2, "stevedore_sqs_records_total", RecordForeign))
	}
	if n := countAudit(t, e.tf.JS, mallory.ID, "notification.refused"); n != 2 {
		t.Fatalf("%d audit records of refused notifications, want one per SQS message (2)", n)
	}

	// One of our own queues, admitting only Mallory's org.
	e.send(t, record("acme-docs", "again.txt", "ObjectCreated:Put"))
	stop = e.run(t, BridgeConfig{Queues: []Queue{{URL: e.url, Client: e.client, AllowOrgs: []string{mallory.ID}}}}, e.client)
	e.drained(t)
	stop()
	for _, data := range streamMsgs(t, e.tf.JS, schema.StreamTasks) {
		if task, _ := schema.DecodeTask(data); task.Org != mallory.ID {
			t.Fatalf("an allowlisted queue published a task for another org: %+v", task)
		}
	}
}

// countAudit counts AUDIT records of org with action.
func countAudit(t *testing.T, js jetstream.JetStream, org, action string) int {
	t.Helper()
	n := 0
	for _, data := range streamMsgs(t, js, schema.StreamAudit) {
		var rec schema.AuditRecord
		if json.Unmarshal(data, &rec) == nil && rec.Org == org && rec.Action == action {
			n++
		}
	}
	return n
}

// TestHostileQueueMessageIsOneDeadLetter: one SQS message of 8,000 invalid
// or foreign records made 8,000 dead letters, each carrying the whole body
// (165 MiB in DEAD in 2 s). A message over MaxRecordsPerMessage is one dead
// letter now, and a message at the cap whose records all fail is one dead
// letter listing them, its body once. A record whose sequencer is not
// hexadecimal is routed without it, and counted.
func TestHostileQueueMessageIsOneDeadLetter(t *testing.T) {
	e := newBridgeEnv(t, 30*time.Second)
	records := func(n int, bucket string) string {
		var b strings.Builder
		b.WriteString(`{"Records":[`)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":%q},"object":{"key":"k%d","sequencer":"01"}}}`, bucket, i)
		}
		b.WriteString(`]}`)
		return b.String()
	}
	huge := `{"Records":[{}` + strings.Repeat(`,{}`, 7999) + `]}` // 8,000 invalid records in 16 KB
	full := records(MaxRecordsPerMessage, "someone-elses")
	nonHex := `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"acme-docs"},"object":{"key":"sample.txt","eTag":"x","sequencer":"not-hex-0xZZ"}}}]}`
	if len(huge) > notify.MaxBody {
		t.Fatalf("the test message is %d bytes, over SQS's limit", len(huge))
	}
	e.send(t, huge, full, nonHex)
	reg := prometheus.NewRegistry()
	stop := e.run(t, BridgeConfig{Registerer: reg}, e.client)
	e.drained(t)
	stop()

	letters, bytes, listed := 0, 0, 0
	for _, data := range streamMsgs(t, e.tf.JS, schema.StreamDead) {
		d, err := schema.DecodeDeadLetter(data)
		if err != nil {
			t.Fatal(err)
		}
		letters, bytes, listed = letters+1, bytes+len(data), listed+len(d.Records)
		if len(d.Reason) > schema.MaxReasonBytes {
			t.Fatalf("a reason of %d bytes", len(d.Reason))
		}
	}
	t.Logf("8,000-record message (%d bytes) + %d-record message (%d bytes): %d dead letters, %d bytes in DEAD, %d records listed",
		len(huge), MaxRecordsPerMessage, len(full), letters, bytes, listed)
	if letters != 2 || listed != MaxRecordsPerMessage || bytes > 4*(len(huge)+len(full)) {
		t.Fatalf("%d dead letters of %d bytes listing %d records", letters, bytes, listed)
	}
	// An operator finds them as `stevedore dlq list --stream SQS` does.
	if info, err := e.tf.JS.Stream(context.Background(), schema.StreamDead); err != nil {
		t.Fatal(err)
	} else if si, _ := info.Info(context.Background(), jetstream.WithSubjectFilter(schema.DeadSubject("SQS"))); si.State.Subjects[schema.DeadSubject("SQS")] != 2 {
		t.Fatalf("dead letters on %s: %v", schema.DeadSubject("SQS"), si.State.Subjects)
	}
	tasks := streamMsgs(t, e.tf.JS, schema.StreamTasks)
	if len(tasks) != 1 {
		t.Fatalf("%d tasks, want the non-hex sequencer's record routed", len(tasks))
	}
	if task, _ := schema.DecodeTask(tasks[0]); task.Key != "sample.txt" || task.Sequencer != "" {
		t.Fatalf("task %+v", task)
	}
	if n := counter(t, reg, "stevedore_sqs_sequencers_ignored_total"); n != 1 {
		t.Fatalf("sequencers ignored: %v", n)
	}
}

// A queue attached over the registry is read without a restart: its
// records become tasks carrying the route's settings (custom metadata
// included), its health is written back, and once it is detached the
// bridge stops reading it (a record sent then stays in the queue).
func TestAttachedQueueIsReadWithoutARestart(t *testing.T) {
	e := newBridgeEnv(t, 30*time.Second)
	ctx := context.Background()
	reg := e.tf.Registry
	if _, err := reg.AddRoute(ctx, "test", registry.Route{Org: e.tf.Org.ID, Collection: "legal", Bucket: "acme-docs", Prefix: "legal/",
		ProcessingType: schema.ProcessingAdvanced, CustomMetadata: json.RawMessage(`{"team":"legal"}`)}); err != nil {
		t.Fatal(err)
	}
	attach := func(rec *registry.NotificationQueue) (Queue, error) {
		return Queue{URL: rec.URL, Client: e.client, Org: rec.Org}, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b, err := NewBridge(ctx, BridgeConfig{JS: e.tf.JS, Registry: reg, Attach: attach, WaitTime: time.Second, HealthEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	until := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60 s", what)
			}
		}
	}
	q, err := reg.AddQueue(ctx, "test", e.tf.Org.ID, e.url, "")
	if err != nil {
		t.Fatal(err)
	}
	until("reading the attached queue", func() bool { return len(b.Reading()) == 1 })
	e.send(t, `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-12-07T10:00:00Z","eventName":"ObjectCreated:Put",`+
		`"s3":{"bucket":{"name":"acme-docs"},"object":{"key":"legal/contract.txt","eTag":"x","sequencer":"0055AED6DCD90281E5"}}}]}`)
	e.drained(t)
	tasks := streamMsgs(t, e.tf.JS, schema.StreamTasks)
	if len(tasks) != 1 {
		t.Fatalf("%d tasks", len(tasks))
	}
	task, _ := schema.DecodeTask(tasks[0])
	if task.Collection != "legal" || string(task.CustomMetadata) != `{"team":"legal"}` || task.ProcessingType != schema.ProcessingAdvanced {
		t.Fatalf("task %+v", task)
	}
	until("health written", func() bool {
		_, h, err := reg.Queue(ctx, e.tf.Org.ID, q.ID)
		return err == nil && h.LastRecordAt != nil && h.Records == 1 && h.LastReceiveAt != nil
	})
	if err := reg.RemoveQueue(ctx, "test", e.tf.Org.ID, q.ID); err != nil {
		t.Fatal(err)
	}
	until("pollers stopped", func() bool { return len(b.Reading()) == 0 })
	e.send(t, `{"Records":[]}`)
	time.Sleep(2 * time.Second) // two long polls, had a poller been left
	out, err := e.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(e.url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}})
	if err != nil || out.Attributes["ApproximateNumberOfMessages"] != "1" {
		t.Fatalf("a detached queue was read: %v %v", out.Attributes, err)
	}
}
