package runner

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/worker/faults"
)

// process runs q's handler on msg with a per-message deadline and
// InProgress heartbeats, then settles the outcome.
func (r *Runner) process(work context.Context, msg jetstream.Msg, q *Queue) {
	name := q.Handler.Name()
	r.m.claimed.WithLabelValues(name).Inc()
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 1 {
		r.m.redelivered.WithLabelValues(name).Inc()
	}
	r.m.inflight.WithLabelValues(name).Inc()
	defer r.m.inflight.WithLabelValues(name).Dec()
	start := time.Now()
	ctx, cancel := context.WithTimeout(work, cmp.Or(q.Timeout, r.cfg.MessageTimeout))
	defer cancel()
	stopBeats := heartbeats([]jetstream.Msg{msg}, r.cfg.Heartbeat)
	err := q.Handler.Handle(ctx, msg)
	if err == nil {
		err = faults.At("before_ack", msg.Subject())
	}
	stopBeats()
	if errors.Is(err, faults.ErrCrashed) {
		return // a simulated crash (test builds): settle nothing, as after kill -9
	}
	r.m.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	r.settle(ctx, work, msg, q, err)
}

// heartbeats tells JetStream every interval that msgs are still being
// worked on, until the returned stop is called.
func heartbeats(msgs []jetstream.Msg, interval time.Duration) (stop func()) {
	// A timer that re-arms itself, not a goroutine with a ticker: a message
	// of a few milliseconds never wakes anything. stop waits for a beat
	// being sent, so no InProgress follows the message's settlement.
	var mu sync.Mutex
	stopped := false
	mu.Lock()
	defer mu.Unlock()
	var t *time.Timer
	t = time.AfterFunc(interval, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		for _, m := range msgs {
			_ = m.InProgress()
		}
		t.Reset(interval)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}
