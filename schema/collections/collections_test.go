package collections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/schema/jobs"
	"github.com/stevedore-dev/stevedore/schema/registry"
	"github.com/stevedore-dev/stevedore/schema/registry/registrytest"
	"github.com/stevedore-dev/stevedore/schema/schedules"
)

func eraser(t *testing.T) (*collections.Eraser, *registrytest.Fixture) {
	t.Helper()
	tf := registrytest.Tenant(t)
	ctx := context.Background()
	store, err := collections.Open(ctx, tf.JS, nil)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := jobs.Open(ctx, tf.JS, nil)
	sc, _ := schedules.Open(ctx, tf.JS, nil)
	return &collections.Eraser{JS: tf.JS, Store: store, Jobs: j, Schedules: sc, Registry: tf.Registry}, tf
}

// A collection's record: created once (Ensure, Put), settings replaced,
// listed by name; marked deleting by one job (asked again, that job; once
// it failed, a new one), its routes and schedule removed; removed only by
// its own delete job.
func TestCollectionLifecycle(t *testing.T) {
	e, tf := eraser(t)
	ctx := context.Background()
	org := tf.Org.ID
	if _, created, err := e.Store.Ensure(ctx, org, "docs"); err != nil || !created {
		t.Fatalf("ensure: %v %v", created, err)
	}
	if _, created, _ := e.Store.Ensure(ctx, org, "docs"); created {
		t.Fatal("created twice")
	}
	if c, created, err := e.Store.Put(ctx, org, "docs", collections.Settings{ReadSettings: schema.ReadSettings{ProcessingType: "advanced"}}); err != nil || created || c.ProcessingType != "advanced" {
		t.Fatalf("put: %+v %v %v", c, created, err)
	}
	if _, _, err := e.Store.Put(ctx, org, "a-first", collections.Settings{}); err != nil {
		t.Fatal(err)
	}
	if list, err := e.Store.List(ctx, org); err != nil || len(list) != 2 || list[0].Name != "a-first" {
		t.Fatalf("list %+v %v", list, err)
	}
	if list, _ := e.Store.List(ctx, "org_other"); len(list) != 0 {
		t.Fatal("another org lists them")
	}
	if _, err := tf.Registry.AddRoute(ctx, "test", registry.Route{Org: org, Collection: "docs", Bucket: "acme-docs", IntegrationID: tf.In.ID}); err != nil {
		t.Fatal(err)
	}
	job := &schema.Job{Org: org, Collection: "docs", IntegrationID: tf.In.ID, Kind: schema.JobBucket, Bucket: "acme-docs", Region: "us-east-1"}
	if _, err := e.Schedules.Set(ctx, &schedules.Schedule{Org: org, Collection: "docs", Every: "1h", Job: job}); err != nil {
		t.Fatal(err)
	}

	first, started, err := e.DeleteCollection(ctx, "test", org, "docs")
	if err != nil || !started || first.Kind != schema.JobDeleteCollection {
		t.Fatalf("delete: %+v %v %v", first, started, err)
	}
	again, started, err := e.DeleteCollection(ctx, "test", org, "docs")
	if err != nil || started || again.JobID != first.JobID {
		t.Fatalf("delete again: %+v %v %v", again, started, err)
	}
	if _, _, err := e.Store.Ensure(ctx, org, "docs"); !errors.Is(err, collections.ErrDeleting) {
		t.Fatalf("ensure while deleting: %v", err)
	}
	if deleting, err := e.Store.Cache().Deleting(ctx, org, "docs"); err != nil || !deleting {
		t.Fatalf("cache: %v %v", deleting, err)
	}
	routes, _ := tf.Registry.Routes(ctx)
	if len(routes) != 0 {
		t.Fatalf("routes left: %+v", routes)
	}
	if _, _, err := e.Schedules.Get(ctx, org, "docs"); !errors.Is(err, schedules.ErrNotFound) {
		t.Fatalf("schedule left: %v", err)
	}
	// The job failed: a new delete starts a new job.
	folder := e.Jobs.Folder(nil)
	if _, err := folder.Fold(ctx, first.JobID, []jobs.Event{{Seq: 1, Event: &schema.JobEvent{Type: schema.JobFailed, Reason: "test"}}}); err != nil {
		t.Fatal(err)
	}
	retry, started, err := e.DeleteCollection(ctx, "test", org, "docs")
	if err != nil || !started || retry.JobID == first.JobID {
		t.Fatalf("after a failed delete: %+v %v %v", retry, started, err)
	}
	if err := e.Store.Remove(ctx, org, "docs", first.JobID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Store.Get(ctx, org, "docs"); err != nil {
		t.Fatal("removed by a job that no longer deletes it")
	}
	if err := e.Store.Remove(ctx, org, "docs", retry.JobID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Store.Get(ctx, org, "docs"); !errors.Is(err, collections.ErrNotFound) {
		t.Fatalf("not removed: %v", err)
	}
}

// TestDocumentReadAtScale times what GET of a document costs: one document
// of 1,000 chunks among many (2,000 in make test;
// STEVEDORE_SCALE_DOCUMENTS=100000 in `make sweep-scale`), its chunks read
// back from CHUNKS by its recorded sequences. It checks the chunks, not
// the time.
func TestDocumentReadAtScale(t *testing.T) {
	n := 2000
	if v := os.Getenv("STEVEDORE_SCALE_DOCUMENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("STEVEDORE_SCALE_DOCUMENTS=%q: want a positive number", v)
		}
	}
	e, tf := eraser(t)
	ctx := context.Background()
	org := tf.Org.ID
	holdMany(t, tf.JS, org, n)
	const chunks = 1000
	st := schema.ObjectState{Bucket: "acme-docs", Key: "big.txt", ETag: `"e"`, Status: schema.ObjectIndexed, ExtractorVersion: "v1", Chunks: chunks}
	ids := st.ChunkIDs(org, "docs")
	seqs := make([]uint64, chunks)
	out := make([]schema.Out, chunks)
	for i := range out {
		out[i] = schema.Out{Subject: schema.ChunkSubject(org, "docs"), MsgID: ids[i], Seq: &seqs[i],
			Msg: &schema.Chunk{ChunkID: ids[i], Org: org, Collection: "docs", Bucket: st.Bucket, Key: st.Key, ETag: st.ETag, Index: i, Text: fmt.Sprintf("chunk %d", i), ExtractorVersion: "v1"}}
	}
	if _, err := schema.PublishAll(ctx, tf.JS, out); err != nil {
		t.Fatal(err)
	}
	for _, s := range seqs {
		st.ChunkSeqs = schema.AppendSeq(st.ChunkSeqs, s)
	}
	kv, _ := tf.JS.KeyValue(ctx, schema.BucketObjects)
	data, _ := json.Marshal(&st)
	if _, err := kv.Put(ctx, schema.ObjectKey(org, "docs", st.Bucket, st.Key), data); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	doc, err := e.Store.Document(ctx, org, "docs", schema.DocumentID(st.Bucket, st.Key))
	if err != nil {
		t.Fatal(err)
	}
	got, unavailable, err := collections.Chunks(ctx, tf.JS, org, "docs", doc, 0, chunks)
	took := time.Since(start)
	if err != nil || unavailable != "" || len(got) != chunks {
		t.Fatalf("%d chunks, %q, %v", len(got), unavailable, err)
	}
	for i, c := range got {
		if c.Index != i || c.ChunkID != ids[i] {
			t.Fatalf("chunk %d: %+v", i, c)
		}
	}
	t.Logf("document of %d chunks (%d runs of sequences) read among %d documents: %s", chunks, len(doc.ChunkSeqs), n+1, took.Round(time.Millisecond))
}

// holdMany stores n indexed states of collection docs, published to the
// KV's subjects asynchronously.
func holdMany(t *testing.T, js jetstream.JetStream, org string, n int) {
	t.Helper()
	futures := make([]jetstream.PubAckFuture, 0, 1024)
	wait := func() {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				t.Fatal(err)
			}
		}
		futures = futures[:0]
	}
	for i := range n {
		key := fmt.Sprintf("dir/%07d.txt", i)
		st := schema.ObjectState{Bucket: "acme-docs", Key: key, ETag: `"e"`, Status: schema.ObjectIndexed, Chunks: 3, ExtractorVersion: "v1"}
		data, _ := json.Marshal(&st)
		msg := nats.NewMsg("$KV." + schema.BucketObjects + "." + schema.ObjectKey(org, "docs", st.Bucket, key))
		msg.Data = data
		f, err := js.PublishMsgAsync(msg)
		if err != nil {
			t.Fatal(err)
		}
		if futures = append(futures, f); len(futures) == cap(futures) {
			wait()
		}
	}
	wait()
}
