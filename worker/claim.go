package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// handler processes one message. It returns a plain (classified) error and
// never decides the message's fate itself: settle does.
type handler func(ctx context.Context, msg jetstream.Msg) error

// serve runs slots claim loops on one consumer. Each loop pulls exactly one
// message when it is free (no pre-buffering: a buffered message would age
// towards AckWait without being worked on), processes it, and settles it.
// Claiming stops when claimCtx is cancelled; processing runs under work,
// which outlives claimCtx by the shutdown grace period.
func (w *Worker) serve(claimCtx, work context.Context, cons jetstream.Consumer, st stage, slots int) error {
	done := make(chan struct{})
	for i := 0; i < slots; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for claimCtx.Err() == nil {
				msg, err := w.next(claimCtx, cons)
				if err != nil {
					// An idle consumer's wait ending is not a failure: say nothing.
					if claimCtx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
						w.log.Warn("claim failed", "stage", st.name, "error", err)
						sleep(claimCtx, time.Second)
					}
					continue
				}
				w.process(work, msg, st)
			}
		}()
	}
	for i := 0; i < slots; i++ {
		<-done
	}
	return nil
}

// next pulls one message, waiting up to 5 s, returning early on shutdown.
func (w *Worker) next(ctx context.Context, cons jetstream.Consumer) (jetstream.Msg, error) {
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return cons.Next(jetstream.FetchContext(wait))
}

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
