package producer

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/stevedore-dev/stevedore/schema/registry"
)

// The queues customers attach over the API (registry.NotificationQueue):
// the bridge follows the registry and starts pollers for a queue as it is
// attached and stops them as it is removed, without a restart; what it sees
// of each (last receive, last record, last error) is written back for the
// API every HealthEvery.

// HealthEveryDefault is BridgeConfig.HealthEvery's default.
const HealthEveryDefault = 5 * time.Second

// health is what the bridge saw of one attached queue since the last
// write.
type health struct {
	mu      sync.Mutex
	h       registry.QueueHealth
	changed bool
}

func (h *health) received() {
	if h == nil {
		return
	}
	now := time.Now().UTC()
	h.mu.Lock()
	h.h.LastReceiveAt, h.changed = &now, true
	h.mu.Unlock()
}

func (h *health) routed(n int) {
	if h == nil || n == 0 {
		return
	}
	now := time.Now().UTC()
	h.mu.Lock()
	h.h.LastRecordAt, h.h.Records, h.changed = &now, h.h.Records+int64(n), true
	h.mu.Unlock()
}

func (h *health) failed(err error) {
	if h == nil {
		return
	}
	now := time.Now().UTC()
	h.mu.Lock()
	h.h.LastError, h.h.LastErrorAt, h.changed = err.Error(), &now, true
	h.mu.Unlock()
}

// take returns the health to write, if it changed since the last take.
func (h *health) take() (registry.QueueHealth, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := h.changed
	h.changed = false
	return h.h, changed
}

// attachedQueue is an attached queue being polled.
type attachedQueue struct {
	rec    *registry.NotificationQueue
	health *health
	stop   context.CancelFunc
	done   chan struct{}
}

// running is the attached queues being polled, by queue ID.
type running struct {
	mu sync.Mutex
	m  map[string]*attachedQueue
}

// Reading returns the URLs of the attached queues the bridge reads now.
func (b *Bridge) Reading() []string {
	b.running.mu.Lock()
	defer b.running.mu.Unlock()
	var out []string
	for _, a := range b.running.m {
		out = append(out, a.rec.URL)
	}
	slices.Sort(out)
	return out
}

// follow keeps the pollers of attached queues in step with the registry
// until ctx ends, writing their health as it goes.
func (b *Bridge) follow(ctx context.Context) {
	b.running.m = map[string]*attachedQueue{}
	tick := time.NewTicker(b.cfg.HealthEvery)
	defer tick.Stop()
	defer func() {
		b.running.mu.Lock()
		defer b.running.mu.Unlock()
		for id, a := range b.running.m {
			a.stop()
			<-a.done
			delete(b.running.m, id)
		}
	}()
	for {
		b.reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-b.attached.Changed:
		case <-tick.C:
			b.writeHealth(ctx)
		}
	}
}

// reconcile starts pollers for queues attached and not yet polled, and
// stops those of queues removed.
func (b *Bridge) reconcile(ctx context.Context) {
	b.running.mu.Lock()
	defer b.running.mu.Unlock()
	running := b.running.m
	want := map[string]*registry.NotificationQueue{}
	for _, rec := range b.attached.List() {
		want[rec.ID] = rec
	}
	for id, a := range running {
		if _, ok := want[id]; !ok {
			a.stop()
			<-a.done
			delete(running, id)
			b.log.Info("notification queue detached: no longer read", "queue", a.rec.URL, "org", a.rec.Org, "id", id)
		}
	}
	for id, rec := range want {
		if _, ok := running[id]; ok {
			continue
		}
		q, err := b.cfg.Attach(rec)
		if err != nil {
			b.log.Warn("attached queue cannot be read", "queue", rec.URL, "org", rec.Org, "error", err)
			continue // tried again at the next change or health tick
		}
		h := &health{}
		q.health = h
		b.m.zero(q.URL)
		qctx, stop := context.WithCancel(ctx)
		a := &attachedQueue{rec: rec, health: h, stop: stop, done: make(chan struct{})}
		running[id] = a
		var wg sync.WaitGroup
		for range b.cfg.Pollers {
			wg.Add(1)
			go func() { defer wg.Done(); b.poll(qctx, q) }()
		}
		go func() { wg.Wait(); close(a.done) }()
		b.log.Info("notification queue attached: reading it", "queue", rec.URL, "org", rec.Org, "id", id)
	}
}

// writeHealth writes the health of the queues that changed.
func (b *Bridge) writeHealth(ctx context.Context) {
	b.running.mu.Lock()
	list := make([]*attachedQueue, 0, len(b.running.m))
	for _, a := range b.running.m {
		list = append(list, a)
	}
	b.running.mu.Unlock()
	for _, a := range list {
		h, changed := a.health.take()
		if !changed {
			continue
		}
		if err := b.cfg.Registry.SetQueueHealth(ctx, a.rec, &h); err != nil {
			b.log.Warn("queue health not recorded", "queue", a.rec.URL, "error", err)
		}
	}
}
