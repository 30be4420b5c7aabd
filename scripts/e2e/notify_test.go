//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/scripts/stack"
)

// notification is an S3 event notification in the documented shape.
func notification(event, bucket, key, etag, sequencer string, at time.Time) string {
	b, _ := json.Marshal(map[string]any{"Records": []any{map[string]any{
		"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": at.UTC().Format("2006-01-02T15:04:05.000Z"),
		"eventName": event, "s3": map[string]any{"s3SchemaVersion": "1.0", "bucket": map[string]any{"name": bucket, "arn": "arn:aws:s3:::" + bucket},
			"object": map[string]any{"key": url.QueryEscape(key), "eTag": etag, "sequencer": sequencer}},
	}}})
	return string(b)
}

// TestNotificationsEndToEnd puts objects into MinIO, sends their S3
// notifications to moto's SQS, and waits for their chunks in CHUNKS (through
// the bridge and a worker of `stevedore dev`); then deletes one and waits for
// its tombstone. Lag is measured from each event's eventTime to the CHUNKS
// stream timestamp of its first chunk.
func TestNotificationsEndToEnd(t *testing.T) {
	t.Parallel() // mostly waits on its own stack: runs beside the others that do (package doc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, t.TempDir(), t.Logf, stack.WithSQS())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	org, _, err := s.Onboard(ctx, "Notify", roleARN, "demo-docs")
	if err != nil {
		t.Fatal(err)
	}
	var rt map[string]string
	if err := s.CLI(ctx, &rt, "route", "add", "--org", org.OrgID, "--collection", "live", "--bucket", "demo-docs", "--prefix", "incoming/"); err != nil {
		t.Fatal(err)
	}
	s3c := customerS3(s)
	q := s.SQS.Client()
	send := func(body string) {
		if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(s.QueueURL), MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}

	const n = 40
	eventTimes := map[string]time.Time{}
	seq := uint64(0x0060F0000000000000)
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("incoming/note %02d+final.txt", i) // a space and a plus: S3 encodes both
		put, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(key),
			Body: strings.NewReader(strings.Repeat(fmt.Sprintf("Note %d arrived and must be searchable within a second. ", i), 20))})
		if err != nil {
			t.Fatal(err)
		}
		at := time.Now()
		eventTimes[key] = at.Truncate(time.Millisecond)
		seq++
		body := notification("ObjectCreated:Put", "demo-docs", key, strings.Trim(aws.ToString(put.ETag), `"`), fmt.Sprintf("%018X", seq), at)
		send(body)
		if i%10 == 0 {
			send(body) // S3 delivers at least once: duplicates must not double anything
		}
	}
	nc, err := nats.Connect(s.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	firstChunk, tombstoned, chunkIDs := map[string]time.Time{}, map[string]time.Time{}, map[string]int{}
	cons, err := js.OrderedConsumer(ctx, schema.StreamChunks, jetstream.OrderedConsumerConfig{FilterSubjects: []string{schema.ChunkSubject(org.OrgID, "live")}})
	if err != nil {
		t.Fatal(err)
	}
	read := func(until func() bool) {
		deadline := time.Now().Add(2 * time.Minute)
		for !until() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out: %d/%d objects have chunks, %d tombstones", len(firstChunk), n, len(tombstoned))
			}
			batch, err := cons.Fetch(100, jetstream.FetchMaxWait(500*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			for m := range batch.Messages() {
				md, _ := m.Metadata()
				if ts, err := schema.DecodeTombstone(m.Data()); err == nil && ts.Reason == "deleted" {
					tombstoned[ts.Key] = md.Timestamp
					continue
				}
				c, err := schema.DecodeChunk(m.Data())
				if err != nil {
					continue
				}
				chunkIDs[c.ChunkID]++
				if _, ok := firstChunk[c.Key]; !ok {
					firstChunk[c.Key] = md.Timestamp
				}
			}
		}
	}
	read(func() bool { return len(firstChunk) == n })
	var lags []time.Duration
	for key, at := range eventTimes {
		chunkAt, ok := firstChunk[key]
		if !ok {
			t.Fatalf("no chunks for %q", key)
		}
		lags = append(lags, chunkAt.Sub(at))
	}
	for id, c := range chunkIDs {
		if c != 1 {
			t.Fatalf("chunk %s published %d times", id, c)
		}
	}

	// Delete one object: its chunks get a tombstone.
	gone := "incoming/note 07+final.txt"
	if _, err := s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(gone)}); err != nil {
		t.Fatal(err)
	}
	delAt := time.Now()
	seq++
	send(notification("ObjectRemoved:Delete", "demo-docs", gone, "", fmt.Sprintf("%018X", seq), delAt))
	read(func() bool { _, ok := tombstoned[gone]; return ok })
	delLag := tombstoned[gone].Sub(delAt.Truncate(time.Millisecond))

	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	p := func(q float64) time.Duration { return lags[min(len(lags)-1, int(q*float64(len(lags))))] }
	routed, _ := s.MetricSum(`stevedore_sqs_records_total{outcome="routed"}`)
	deleted, _ := s.MetricSum("stevedore_sqs_messages_deleted_total")
	summary := fmt.Sprintf("notification lag over %d creates: p50 %s, p99 %s, max %s; delete → tombstone %s; records routed %.0f, SQS messages deleted %.0f (%d duplicates sent), %d unique chunks",
		n, p(0.50).Round(time.Millisecond), p(0.99).Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond), delLag.Round(time.Millisecond),
		routed, deleted, n/10, len(chunkIDs))
	t.Log(summary)
	if routed < float64(n) {
		t.Fatalf("stevedore_sqs_records_total{outcome=\"routed\"} is %v after %d routed creates", routed, n)
	}
	if out := os.Getenv("STEVEDORE_E2E_REPORT"); out != "" {
		_ = os.WriteFile(out, []byte(summary+"\n"), 0o644)
	}
}

