//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/scripts/stack"
)

// TestSyncFollowsTheBucket is issue 25's scenario on MinIO and `stevedore
// dev`, with no notifications: 10 objects indexed by a directory job; 3
// deleted from the bucket and 1 rewritten; a file job on another key deleted
// since it was indexed completes with that key deleted; the same directory
// job again deletes the 3 (files_deleted 3), re-indexes the rewritten one
// and leaves the other 6 untouched. Then 5 of the 7 left go: the next sync
// is refused as a mass delete (nothing deleted) until allow_mass_delete.
func TestSyncFollowsTheBucket(t *testing.T) {
	t.Parallel() // mostly waits on its own stack: runs beside the others that do (package doc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, org, _ := startOnboarded(t, ctx, "sync-e2e")
	c := s.RootS3()
	put := func(key, body string) {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	del := func(keys ...string) {
		for _, k := range keys {
			if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("demo-docs"), Key: aws.String(k)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	key := func(i int) string { return fmt.Sprintf("sync/%02d.txt", i) }
	for i := range 10 {
		put(key(i), fmt.Sprintf("Document %d of the synced directory, first version.", i))
	}
	put("single/gone.txt", "A document indexed by a file job, then deleted.")
	run := func(path string, body map[string]any) *schema.JobStatus {
		t.Helper()
		st, err := s.WaitJob(ctx, org, indexFile(t, ctx, s, org, "/v2/collections/synced/index/s3"+path, body), nil)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	sync := func(extra map[string]any) *schema.JobStatus {
		body := map[string]any{"directory_path": "sync/"}
		for k, v := range extra {
			body[k] = v
		}
		return run("/directory", body)
	}
	if st := run("/file", map[string]any{"file_uri": "s3://demo-docs/single/gone.txt"}); st.Status != schema.JobStatusCompleted || st.FilesIndexed != 1 {
		t.Fatalf("file job: %+v", st)
	}
	if st := sync(nil); st.Status != schema.JobStatusCompleted || st.FilesIndexed != 10 || st.Sweep == nil || st.Sweep.Status != schema.SweepDone {
		t.Fatalf("first sync: %+v", st)
	}

	del(key(1), key(2), key(3), "single/gone.txt")
	put(key(4), "Document 4, rewritten since the first sync.")
	if st := run("/file", map[string]any{"file_uri": "s3://demo-docs/single/gone.txt"}); st.Status != schema.JobStatusCompleted || st.FilesDeleted != 1 || st.FilesFailed != 0 {
		t.Fatalf("file job on a deleted key: %+v", st)
	}
	st := sync(nil)
	if st.Status != schema.JobStatusCompleted || st.FilesDeleted != 3 || st.FilesIndexed != 1 || st.FilesSkipped != 6 || st.Sweep.Deleted != 3 || st.Sweep.Held != 10 {
		t.Fatalf("second sync: %+v sweep %+v", st, st.Sweep)
	}
	vis := visibleText(t, ctx, s, org.OrgID, "synced")
	for _, k := range []string{key(1), key(2), key(3), "single/gone.txt"} {
		if vis[k] != "" {
			t.Errorf("%s still visible: %q", k, vis[k])
		}
	}
	if !strings.Contains(vis[key(4)], "rewritten") || strings.Contains(vis[key(4)], "first version") {
		t.Errorf("%s: %q", key(4), vis[key(4)])
	}
	for _, i := range []int{0, 5, 6, 7, 8, 9} {
		if !strings.Contains(vis[key(i)], "first version") {
			t.Errorf("%s: %q", key(i), vis[key(i)])
		}
	}

	del(key(5), key(6), key(7), key(8), key(9))
	st = sync(nil)
	if st.Status != schema.JobStatusCompletedWithErrors || st.Sweep.Status != schema.SweepRefused || st.Sweep.Candidates != 5 || st.FilesDeleted != 0 {
		t.Fatalf("mass delete: %+v sweep %+v", st, st.Sweep)
	}
	if vis := visibleText(t, ctx, s, org.OrgID, "synced"); vis[key(5)] == "" {
		t.Fatal("a refused sweep deleted")
	}
	if st := sync(map[string]any{"allow_mass_delete": true}); st.Status != schema.JobStatusCompleted || st.FilesDeleted != 5 {
		t.Fatalf("allowed mass delete: %+v sweep %+v", st, st.Sweep)
	}
	vis = visibleText(t, ctx, s, org.OrgID, "synced")
	for i := range 10 {
		if want := i == 0 || i == 4; (vis[key(i)] != "") != want {
			t.Errorf("%s visible: %v, want %v", key(i), vis[key(i)] != "", want)
		}
	}
}

// visibleText folds a collection's CHUNKS as downstream does (schema.View)
// and returns each key's visible text.
func visibleText(t *testing.T, ctx context.Context, s *stack.Stack, org, collection string) map[string]string {
	t.Helper()
	nc, err := nats.Connect(s.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	visible, _, _ := committedChunks(t, js, org, collection)
	chunks, _, err := s.Chunks(ctx, org, collection)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range chunks {
		if visible[c.ChunkID] && !strings.Contains(out[c.Key], c.Text) {
			out[c.Key] += c.Text
		}
	}
	return out
}
