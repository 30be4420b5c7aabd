package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// failure is a handler error with its class. Permanent failures are
// dead-lettered and terminated; the rest are redelivered with backoff until
// MaxDeliver, then dead-lettered too.
type failure struct {
	err       error
	class     schema.ErrorClass
	hint      string
	permanent bool
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// permanentf is a failure no retry can fix.
func permanentf(class schema.ErrorClass, format string, args ...any) error {
	return &failure{err: fmt.Errorf(format, args...), class: class, permanent: true}
}

// classify wraps err with its class from the AWS error taxonomy.
func classify(err error) *failure {
	var f *failure
	if errors.As(err, &f) {
		return f
	}
	if errors.Is(err, schema.ErrPermanent) {
		return &failure{err: err, class: schema.ClassPermanent, permanent: true}
	}
	c := creds.Classify(err)
	return &failure{err: err, class: c.Class, hint: c.Hint, permanent: !c.Retryable()}
}

// lastDelivery reports whether msg will not be redelivered after a nak.
func (w *Worker) lastDelivery(msg jetstream.Msg) bool {
	md, err := msg.Metadata()
	return err == nil && md.NumDelivered >= uint64(w.cfg.Topology.MaxDeliver)
}

// backoff is the redelivery delay after the n-th delivery: 1 s, 2 s, 4 s … capped at 60 s.
func backoff(n uint64) time.Duration {
	if n < 1 {
		n = 1
	}
	if n > 6 {
		return time.Minute
	}
	return time.Duration(1<<(n-1)) * time.Second
}

// settle is the one place where a message's outcome is decided:
// success → ack; shutdown → nak now (hand back); permanent or out of
// deliveries → copy to DEAD with reason, then terminate; transient → nak with
// backoff.
func (w *Worker) settle(ctx, work context.Context, msg jetstream.Msg, stage string, err error) {
	log := w.log.With("stage", stage, "subject", msg.Subject())
	switch {
	case err == nil:
		if aerr := msg.Ack(); aerr != nil {
			log.Warn("ack failed; the message will be redelivered and deduplicated", "error", aerr)
		}
		w.m.settled.WithLabelValues(stage, "ack", "").Inc()
	case errors.Is(context.Cause(work), errShutdown) || (work.Err() != nil && ctx.Err() != nil):
		_ = msg.Nak()
		w.m.settled.WithLabelValues(stage, "handed_back", "").Inc()
		log.Info("handed back on shutdown")
	default:
		f := classify(err)
		if f.permanent || w.lastDelivery(msg) {
			w.deadLetter(work, msg, f)
			_ = msg.Term()
			w.m.settled.WithLabelValues(stage, "dead", string(f.class)).Inc()
			log.Error("message dead-lettered", "error", f.err, "error_class", f.class, "outcome", "dead")
			return
		}
		md, _ := msg.Metadata()
		var n uint64 = 1
		if md != nil {
			n = md.NumDelivered
		}
		_ = msg.NakWithDelay(backoff(n))
		w.m.settled.WithLabelValues(stage, "nak", string(f.class)).Inc()
		log.Warn("will retry", "error", f.err, "error_class", f.class, "delivery", n, "outcome", "nak")
	}
}

// deadLetter copies msg to DEAD with the reason. A failure to do so is
// logged; the message is terminated either way, and the job's failed event
// (published by the handler) keeps counts exact.
func (w *Worker) deadLetter(ctx context.Context, msg jetstream.Msg, f *failure) {
	dl := &schema.DeadLetter{Subject: msg.Subject(), Reason: f.err.Error(), ErrorClass: string(f.class), Payload: msg.Data(), At: time.Now().UTC()}
	if md, err := msg.Metadata(); err == nil {
		dl.Stream, dl.Sequence, dl.Deliveries = md.Stream, md.Sequence.Stream, md.NumDelivered
	}
	data, err := schema.Encode(dl)
	if err != nil {
		w.log.Error("encode dead letter", "error", err)
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	id := fmt.Sprintf("dead:%s:%d", dl.Stream, dl.Sequence)
	if _, err := w.cfg.JS.Publish(pctx, schema.DeadSubject(dl.Stream), data, jetstream.WithMsgID(id)); err != nil {
		w.log.Error("publish dead letter", "error", err)
		return
	}
	w.m.dead.WithLabelValues(string(f.class)).Inc()
}