// customerS3 writes to the stack's MinIO as a customer's application does
// (through MinIO's root user).
func customerS3(s *stack.Stack) *s3.Client {
	env := map[string]string{}
	for _, kv := range s.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(env["AWS_ENDPOINT_URL_S3"]), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("stevedore-root", "stevedore-root-secret", "")})
}

// TestQueueAttachedOverTheAPI: on a running `stevedore dev` (not
// restarted), a customer attaches a queue of their own (moto) over the API,
// routes a prefix to a collection with custom metadata, and the first
// notification on that queue is indexed with the metadata on its chunks;
// the queue's health shows the record.
func TestQueueAttachedOverTheAPI(t *testing.T) {
	t.Parallel() // mostly waits on its own stack: runs beside the others that do (package doc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, t.TempDir(), t.Logf, stack.WithSQS())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	org, _, err := s.Onboard(ctx, "Attach", roleARN, "demo-docs")
	if err != nil {
		t.Fatal(err)
	}
	url, err := s.SQS.CreateQueue(ctx, "customer-notifications", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var q struct {
		ID    string         `json:"id"`
		Paste map[string]any `json:"paste"`
	}
	if code, err := s.Call(ctx, org, "POST", "/v2/notifications/queues", map[string]any{"queue_url": url}, &q); err != nil || code != 201 || q.Paste["queue_policy"] == nil {
		t.Fatalf("attach: %d %v %+v", code, err, q)
	}
	var rt map[string]any
	body := map[string]any{"bucket_name": "demo-docs", "prefix": "attached/", "custom_metadata": map[string]any{"source": "attached-queue"}}
	if code, err := s.Call(ctx, org, "POST", "/v2/collections/attached/routes", body, &rt); err != nil || code != 201 {
		t.Fatalf("route: %d %v %v", code, err, rt)
	}
	s3c := customerS3(s)
	key := "attached/first.txt"
	put, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(key), Body: strings.NewReader("The first object of a queue attached over the API.")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SQS.Client().SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url),
		MessageBody: aws.String(notification("ObjectCreated:Put", "demo-docs", key, strings.Trim(aws.ToString(put.ETag), `"`), "0060F00000000000A1", time.Now()))}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		chunks, _, err := s.Chunks(ctx, org.OrgID, "attached")
		if err != nil {
			t.Fatal(err)
		}
		if len(chunks) > 0 {
			if chunks[0].Key != key || !strings.Contains(string(chunks[0].CustomMetadata), `"source":"attached-queue"`) {
				t.Fatalf("chunk %+v", chunks[0])
			}
			break
		}
		if time.Now().After(deadline) {
			var v map[string]any
			s.Call(ctx, org, "GET", "/v2/notifications/queues/"+q.ID, nil, &v)
			t.Fatalf("no chunks from the attached queue; the queue: %v", v)
		}
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		var v struct {
			Health struct {
				Records int `json:"records"`
			} `json:"health"`
		}
		if code, err := s.Call(ctx, org, "GET", "/v2/notifications/queues/"+q.ID, nil, &v); err == nil && code == 200 && v.Health.Records == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue's health does not show the record: %+v", v)
		}
	}
}
