package collections_test

import (
	"context"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/schema/registry/registrytest"
)

// TestEachSeesEveryStateUnderWrites passes over a collection's states
// while every state it is given is rewritten and then purged at once, as
// an erase does: the pass must still give every state the collection held
// at its start, and end, leaving no consumer behind.
func TestEachSeesEveryStateUnderWrites(t *testing.T) {
	tf := registrytest.Tenant(t)
	ctx := context.Background()
	objects, err := tf.JS.KeyValue(ctx, schema.BucketObjects)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for round := range 2 {
		holdMany(t, tf.JS, tf.Org.ID, n)
		var mu sync.Mutex
		seen := map[string]bool{}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(16)
		err := collections.Each(ctx, tf.JS, tf.Org.ID, "docs", func(e jetstream.KeyValueEntry, st *schema.ObjectState) error {
			mu.Lock()
			seen[st.Key] = true
			mu.Unlock()
			key, rev, data := e.Key(), e.Revision(), e.Value()
			g.Go(func() error {
				rev, err := objects.Update(gctx, key, data, rev)
				if err != nil {
					return nil // seen again: a later revision of the same key
				}
				return objects.Purge(gctx, key, jetstream.LastRevision(rev), jetstream.PurgeTTL(schema.ErasedMarkerTTL))
			})
			return nil
		})
		if werr := g.Wait(); err == nil {
			err = werr
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != n {
			t.Fatalf("round %d: the pass gave %d of the %d states held at its start", round, len(seen), n)
		}
	}
	stream, err := tf.JS.Stream(ctx, "KV_"+schema.BucketObjects)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(ctx); err != nil || info.State.Consumers != 0 {
		t.Fatalf("consumers left on the states' stream after the passes: %+v %v", info.State.Consumers, err)
	}
}
