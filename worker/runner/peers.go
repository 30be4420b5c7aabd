package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"os"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// Tenant affinity. Each org is served by a small, stable set of workers:
// its first k workers by rendezvous hashing (highest random weight of
// hash(org, worker) over the live workers), where k grows with the org's
// backlog (one more worker per SpillEvery waiting tasks). A small tenant's
// tasks — and so its AssumeRole calls and its sessions — stay on one worker
// whatever the fleet's size; a big backlog spills over to every worker.
// The live workers are leases in the BucketWorkers KV: each worker renews
// its own every schema.WorkerLeaseEvery, deletes it when it stops, and a
// lease not renewed expires after schema.WorkerLeaseTTL (a crashed worker's
// orgs move on within that time). Claiming itself is unchanged — durable
// per-org consumers with explicit acks — so a momentary disagreement between
// workers about who is live changes who claims, never what is done once.
type peers struct {
	self      string
	mu        sync.RWMutex
	live      []string        // sorted worker IDs, self included
	gen       atomic.Uint64   // bumped when live changes (invalidates ranks)
	listeners []chan struct{} // each signalled when live changes
}

type rankEntry struct {
	gen  uint64
	rank int // how many live workers outrank self for the org
}

var leaseKeyRE = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// workerID names this worker in the lease bucket: host, process and a random
// suffix, so two workers never share a lease.
func workerID(name string) string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return leaseKeyRE.ReplaceAllString(fmt.Sprintf("%s-%s-%d-%s", host, name, os.Getpid(), hex.EncodeToString(b)), "_")
}

// joinPeers takes this worker's lease, follows the others' and keeps its
// own renewed until ctx ends, then gives it up so its orgs move at once.
func (r *Runner) joinPeers(ctx context.Context) (*peers, error) {
	kv, err := r.cfg.JS.KeyValue(ctx, schema.BucketWorkers)
	if err != nil {
		return nil, fmt.Errorf("worker leases: %w", err)
	}
	f := &peers{self: workerID(r.cfg.Name)}
	if _, err := kv.Put(ctx, f.self, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return nil, fmt.Errorf("worker lease: %w", err)
	}
	watch, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch worker leases: %w", err)
	}
	live, loaded := map[string]bool{f.self: true}, false
	f.set(live)
	apply := func(e jetstream.KeyValueEntry) {
		if e.Operation() == jetstream.KeyValuePut {
			live[e.Key()] = true
		} else if e.Key() != f.self {
			delete(live, e.Key())
		}
		if loaded {
			f.set(live)
		}
	}
	ended := func() {
		r.log.Error("the worker lease watch ended: this worker's view of the fleet is frozen until it restarts")
	}
	if err := schema.Follow(ctx, watch, apply, func() { loaded = true; f.set(live) }, ended); err != nil {
		return nil, err
	}
	go func() {
		t := time.NewTicker(schema.WorkerLeaseEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				_ = kv.Delete(dctx, f.self)
				cancel()
				return
			case <-t.C:
				if _, err := kv.Put(ctx, f.self, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil && ctx.Err() == nil {
					r.log.Warn("worker lease not renewed; other workers may take this one's orgs", "error", err)
				}
			}
		}
	}()
	return f, nil
}

func (f *peers) set(live map[string]bool) {
	ids := make([]string, 0, len(live))
	for id := range live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	f.mu.Lock()
	defer f.mu.Unlock()
	if slices.Equal(ids, f.live) {
		return
	}
	f.live = ids
	f.gen.Add(1)
	for _, c := range f.listeners {
		signal(c)
	}
}

// changes returns a channel signalled whenever the live workers change (nil,
// which never fires, without affinity).
func (f *peers) changes() chan struct{} {
	if f == nil {
		return nil
	}
	c := make(chan struct{}, 1)
	f.mu.Lock()
	f.listeners = append(f.listeners, c)
	f.mu.Unlock()
	return c
}

// size is the number of live workers.
func (f *peers) size() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.live)
}

// serves reports whether this worker serves org while pending of its tasks
// wait (affinity off: every worker serves every org).
func (f *peers) serves(org string, pending uint64, spillEvery int) bool {
	return f == nil || servedAt(f.rank(org), pending, spillEvery)
}

// servedAt: a worker of rank for an org serves it while pending of its tasks
// wait when it is among the org's first 1 + pending/spillEvery workers.
func servedAt(rank int, pending uint64, spillEvery int) bool {
	return uint64(rank) < 1+pending/uint64(max(spillEvery, 1))
}

// rank is how many live workers outrank this one for org. It is computed
// each time; turns.rank caches it per org until the live workers change.
func (f *peers) rank(org string) int {
	f.mu.RLock()
	live := f.live
	f.mu.RUnlock()
	return rendezvousRank(org, f.self, live)
}

// rendezvousRank is how many of workers weigh more than self for org
// (highest random weight hashing: every worker computes the same order).
func rendezvousRank(org, self string, workers []string) int {
	mine := weight(org, self)
	rank := 0
	for _, id := range workers {
		if id == self {
			continue
		}
		if w := weight(org, id); w > mine || (w == mine && id < self) {
			rank++
		}
	}
	return rank
}

// weight is a deterministic 64-bit hash of (org, worker), the same in every
// process (FNV-1a, then a SplitMix64 finalizer for an even spread).
func weight(org, worker string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(org))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(worker))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
