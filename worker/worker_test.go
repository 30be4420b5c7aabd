package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/schema/registry/registrytest"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
	"github.com/stevedore-dev/stevedore/worker/token"
)

type env struct {
	js     jetstream.JetStream
	org    *registry.Org
	in     *registry.Integration
	s3     *awstest.S3
	sts    *awstest.STS
	w      *Worker
	reg    prometheus.Gatherer // the worker's metrics
	cancel context.CancelFunc
	done   chan error
}

const bucket = "acme-docs"

func setup(t *testing.T, objects map[string]string, opts ...func(*Config)) *env {
	t.Helper()
	return setupWith(t, objects, creds.Config{}, opts...)
}

func setupWith(t *testing.T, objects map[string]string, bc creds.Config, opts ...func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	tf := registrytest.Tenant(t)
	js, reg := tf.JS, tf.Registry
	e := &env{js: js, org: tf.Org, in: tf.In}
	e.sts, e.s3 = awstest.Start(t)
	e.sts.SetRole(awstest.Role{ARN: registrytest.RoleARN, Principal: awstest.Principal, ExternalID: tf.Org.ExternalID, Buckets: []string{bucket}})
	for k, v := range objects {
		e.s3.Put(bucket, k, v)
	}
	bc.STS = e.sts.Client()
	if bc.OnHealth == nil {
		bc.OnHealth = RecordHealth(reg, slog.New(slog.DiscardHandler))
	}
	broker, err := creds.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{JS: js, Registry: reg, Broker: broker, AWS: e.s3.Config(), S3PathStyle: true, PageSize: 2, ChunkTokens: 64, Heartbeat: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	e.reg = cfg.Registerer.(prometheus.Gatherer)
	if cfg.Topology.AckWait != 0 {
		topo := cfg.Topology
		topo.Update = true // this test's claim semantics on purpose
		if err := topo.Ensure(ctx, js); err != nil {
			t.Fatal(err)
		}
	}
	w, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.w = w
	rctx, cancel := context.WithCancel(ctx)
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- w.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-e.done; err != nil {
			t.Error(err)
		}
	})
	return e
}

// metric is the value of the worker's counter or gauge name with the
// labels given as name, value pairs (0 when it has no such series; a
// metric the worker does not have at all fails the test, so an assertion
// of 0 cannot pass on a misspelt name).
func (e *env) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
		return 0
	}
	t.Fatalf("the worker has no metric %s", name)
	return 0
}

// submit does what the producer does: record the job and publish page 0.
func (e *env) submit(t *testing.T, id string, skip bool) {
	e.submitFor(t, id, skip, e.in.ID)
}

func (e *env) submitFor(t *testing.T, id string, skip bool, integration string) {
	e.submitJob(t, &schema.Job{JobID: id, Org: e.org.ID, Collection: "docs", IntegrationID: integration, Kind: schema.JobBucket, Bucket: "acme-docs",
		Region: "us-east-1", SkipExisting: skip, CreatedAt: time.Now()})
}

// submitJob starts job as the API does (jobs.Store.Submit).
func (e *env) submitJob(t *testing.T, job *schema.Job) {
	t.Helper()
	store, err := jobs.Open(context.Background(), e.js, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Submit(context.Background(), job); err != nil {
		t.Fatal(err)
	}
}

// status reads a job's status now.
func (e *env) status(t *testing.T, id string) *schema.JobStatus {
	t.Helper()
	kv, _ := e.js.KeyValue(context.Background(), schema.BucketJobs)
	entry, err := kv.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var st schema.JobStatus
	_ = json.Unmarshal(entry.Value(), &st)
	return &st
}

// wait polls the job status until it is final (a generous deadline, not a timing assertion).
func (e *env) wait(t *testing.T, id string) *schema.JobStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := *e.status(t, id)
		if st.Final() {
			return &st
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s: %+v", st.Status, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) chunks(t *testing.T) []*schema.Chunk {
	t.Helper()
	ctx := context.Background()
	s, _ := e.js.Stream(ctx, schema.StreamChunks)
	info, _ := s.Info(ctx)
	var out []*schema.Chunk
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := schema.DecodeChunk(m.Data); err == nil && c.ChunkID != "" {
			out = append(out, c)
		}
	}
	return out
}

// visible folds CHUNKS with schema.View, the downstream contract.
func visible(t *testing.T, e *env) (ids map[string]bool, raw, commits int) {
	t.Helper()
	view := schema.NewView()
	eachChunksMessage(t, e, func(data []byte) {
		if err := view.Apply(data); err != nil {
			t.Fatal(err)
		}
	})
	return view.Visible(), view.Chunks, view.Commits
}

