package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry/registrytest"
)

// The collection, document and chunks commands: create and list a
// collection, list and show its documents (with the chunks a consumer
// sees), export the visible chunks, delete a document and the collection
// (jobs), and offboard an org with its data.
func TestCollectionCommands(t *testing.T) {
	tf := registrytest.Tenant(t)
	ctx := context.Background()
	url := tf.JS.Conn().ConnectedUrl()
	cli, _ := cliJSON(t, ctx, url)
	org := tf.Org.ID
	if c := cli("collection", "create", "--org", org, "--collection", "docs", "--processing-type", "advanced"); c["created"] != true {
		t.Fatalf("create %v", c)
	}
	// One indexed document with two chunks, committed on CHUNKS.
	st := schema.ObjectState{Bucket: "acme-docs", Key: "a.txt", ETag: `"e"`, Status: schema.ObjectIndexed, ExtractorVersion: "v1", Chunks: 2, UpdatedAt: time.Now()}
	ids := st.ChunkIDs(org, "docs")
	seqs := make([]uint64, 2)
	var out []schema.Out
	for i := range 2 {
		out = append(out, schema.Out{Subject: schema.ChunkSubject(org, "docs"), MsgID: ids[i], Seq: &seqs[i], Msg: &schema.Chunk{ChunkID: ids[i], Org: org,
			Collection: "docs", Bucket: st.Bucket, Key: st.Key, ETag: st.ETag, Index: i, Text: "text", ExtractorVersion: "v1"}})
	}
	out = append(out, schema.Out{Subject: schema.ChunkSubject(org, "docs"), MsgID: "commit", Msg: &schema.Commit{Commit: true, Org: org, Collection: "docs",
		Bucket: st.Bucket, Key: st.Key, ETag: st.ETag, ExtractorVersion: "v1", Chunks: 2}})
	if _, err := schema.PublishAll(ctx, tf.JS, out); err != nil {
		t.Fatal(err)
	}
	st.ChunkSeqs = []schema.SeqRun{{seqs[0], 1}, {seqs[1], 1}}
	kv, _ := tf.JS.KeyValue(ctx, schema.BucketObjects)
	data, _ := json.Marshal(&st)
	if _, err := kv.Put(ctx, schema.ObjectKey(org, "docs", st.Bucket, st.Key), data); err != nil {
		t.Fatal(err)
	}

	list := cli("collection", "list", "--org", org)["collections"].([]any)
	stats := list[0].(map[string]any)["stats"].(map[string]any)
	if len(list) != 1 || stats["document_count"] != 1.0 || stats["chunk_count"] != 2.0 {
		t.Fatalf("list %v", list)
	}
	docs := cli("document", "list", "--org", org, "--collection", "docs")
	if docs["total_count"] != 1.0 {
		t.Fatalf("documents %v", docs)
	}
	id := schema.DocumentID(st.Bucket, st.Key)
	shown := cli("document", "show", "--org", org, "--collection", "docs", "--id", id, "--chunks")
	if chunks, _ := shown["chunks"].([]any); len(chunks) != 2 {
		t.Fatalf("show %v", shown)
	}
	if exported := cli("chunks", "export", "--org", org, "--collection", "docs"); exported["visible"] != 2.0 {
		t.Fatalf("export %v", exported)
	}
	if err := run(ctx, []string{"document", "list", "--org", org, "--collection", "docs", "--status", "gone", "--nats-url", url}); exitCode(err) != exitUsage {
		t.Fatalf("bad --status: %v (exit %d)", err, exitCode(err))
	}
	if del := cli("document", "delete", "--org", org, "--collection", "docs", "--id", id); del["job_id"] == nil {
		t.Fatalf("document delete %v", del)
	}
	if err := run(ctx, []string{"document", "delete", "--org", org, "--collection", "docs", "--id", schema.DocumentID("x", "y"), "--nats-url", url}); err == nil {
		t.Fatal("a delete of a document the collection does not hold succeeded")
	}
	first := cli("collection", "delete", "--org", org, "--collection", "docs")
	if first["started"] != true {
		t.Fatalf("collection delete %v", first)
	}
	if again := cli("collection", "delete", "--org", org, "--collection", "docs"); again["job_id"] != first["job_id"] || again["started"] != false {
		t.Fatalf("collection delete again %v", again)
	}
	cli("collection", "create", "--org", org, "--collection", "more")
	off := cli("org", "disable", "--org", org, "--delete-data")
	if jobs, _ := off["delete_jobs"].([]any); off["disabled"] != true || len(jobs) != 2 {
		t.Fatalf("offboard %v", off)
	}
}
