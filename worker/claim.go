package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// handler processes one message. It returns a plain (classified) error and
// never decides the message's fate itself: settle does.
type handler func(ctx context.Context, msg jetstream.Msg) error

// process runs h on msg with a per-message deadline and InProgress
// heartbeats, then settles the outcome.
func (w *Worker) process(work context.Context, msg jetstream.Msg, st stage) {
	w.m.claimed.WithLabelValues(st.name).Inc()
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 1 {
		w.m.redelivered.WithLabelValues(st.name).Inc()
	}
	w.m.inflight.WithLabelValues(st.name).Inc()
	defer w.m.inflight.WithLabelValues(st.name).Dec()
	start := time.Now()
	ctx, cancel := context.WithTimeout(work, w.cfg.MessageTimeout)
	defer cancel()
	stopBeats := heartbeats([]jetstream.Msg{msg}, w.cfg.Heartbeat)
	err := st.handle(ctx, msg)
	if err == nil {
		err = fault("before_ack", msg.Subject())
	}
	stopBeats()
	if errors.Is(err, errCrashed) {
		return // a simulated crash (test builds): settle nothing, as after kill -9
	}
	w.m.duration.WithLabelValues(st.name).Observe(time.Since(start).Seconds())
	w.settle(ctx, work, msg, st, err)
}

// errCrashed is what fault points return in in-process tests of the fault
// build instead of exiting; process then settles nothing.
var errCrashed = errors.New("simulated crash")

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