// eachChunksMessage calls fn with every message on CHUNKS, in order, read
// through an ordered consumer (a request per message is slow past a few
// thousand).
func eachChunksMessage(t *testing.T, e *env, fn func(data []byte)) {
	t.Helper()
	ctx := context.Background()
	s, _ := e.js.Stream(ctx, schema.StreamChunks)
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs == 0 {
		return
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(0); seq < info.State.LastSeq; {
		batch, err := c.Fetch(int(min(1000, info.State.LastSeq-seq)), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			md, _ := m.Metadata()
			seq = md.Sequence.Stream
			fn(m.Data())
			got++
		}
		if got == 0 {
			t.Fatalf("CHUNKS read stopped at %d of %d", seq, info.State.LastSeq)
		}
	}
}

func corpus() map[string]string {
	long := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 60) + "\n\n" + strings.Repeat("Second paragraph line.\n", 30)
	return map[string]string{
		"a.txt": "hello world\n", "b/long.md": long, "c.json": `{"k": [1, 2, 3]}`,
		"d.png": "\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00", "e/gone.txt": "deleted after listing", "f.txt": "a\n  \nb",
	}
}

func TestIndexJobPlansPagesAndCountsExactly(t *testing.T) {
	objects := corpus()
	e := setup(t, objects)
	e.s3.Gone(bucket, "e/gone.txt")
	e.submit(t, "job_1", true)
	st := e.wait(t, "job_1")
	if st.Status != schema.JobStatusCompletedWithErrors || st.FilesTotal != 6 || st.FilesIndexed != 4 || st.FilesSkipped != 1 || st.FilesFailed != 1 || st.PagesPlanned != 3 {
		t.Fatalf("status %+v", st)
	}
	enc, _ := token.Get(token.Cl100kBase)
	var want int64
	for k, body := range objects {
		if k != "d.png" && k != "e/gone.txt" {
			want += int64(enc.Count(body))
		}
	}
	if st.TokensUsed != want {
		t.Fatalf("tokens_used %d, want %d", st.TokensUsed, want)
	}
	if n := e.metric(t, "stevedore_jobs_finished_total", "status", schema.JobStatusCompletedWithErrors); n != 1 {
		t.Fatalf("jobs finished (completed_with_errors) = %v, want 1", n)
	}
	chunks := e.chunks(t)
	seen := map[string]bool{}
	for _, c := range chunks {
		if seen[c.ChunkID] {
			t.Fatalf("duplicate chunk %s", c.ChunkID)
		}
		seen[c.ChunkID] = true
		if c.TokenCount != enc.Count(c.Text) || c.TokenCount > 64 {
			t.Fatalf("chunk %s: %d tokens", c.ChunkID, c.TokenCount)
		}
	}
	if int64(len(chunks)) != st.ChunksProcessed {
		t.Fatalf("%d chunks in CHUNKS, job says %d", len(chunks), st.ChunksProcessed)
	}
	if n := e.sts.AssumeCalls(); n != 1 {
		t.Fatalf("AssumeRole calls = %d, want 1 (cached per job scope)", n)
	}
	var failed *schema.FileError
	for i := range st.Errors {
		if st.Errors[i].Key == "e/gone.txt" {
			failed = &st.Errors[i]
		}
	}
	if failed == nil || failed.ErrorClass != string(schema.ClassNotFound) {
		t.Fatalf("per-file error for the vanished object: %+v", st.Errors)
	}
	// Tenants read codes and AWS's message, never SDK internals.
	if !strings.HasPrefix(failed.Reason, "GetObject: NoSuchKey") || strings.Contains(strings.ToLower(failed.Reason), "request id") ||
		strings.Contains(failed.Reason, "http") || strings.Contains(failed.Reason, "127.0.0.1") {
		t.Fatalf("per-file error reason %q", failed.Reason)
	}

	// Re-running with skip_existing fetches nothing and publishes nothing.
	gets := e.s3.Gets.Load()
	e.submit(t, "job_2", true)
	st2 := e.wait(t, "job_2")
	if st2.FilesIndexed != 0 || st2.FilesSkipped != 5 || st2.FilesFailed != 1 || e.s3.Gets.Load() != gets {
		t.Fatalf("second run %+v, %d new GETs", st2, e.s3.Gets.Load()-gets)
	}
	if len(e.chunks(t)) != len(chunks) {
		t.Fatal("second run published chunks")
	}
}

