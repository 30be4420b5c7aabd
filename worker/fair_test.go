package worker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stevedore-dev/stevedore/schema"
)

// With a share of one task, planning waits for each page's tasks to drain
// and the job still completes exactly.
func TestJobCompletesUnderATinyQueueShare(t *testing.T) {
	objects := map[string]string{}
	for i := 0; i < 9; i++ {
		objects[fmt.Sprintf("doc-%d.txt", i)] = fmt.Sprintf("document %d", i)
	}
	e := setup(t, objects, func(c *Config) { c.OrgTaskShare = 1; c.PageSize = 2; c.DiscoverEvery = 50 * time.Millisecond })
	e.submit(t, "job_share", false)
	if st := e.wait(t, "job_share"); st.Status != schema.JobStatusCompleted || st.FilesIndexed != 9 {
		t.Fatalf("status %+v", st)
	}
}

// An org's consumers that went unused for Topology.OrgConsumerIdle are
// removed by nats-server; the org's next job makes them again and completes.
func TestIdleOrgConsumersAreRemovedAndMadeAgain(t *testing.T) {
	e := setup(t, map[string]string{"a.txt": "alpha", "b.txt": "beta"}, func(c *Config) {
		c.Topology.OrgConsumerIdle = time.Second
		c.DiscoverEvery = 50 * time.Millisecond
	})
	e.submit(t, "job_idle_1", false)
	if st := e.wait(t, "job_idle_1"); st.Status != schema.JobStatusCompleted || st.FilesIndexed != 2 {
		t.Fatalf("first job %+v", st)
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range []struct{ stream, name string }{{schema.StreamTasks, schema.IndexerConsumer(e.org.ID)}, {schema.StreamJobs, schema.PlannerConsumer(e.org.ID)}} {
		for {
			_, err := e.js.Consumer(ctx, c.stream, c.name)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("consumer %s still there after its idle time: %v", c.name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	e.submit(t, "job_idle_2", false)
	if st := e.wait(t, "job_idle_2"); st.Status != schema.JobStatusCompleted || st.FilesIndexed+st.FilesSkipped != 2 {
		t.Fatalf("job after the consumers were removed %+v", st)
	}
}
