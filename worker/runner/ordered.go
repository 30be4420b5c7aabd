package runner

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/worker/faults"
)

// Ordered is a stream consumed in stream order, a batch at a time, by one
// worker of the fleet at a time (a pinned priority group): the tracker's
// EVENTS.
type Ordered struct {
	Stream, Consumer, Group string
	Batch                   int           // messages per batch, at most
	AckWait                 time.Duration // the consumer's: heartbeats go every third of it
	Handler                 BatchHandler
}

// A BatchHandler handles a batch of messages in stream order. It returns
// nil when the whole batch is done (acknowledged at once), or an error
// (the whole batch is handed back). A message it can never read it passes
// to giveUp, which copies it to DEAD (its error is permanent) or returns
// the error to hand the batch back (it is not).
type BatchHandler interface {
	Name() string
	HandleBatch(ctx context.Context, msgs []jetstream.Msg, giveUp func(jetstream.Msg, error) error) error
}

// serveOrdered consumes o. Exactness: messages are handled in stream order
// and the handler may record the last sequence it applied, so a batch
// redelivered after a crash skips what was already done; and a batch is
// handled only when it continues the consumer's acknowledged floor, so a
// worker pinned after a crash waits for the dead worker's messages
// (redelivered first) instead of handling past them.
func (r *Runner) serveOrdered(claimCtx, work context.Context, o *Ordered, cons jetstream.Consumer) error {
	name := o.Handler.Name()
	var acked uint64 // the last message this worker acknowledged (0: unknown)
	for claimCtx.Err() == nil {
		// A short wait: Fetch returns when the batch is full or the wait is over.
		batch, err := cons.Fetch(o.Batch, jetstream.FetchMaxWait(200*time.Millisecond), jetstream.FetchPriorityGroup(o.Group))
		if err != nil {
			if claimCtx.Err() == nil {
				r.log.Warn("claim failed", "stage", name, "error", err)
				sleep(claimCtx, time.Second)
			}
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if len(msgs) == 0 {
			continue
		}
		// Redelivered messages may come in any order: handle only the run of
		// consecutive sequences that starts right after the acknowledged
		// floor, and hand the rest back.
		msgs, rest := r.inOrder(claimCtx, o, cons, msgs, acked)
		for _, m := range rest {
			_ = m.Nak()
		}
		if len(msgs) == 0 {
			sleep(claimCtx, 200*time.Millisecond)
			continue
		}
		acked = r.handleBatch(claimCtx, work, o, msgs)
	}
	return nil
}

// handleBatch runs o's handler on msgs and settles them together. It
// returns the sequence now acknowledged (0: unknown).
func (r *Runner) handleBatch(claimCtx, work context.Context, o *Ordered, msgs []jetstream.Msg) uint64 {
	name := o.Handler.Name()
	r.m.claimed.WithLabelValues(name).Add(float64(len(msgs)))
	start := time.Now()
	err := faults.At("before_fold", name)
	if err == nil {
		stopBeats := heartbeats(msgs, o.AckWait/3)
		err = o.Handler.HandleBatch(work, msgs, func(m jetstream.Msg, err error) error { return r.giveUpOrdered(work, name, m, err) })
		stopBeats()
		r.m.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	}
	if err == nil {
		err = faults.At("before_ack", name)
	}
	if errors.Is(err, faults.ErrCrashed) {
		// A simulated crash (test builds): the batch stays unsettled, as
		// after kill -9, and this worker is gone long enough for the pin to
		// move on.
		sleep(claimCtx, 4*time.Second)
		return 0
	}
	if err != nil {
		// Hand the batch back at once: redeliveries come before newer
		// messages, so handling stays in stream order; then back off.
		r.log.Warn("batch failed; it is redelivered", "stage", name, "messages", len(msgs), "error", err)
		for _, m := range msgs {
			_ = m.Nak()
		}
		r.m.settled.WithLabelValues(name, actRetry.String(), string(r.cfg.Classify(err).Class)).Add(float64(len(msgs)))
		sleep(claimCtx, time.Second)
		return 0
	}
	r.m.settled.WithLabelValues(name, actAck.String(), "").Add(float64(len(msgs)))
	last := msgs[len(msgs)-1]
	if err := last.Ack(); err != nil { // AckAll: every earlier message too
		r.log.Warn("ack failed; the batch will be redelivered and skipped", "stage", name, "error", err)
		return 0
	}
	if md, err := last.Metadata(); err == nil {
		return md.Sequence.Stream
	}
	return 0
}

// giveUpOrdered copies an unreadable message of an ordered batch to DEAD
// when err is permanent; otherwise (or if the copy cannot be published) it
// returns an error, and the whole batch is handed back.
func (r *Runner) giveUpOrdered(ctx context.Context, name string, m jetstream.Msg, err error) error {
	f := r.cfg.Classify(err)
	if fate(f, false, 1, 0) != actDead {
		return err
	}
	if perr := r.giveUp(ctx, nil, m, f, true); perr != nil {
		return perr
	}
	r.m.settled.WithLabelValues(name, actDead.String(), string(f.Class)).Inc()
	return nil
}

// inOrder sorts msgs by stream sequence and splits them into the run that
// continues the consumer's acknowledged floor (or starts at the stream's
// first message, when the floor aged out) and the rest.
func (r *Runner) inOrder(ctx context.Context, o *Ordered, cons jetstream.Consumer, msgs []jetstream.Msg, acked uint64) (run, rest []jetstream.Msg) {
	seqs := make(map[jetstream.Msg]uint64, len(msgs))
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return nil, msgs
		}
		seqs[m] = md.Sequence.Stream
	}
	slices.SortFunc(msgs, func(a, b jetstream.Msg) int { return cmp.Compare(seqs[a], seqs[b]) })
	if acked == 0 || seqs[msgs[0]] != acked+1 {
		if !r.continuesFloor(ctx, o, cons, seqs[msgs[0]]) {
			return nil, msgs
		}
	}
	n := 1
	for n < len(msgs) && seqs[msgs[n]] == seqs[msgs[n-1]]+1 {
		n++
	}
	return msgs[:n], msgs[n:]
}

// continuesFloor reports whether first is the message right after the
// consumer's acknowledged floor (or the stream's first, when the floor aged
// out).
func (r *Runner) continuesFloor(ctx context.Context, o *Ordered, cons jetstream.Consumer, first uint64) bool {
	info, err := cons.Info(ctx)
	if err != nil {
		return false
	}
	next := info.AckFloor.Stream + 1
	if first == next {
		return true
	}
	stream, err := r.cfg.JS.Stream(ctx, o.Stream)
	if err != nil {
		return false
	}
	si, err := stream.Info(ctx)
	return err == nil && first == max(next, si.State.FirstSeq)
}