func TestChangedObjectIsReindexedAndOldChunksTombstoned(t *testing.T) {
	e := setup(t, map[string]string{"a.txt": strings.Repeat("one two three. ", 40)})
	e.submit(t, "job_1", true)
	e.wait(t, "job_1")
	before := e.chunks(t)
	e.s3.Put(bucket, "a.txt", "completely new text\n")
	e.submit(t, "job_2", true)
	st := e.wait(t, "job_2")
	if st.FilesIndexed != 1 {
		t.Fatalf("changed object not re-indexed: %+v", st)
	}
	ctx := context.Background()
	s, _ := e.js.Stream(ctx, schema.StreamChunks)
	m, err := s.GetLastMsgForSubject(ctx, schema.ChunkSubject(e.org.ID, "docs"))
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	info, _ := s.Info(ctx)
	for seq := info.State.FirstSeq; seq <= m.Sequence; seq++ {
		msg, _ := s.GetMsg(ctx, seq)
		if ts, err := schema.DecodeTombstone(msg.Data); err == nil {
			found = len(ts.ChunkIDs) == len(before) && ts.Reason == "replaced"
		}
	}
	if !found {
		t.Fatal("no tombstone for the replaced version's chunks")
	}
}

func TestSecretsNeverPublished(t *testing.T) {
	e := setup(t, corpus())
	e.submit(t, "job_1", true)
	e.wait(t, "job_1")
	ctx := context.Background()
	for _, name := range []string{schema.StreamJobs, schema.StreamTasks, schema.StreamChunks, schema.StreamEvents, schema.StreamDead} {
		s, _ := e.js.Stream(ctx, name)
		info, _ := s.Info(ctx)
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				continue // consumed from a work queue
			}
			secrets := []string{awstest.OurSecretKey, e.org.ExternalID}
			for _, ss := range e.sts.Sessions() {
				secrets = append(secrets, ss.SecretAccessKey, ss.Token, ss.AccessKeyID)
			}
			for _, secret := range secrets {
				if strings.Contains(string(m.Data), secret) {
					t.Fatalf("%s message %d contains a secret", name, seq)
				}
			}
		}
	}
}

func TestExpiredSessionIsRefreshedAndRetriedOnce(t *testing.T) {
	e := setup(t, map[string]string{"a.txt": "hello", "b.txt": "world"})
	e.s3.ExpireNext.Store(1) // the cached session expires under the first S3 call
	e.submit(t, "job_1", true)
	st := e.wait(t, "job_1")
	if st.Status != schema.JobStatusCompleted || st.FilesIndexed != 2 {
		t.Fatalf("status %+v", st)
	}
	if n := e.sts.AssumeCalls(); n != 2 {
		t.Fatalf("STS calls %d, want 2 (one re-assume after ExpiredToken)", n)
	}
	if n := e.metric(t, "stevedore_s3_stale_credential_retries_total"); n != 1 {
		t.Fatalf("stale-token retries %v, want 1", n)
	}
}

func TestDeniedRoleFailsFastAndMarksTheIntegration(t *testing.T) {
	e := setup(t, map[string]string{"a.txt": "hello"})
	// The customer edits the trust policy to another ExternalId.
	e.sts.SetRole(awstest.Role{ARN: registrytest.RoleARN, Principal: awstest.Principal, ExternalID: "cap_org_someone_else", Buckets: []string{bucket}})
	e.submit(t, "job_1", true)
	st := e.wait(t, "job_1")
	if st.Status != schema.JobStatusFailed || st.Error == nil || st.Error.ErrorClass != string(schema.ClassTenantAuth) || !strings.Contains(st.Error.Hint, "ExternalId") {
		t.Fatalf("status %+v %+v", st, st.Error)
	}
	e.submit(t, "job_2", true)
	if st := e.wait(t, "job_2"); st.Status != schema.JobStatusFailed {
		t.Fatalf("second job %+v", st)
	}
	if n := e.sts.AssumeCalls(); n != 1 {
		t.Fatalf("STS calls %d, want 1 (the second job fails from the negative cache)", n)
	}
	in, _ := registrytest.Registry(e.js).Integration(context.Background(), e.org.ID, e.in.ID)
	if in.Unhealthy == nil || in.Unhealthy.Class != string(schema.ClassTenantAuth) || in.Status != registry.StatusActive {
		t.Fatalf("integration health %+v", in)
	}
}

