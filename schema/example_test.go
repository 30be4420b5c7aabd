package schema_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/natstest"
)

// A downstream consumer folds every CHUNKS message of a subject, in stream
// order, into a View: chunks become visible once their version's commit
// arrives, and tombstones remove them.
func ExampleView() {
	const org, coll, bucket, key, etag, ext = "org_1", "docs", "acme-docs", "a.txt", `"e1"`, "text-1"
	enc := func(m any) []byte { b, _ := schema.Encode(m); return b }
	var ids []string
	view := schema.NewView()
	for i, text := range []string{"first chunk", "second chunk"} {
		id := schema.ChunkID(org, coll, bucket, key, etag, ext, i)
		ids = append(ids, id)
		_ = view.Apply(enc(&schema.Chunk{ChunkID: id, Org: org, Collection: coll, Bucket: bucket, Key: key, ETag: etag,
			Index: i, Text: text, TokenCount: 2, Encoding: "cl100k_base", ExtractorVersion: ext}))
	}
	fmt.Println("before the commit:", len(view.Visible()))
	_ = view.Apply(enc(&schema.Commit{Org: org, Collection: coll, Bucket: bucket, Key: key, ETag: etag, ExtractorVersion: ext, Chunks: 2, At: time.Now()}))
	fmt.Println("after the commit:", len(view.Visible()))
	_ = view.Apply(enc(&schema.Tombstone{Org: org, Collection: coll, Bucket: bucket, Key: key, ETag: etag, ChunkIDs: ids, Reason: "deleted", At: time.Now()}))
	fmt.Println("after the tombstone:", len(view.Visible()))
	// Output:
	// before the commit: 0
	// after the commit: 2
	// after the tombstone: 0
}

// Every process ensures the topology at start-up; it is idempotent.
func ExampleTopology_Ensure() {
	dir, _ := os.MkdirTemp("", "stevedore-example")
	defer os.RemoveAll(dir)
	_, _, js, stop, err := natstest.Run(dir) // an in-process nats-server
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()
	topo := schema.Topology{Replicas: 1, MaxDeliver: 8} // zero fields take their defaults
	for range 2 {
		if err := topo.Ensure(ctx, js); err != nil {
			fmt.Println(err)
			return
		}
	}
	for _, name := range []string{schema.StreamJobs, schema.StreamTasks, schema.StreamChunks, schema.StreamEvents, schema.StreamDead, schema.StreamAudit} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(s.CachedInfo().Config.Name, s.CachedInfo().Config.Retention)
	}
	// Output:
	// JOBS WorkQueue
	// TASKS WorkQueue
	// CHUNKS Limits
	// EVENTS Limits
	// DEAD Limits
	// AUDIT Limits
}
