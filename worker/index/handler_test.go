package index

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds/awstest"
	"github.com/stevedore-dev/stevedore/worker/handlertest"
	"github.com/stevedore-dev/stevedore/worker/meter"
	"github.com/stevedore-dev/stevedore/worker/token"
)

const bucket = handlertest.Bucket

// indexer is a Handler on a real registry, STS and S3 (awstest) and
// object-state bucket, whose publishes are collected instead of sent.
type indexer struct {
	h    *Handler
	env  *handlertest.Env
	s3   *awstest.S3
	task schema.Task
	mu   sync.Mutex
	out  []schema.Out
	seq  uint64 // the stream sequence the fake publish gives the next message
	// stream makes publishes go to JetStream too (CHUNKS then holds what
	// was published, at the sequences recorded).
	stream bool
}

func newIndexer(t *testing.T) *indexer {
	t.Helper()
	e := handlertest.Start(t)
	enc, err := token.Get(token.Cl100kBase)
	if err != nil {
		t.Fatal(err)
	}
	x := &indexer{env: e, s3: e.S3, task: schema.Task{Op: schema.OpIndex, JobID: "job_i", Org: e.Org.ID, Collection: "docs", IntegrationID: e.In.ID,
		Bucket: bucket, Region: "us-east-1", SkipExisting: true}}
	m := meter.New(nil)
	x.h, err = New(context.Background(), Config{JS: e.JS, Metrics: m, Registry: e.Registry, Jobs: e.Jobs.Cache(), Collections: e.Collections.Cache(), Encoding: enc, ChunkTokens: 16,
		Resolver: e.Resolver, MaxObjectBytes: 1 << 20, MaxDecompressedBytes: 1 << 20, Gate: NewGate(e.JS, m, nil), Publish: x.publish})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func (x *indexer) publish(ctx context.Context, msgs []schema.Out) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.stream {
		x.out = append(x.out, msgs...)
		_, err := schema.PublishAll(ctx, x.env.JS, msgs)
		return err
	}
	for _, m := range msgs {
		x.seq++
		if m.Seq != nil {
			*m.Seq = x.seq
		}
	}
	x.out = append(x.out, msgs...)
	return nil
}

// handle handles a task for key and returns what it published, by kind.
func (x *indexer) handle(t *testing.T, key string) (chunks []*schema.Chunk, commits []*schema.Commit, tombstones []*schema.Tombstone, ev *schema.ObjectEvent) {
	t.Helper()
	task := x.task
	task.Key = key
	data, _ := schema.Encode(&task)
	x.out = nil
	if err := x.h.Handle(context.Background(), handlertest.Msg{Body: data}); err != nil {
		t.Fatal(err)
	}
	for _, o := range x.out {
		switch m := o.Msg.(type) {
		case *schema.Chunk:
			chunks = append(chunks, m)
		case *schema.Commit:
			commits = append(commits, m)
		case *schema.Tombstone:
			tombstones = append(tombstones, m)
		case *schema.ObjectEvent:
			ev = m
		}
	}
	return chunks, commits, tombstones, ev
}

// One task, claim to outcome, without a runner: chunks, then the commit,
// then the outcome; the redelivered task publishes only its outcome again;
// a new version tombstones the old version's chunks before its commit.
func TestHandleIndexesAndReplaces(t *testing.T) {
	x := newIndexer(t)
	x.s3.Put(bucket, "a.txt", strings.Repeat("The first version of a document, long enough for several chunks. ", 8))
	chunks, commits, _, ev := x.handle(t, "a.txt")
	if len(chunks) < 2 || len(commits) != 1 || commits[0].Chunks != len(chunks) || ev.Outcome != schema.OutcomeIndexed || ev.Chunks != len(chunks) {
		t.Fatalf("%d chunks, commits %+v, event %+v", len(chunks), commits, ev)
	}
	first := len(chunks)
	chunks, commits, _, ev = x.handle(t, "a.txt") // the same job's task again
	if len(chunks) != 0 || len(commits) != 0 || ev.Outcome != schema.OutcomeIndexed || ev.Chunks != first {
		t.Fatalf("a redelivery republished: %d chunks, %d commits, event %+v", len(chunks), len(commits), ev)
	}
	x.s3.Put(bucket, "a.txt", "A short second version.")
	x.task.JobID = "job_j"
	chunks, commits, tombstones, ev := x.handle(t, "a.txt")
	if len(chunks) != 1 || len(commits) != 1 || len(tombstones) != 1 || len(tombstones[0].ChunkIDs) != first || ev.Outcome != schema.OutcomeIndexed {
		t.Fatalf("replace: %d chunks, %d commits, tombstones %+v, event %+v", len(chunks), len(commits), tombstones, ev)
	}
	if i, j := indexOf(x.out, tombstones[0]), indexOf(x.out, commits[0]); i > j {
		t.Fatal("the new version was committed before the old one's chunks were tombstoned")
	}
}

func indexOf(out []schema.Out, v any) int {
	for i, o := range out {
		if o.Msg == v {
			return i
		}
	}
	return -1
}

// A sync's task records that its job saw the object (SeenBy), also when
// the object is already indexed and nothing else is written; another
// job's task (a notification's) keeps the mark.
func TestSyncTasksMarkWhatTheListingHeld(t *testing.T) {
	x := newIndexer(t)
	x.s3.Put(bucket, "a.txt", "A document.")
	x.handle(t, "a.txt")
	seenBy := func() string {
		st, _, err := x.h.loadState(context.Background(), schema.ObjectKey(x.task.Org, x.task.Collection, bucket, "a.txt"))
		if err != nil || st == nil {
			t.Fatalf("state %v %v", st, err)
		}
		return st.SeenBy
	}
	if got := seenBy(); got != "" {
		t.Fatalf("a job that is not a sync marked the object: %q", got)
	}
	x.task.JobID, x.task.Sync = "job_sync", true
	if _, _, _, ev := x.handle(t, "a.txt"); ev.Reason != schema.ReasonAlreadyIndexed || seenBy() != "job_sync" {
		t.Fatalf("already indexed: event %+v, seen by %q", ev, seenBy())
	}
	x.s3.Put(bucket, "a.txt", "A document, changed.")
	x.task.JobID, x.task.Sync = "job_other", false
	if _, _, _, ev := x.handle(t, "a.txt"); ev.Outcome != schema.OutcomeIndexed || seenBy() != "job_sync" {
		t.Fatalf("re-indexed by another job: event %+v, seen by %q", ev, seenBy())
	}
}