// TestStaticKeysPerJob is the A/B scenario: job A is submitted with the
// right secret, then job B with a wrong one for the same access key ID
// before A runs. Each job runs with the secret it was submitted with: A
// indexes, B fails with SignatureDoesNotMatch (the fake S3 checks SigV4
// signatures), and nothing calls STS.
func TestStaticKeysPerJob(t *testing.T) {
	e := setup(t, map[string]string{"a.txt": "hello static", "b.txt": "second"})
	const keyID, secret = "AKIASTATICSTATIC0001", "static-secret-access-key-0001"
	reg := registrytest.Registry(e.js)
	ctx := context.Background()
	in, refA, err := reg.StaticKeys(ctx, "test", e.org.ID, keyID, secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, refB, err := reg.StaticKeys(ctx, "test", e.org.ID, keyID, "a-wrong-secret-typed-later", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.s3.AllowStaticSecret(keyID, secret, bucket)
	job := func(id, ref string) *schema.Job {
		return &schema.Job{JobID: id, Org: e.org.ID, Collection: "docs", IntegrationID: in.ID, CredentialRef: ref, Kind: schema.JobBucket,
			Bucket: bucket, Region: "us-east-1", SkipExisting: false, CreatedAt: time.Now()}
	}
	e.submitJob(t, job("job_a", refA))
	e.submitJob(t, job("job_b", refB))
	if st := e.wait(t, "job_a"); st.Status != schema.JobStatusCompleted || st.FilesIndexed != 2 {
		t.Fatalf("job A (right secret): %+v", st)
	}
	st := e.wait(t, "job_b")
	if st.Status != schema.JobStatusFailed || st.Error == nil || !strings.Contains(st.Error.Reason, "SignatureDoesNotMatch") {
		t.Fatalf("job B (wrong secret): %+v %+v", st, st.Error)
	}
	t.Logf("job A %s (%d indexed); job B %s: %s", schema.JobStatusCompleted, 2, st.Status, st.Error.Reason)
	if n := e.sts.AssumeCalls(); n != 0 {
		t.Fatalf("static keys called STS %d times", n)
	}
}

// TestFairnessAcrossTenants queues a 20,000-object job for one tenant, then a
// one-file job for another, and requires the second to finish while the
// first still has thousands of tasks waiting: claims take turns between
// tenants instead of draining one backlog first.
func TestFairnessAcrossTenants(t *testing.T) {
	if testing.Short() {
		t.Skip("20,000 objects")
	}
	const big = 20_000
	objects := make(map[string]string, big)
	for i := 0; i < big; i++ {
		objects[fmt.Sprintf("bulk/%05d.txt", i)] = fmt.Sprintf("object %d", i)
	}
	e := setup(t, objects, func(c *Config) { c.PageSize = 1000 })
	ctx := context.Background()
	reg := registrytest.Registry(e.js)
	orgB, _, _ := reg.CreateOrg(ctx, "test", "Tenant B")
	const roleB = "arn:aws:iam::123456789012:role/tenant-b"
	inB, _ := reg.AddIntegration(ctx, "test", orgB.ID, registry.Spec{RoleARN: roleB})
	inB, _ = reg.RecordVerification(ctx, "test", orgB.ID, inB.ID, &registry.Verification{At: time.Now(), OK: true})
	e.sts.SetRole(awstest.Role{ARN: roleB, Principal: awstest.Principal, ExternalID: orgB.ExternalID, Buckets: []string{"b-docs"}})
	e.s3.Put("b-docs", "urgent.txt", "tenant B needs this now")

	e.submit(t, "job_bulk", true)
	tasks, _ := e.js.Stream(ctx, schema.StreamTasks)
	for {
		info, _ := tasks.Info(ctx)
		if info.State.Msgs >= 5000 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	jobB := &schema.Job{JobID: "job_urgent", Org: orgB.ID, Collection: "docs", IntegrationID: inB.ID, Kind: schema.JobFile, Bucket: "b-docs",
		Key: "urgent.txt", Region: "us-east-1", SkipExisting: true, CreatedAt: time.Now()}
	data, _ := json.Marshal(&schema.JobStatus{JobID: jobB.JobID, Org: orgB.ID, Collection: "docs", Status: schema.JobStatusPending, LastPage: -1})
	kv, _ := e.js.KeyValue(ctx, schema.BucketJobs)
	if _, err := kv.Create(ctx, jobB.JobID, data); err != nil {
		t.Fatal(err)
	}
	payload, _ := schema.Encode(jobB)
	if _, err := e.js.Publish(ctx, schema.JobSubject(orgB.ID, "docs"), payload, jetstream.WithMsgID(schema.JobPageMsgID(jobB.JobID, 0))); err != nil {
		t.Fatal(err)
	}
	stB := e.wait(t, jobB.JobID)
	took := time.Since(start)
	info, _ := tasks.Info(ctx)
	entry, _ := kv.Get(ctx, "job_bulk")
	var stA schema.JobStatus
	_ = json.Unmarshal(entry.Value(), &stA)
	if stB.Status != schema.JobStatusCompleted || stB.FilesIndexed != 1 {
		t.Fatalf("tenant B: %+v", stB)
	}
	if info.State.Msgs < 1000 || stA.Status == schema.JobStatusCompleted {
		t.Fatalf("tenant A's backlog was drained first (%d tasks left, A %s): no fairness", info.State.Msgs, stA.Status)
	}
	t.Logf("tenant B's one-file job finished in %s while tenant A had %d tasks waiting (%d of %d indexed)", took.Round(time.Millisecond), info.State.Msgs, stA.FilesIndexed, big)
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
