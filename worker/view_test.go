package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"strings"

	"github.com/nats-io/nats.go"
	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/registry"
)

// The worker resolves tenants from a watched copy of the registry; a
// revocation still stops its work: every job submitted after the watch
// delivered it fails as integration_unusable (revoked), without a restart.
func TestRevocationReachesTheWorkerWithoutRegistryReads(t *testing.T) {
	e := setup(t, map[string]string{"a.txt": "alpha", "b.txt": "beta"})
	e.indexFile(t, "job_before", "a.txt")
	if n := e.w.res.Directory.(*registry.View).Reads(); n != 0 {
		t.Fatalf("%d registry reads: tenants should come from the watched view", n)
	}
	if _, err := e.w.cfg.Registry.Revoke(context.Background(), "test", e.org.ID, e.in.ID, "customer left"); err != nil {
		t.Fatal(err)
	}
	// The watch delivers the change within milliseconds; the loop only
	// bounds the wait, it does not time anything.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		id := fmt.Sprintf("job_after_%d", i)
		e.submitFile(t, id, "b.txt", false)
		st := e.wait(t, id)
		if st.Status == schema.JobStatusFailed && st.Error != nil && st.Error.ErrorCode == schema.CodeIntegration && strings.Contains(st.Error.Reason, "revoked") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs still run after the revocation: %+v %+v", st, st.Error)
		}
	}
}

// A job's custom metadata is kept on its record, not copied into every task
// (up to 16 KiB × objects of TASKS), and still reaches every chunk.
func TestCustomMetadataFromTheJobRecord(t *testing.T) {
	e := setup(t, map[string]string{"a.txt": "alpha", "b.txt": "beta", "c.txt": "gamma"})
	var mu sync.Mutex
	var tasks [][]byte
	sub, err := e.js.Conn().Subscribe("tasks.>", func(m *nats.Msg) {
		mu.Lock()
		tasks = append(tasks, m.Data)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	meta := json.RawMessage(`{"team":"legal","tags":["a","b"]}`)
	e.submitJob(t, &schema.Job{JobID: "job_meta", Org: e.org.ID, Collection: "docs", IntegrationID: e.in.ID, Kind: schema.JobBucket, Bucket: bucket,
		Region: "us-east-1", CustomMetadata: meta, CreatedAt: time.Now()})
	if st := e.wait(t, "job_meta"); st.Status != schema.JobStatusCompleted || st.FilesIndexed != 3 {
		t.Fatalf("status %+v", st)
	}
	chunks := e.chunks(t)
	if len(chunks) == 0 {
		t.Fatal("no chunks")
	}
	for _, c := range chunks {
		if string(c.CustomMetadata) != string(meta) {
			t.Fatalf("chunk %s carries %s, want %s", c.ChunkID, c.CustomMetadata, meta)
		}
	}
	_ = e.js.Conn().Flush()
	mu.Lock()
	defer mu.Unlock()
	if len(tasks) != 3 {
		t.Fatalf("%d task messages seen, want 3", len(tasks))
	}
	for _, data := range tasks {
		if strings.Contains(string(data), "custom_metadata") {
			t.Fatalf("a task carries the custom metadata: %s", data)
		}
	}
}
