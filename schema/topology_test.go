package schema_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/natstest"
)

func TestEnsureIdempotent(t *testing.T) {
	_, _, js := natstest.Start(t) // ensures once
	ctx := context.Background()
	if err := (schema.Topology{}).Ensure(ctx, js); err != nil {
		t.Fatalf("second ensure: %v", err)
	}
	if err := schema.Present(ctx, js); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, schema.StreamTasks)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	if info.Config.Retention != jetstream.WorkQueuePolicy || info.Config.Discard != jetstream.DiscardNew {
		t.Fatalf("TASKS must be a WorkQueue with DiscardNew, got %v/%v", info.Config.Retention, info.Config.Discard)
	}
	// A duplicate Nats-Msg-Id is a no-op.
	for i := 0; i < 2; i++ {
		ack, err := js.Publish(ctx, schema.TaskSubject("org_a", "c"), []byte(`{}`), jetstream.WithMsgID("same"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 && !ack.Duplicate {
			t.Fatal("retried publish was not deduplicated")
		}
	}
}

func TestValidBucket(t *testing.T) {
	for name, want := range map[string]bool{
		"acme-docs": true, "a.b.c": true, "Legacy_Bucket": true, "UPPER.case_2017": true, strings.Repeat("a", 255): true,
		"ab": false, "": false, "a b": false, "a/b": false, "a*": false, "a?b": false, "${aws}": false, strings.Repeat("a", 256): false,
	} {
		if got := schema.ValidBucket(name); got != want {
			t.Errorf("ValidBucket(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestValidRegion(t *testing.T) {
	for name, want := range map[string]bool{
		"us-east-1": true, "eu-central-2": true, "us-gov-west-1": true, "cn-north-1": true, "us-isob-east-1": true, "ap-southeast-5": true,
		"": false, "zz-nowhere-9.evil.com": false, "US-EAST-1": false, "us-east": false, "us-east-1/..": false, "localhost": false,
	} {
		if got := schema.ValidRegion(name); got != want {
			t.Errorf("ValidRegion(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestTopologyDriftRefused: a process whose --ack-wait or --replicas differ
// from the live topology is refused instead of rewriting the fleet's
// consumers, unless told to update.
func TestTopologyDriftRefused(t *testing.T) {
	_, _, js := natstest.Start(t) // the default topology: AckWait 60 s (the tracker's 6 s)
	ctx := context.Background()
	err := (schema.Topology{AckWait: time.Millisecond}).Ensure(ctx, js)
	if !errors.Is(err, schema.ErrTopologyDrift) || !strings.Contains(err.Error(), "--update-topology") {
		t.Fatalf("a drifting process was not refused: %v", err)
	}
	c, _ := js.Consumer(ctx, schema.StreamEvents, schema.ConsumerTracker)
	if c.CachedInfo().Config.AckWait != schema.TrackerAckWait {
		t.Fatalf("the tracker's AckWait was rewritten to %s", c.CachedInfo().Config.AckWait)
	}
	if err := (schema.Topology{AckWait: 3 * time.Second, Update: true}).Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	c, _ = js.Consumer(ctx, schema.StreamEvents, schema.ConsumerTracker)
	if c.CachedInfo().Config.AckWait != 3*time.Second {
		t.Fatalf("--update-topology did not update: %s", c.CachedInfo().Config.AckWait)
	}
	if err := (schema.Topology{AckWait: 3 * time.Second}).Ensure(ctx, js); err != nil {
		t.Fatalf("the same values again: %v", err)
	}
}

// TestTrackerAckWaitUpgrade: the tracker waits its own short ack wait; a
// tracker consumer made by an earlier version (the fleet's ack wait) is
// updated at start, not refused as drift.
func TestTrackerAckWaitUpgrade(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx := context.Background()
	old := schema.Topology{}.Consumers()[0].Config
	if old.Durable != schema.ConsumerTracker || old.AckWait != schema.TrackerAckWait {
		t.Fatalf("tracker consumer %s waits %s, want %s", old.Durable, old.AckWait, schema.TrackerAckWait)
	}
	old.AckWait = 60 * time.Second // as an earlier version made it
	if _, err := js.CreateOrUpdateConsumer(ctx, schema.StreamEvents, old); err != nil {
		t.Fatal(err)
	}
	if err := (schema.Topology{}).Ensure(ctx, js); err != nil {
		t.Fatalf("an earlier version's tracker was refused: %v", err)
	}
	c, _ := js.Consumer(ctx, schema.StreamEvents, schema.ConsumerTracker)
	if got := c.CachedInfo().Config.AckWait; got != schema.TrackerAckWait {
		t.Fatalf("tracker ack wait %s after the upgrade, want %s", got, schema.TrackerAckWait)
	}
}

// JOBS and TASKS take one consumer per org: more than nats-server's default
// of 1,000 per stream must be allowed, on new and on existing streams.
func TestManyOrgConsumers(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx := context.Background()
	topo := schema.Topology{}
	for i := 0; i < 1100; i++ {
		org := fmt.Sprintf("org_%04d", i)
		if _, err := js.CreateConsumer(ctx, schema.StreamTasks, topo.IndexerConfig(org)); err != nil {
			t.Fatalf("consumer %d: %v", i, err)
		}
	}
	s, _ := js.Stream(ctx, schema.StreamJobs)
	if got := s.CachedInfo().Config.MaxConsumers; got != schema.MaxOrgConsumers {
		t.Fatalf("JOBS allows %d consumers, want %d", got, schema.MaxOrgConsumers)
	}
}

// The object-state bucket of an earlier version (no per-message TTLs) is
// updated in place to allow the expiring purge markers of erased documents.
func TestObjectsBucketUpgradedForErasedMarkers(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx := context.Background()
	if err := js.DeleteKeyValue(ctx, schema.BucketObjects); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: schema.BucketObjects, History: 1}); err != nil {
		t.Fatal(err)
	}
	if err := (schema.Topology{}).Ensure(ctx, js); err != nil {
		t.Fatalf("ensure over the earlier bucket: %v", err)
	}
	kv, err := js.KeyValue(ctx, schema.BucketObjects)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Put(ctx, "o.c.k", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, "o.c.k", jetstream.LastRevision(rev), jetstream.PurgeTTL(schema.ErasedMarkerTTL)); err != nil {
		t.Fatalf("purge with a marker TTL: %v", err)
	}
	if _, err := kv.Get(ctx, "o.c.k"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("get after purge: %v", err)
	}
}
