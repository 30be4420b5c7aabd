package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// Classify is the default Config.Classify, which knows no AWS: the class
// err carries (schema.Known), else transient. The result wraps err.
func Classify(err error) *schema.ClassError {
	f := &schema.ClassError{Err: err, Class: schema.ClassTransient}
	if k := schema.Known(err); k != nil {
		f.Class, f.Hint = k.Class, k.Hint
	}
	return f
}

// action is what becomes of a message.
type action int

const (
	actAck      action = iota // done: ack
	actHandBack               // shutting down: nak now, another worker takes it at once
	actRetry                  // nak with backoff; redelivered
	actRecord                 // the object or bucket is gone: publish the failed outcome, then ack (nothing to replay)
	actDead                   // publish the DEAD copy and the failed outcome, then terminate
)

func (a action) String() string {
	return [...]string{"ack", "handed_back", "nak", "recorded", "dead"}[a]
}

// fate is the whole policy for a message's fate, as a pure function:
// success → ack; shutdown → hand back; not found → record the failure
// against the job, no retry; permanent, or the last delivery → DEAD;
// anything else → retry with backoff.
func fate(f *schema.ClassError, shuttingDown bool, delivered uint64, maxDeliver int) action {
	switch {
	case f == nil:
		return actAck
	case shuttingDown:
		return actHandBack
	case f.Class == schema.ClassNotFound:
		return actRecord
	case !f.Class.Retryable(), maxDeliver > 0 && delivered >= uint64(maxDeliver):
		return actDead
	default:
		return actRetry
	}
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

// settle is the one place where a message's outcome is decided (fate)
// and carried out. Giving up publishes the DEAD copy and the handler's failed
// outcome together and only then terminates; if that publish fails, the
// message is naked with backoff instead: nothing is terminated unrecorded.
func (r *Runner) settle(ctx, work context.Context, msg jetstream.Msg, q *Queue, err error) {
	name := q.Handler.Name()
	log := r.log.With("stage", name, "subject", msg.Subject())
	var delivered uint64 = 1
	if md, merr := msg.Metadata(); merr == nil {
		delivered = md.NumDelivered
	}
	shuttingDown := errors.Is(context.Cause(work), errShutdown) || (work.Err() != nil && ctx.Err() != nil)
	var f *schema.ClassError
	if err != nil {
		f = r.cfg.Classify(err)
	}
	act := fate(f, shuttingDown, delivered, q.MaxDeliver)
	class := ""
	if f != nil {
		class = string(f.Class)
	}
	switch act {
	case actAck:
		if aerr := msg.Ack(); aerr != nil {
			log.Warn("ack failed; the message will be redelivered and deduplicated", "error", aerr)
		}
	case actHandBack:
		_ = msg.Nak()
		// The process is about to exit: make sure the nak left, or the
		// message would wait out its AckWait instead of moving at once.
		if nc := r.cfg.JS.Conn(); nc != nil {
			_ = nc.FlushTimeout(2 * time.Second)
		}
		log.Info("handed back on shutdown")
	case actRetry:
		_ = msg.NakWithDelay(backoff(delivered))
		log.Warn("will retry", "error", f.Err, "error_class", f.Class, "delivery", delivered, "outcome", "nak")
	case actRecord, actDead:
		if perr := r.giveUp(work, q.Handler, msg, f, act == actDead); perr != nil {
			_ = msg.NakWithDelay(backoff(delivered))
			log.Error("could not record the failure; the message is redelivered", "error", f.Err, "error_class", f.Class, "publish_error", perr, "outcome", "nak")
			act = actRetry
			break
		}
		if act == actDead {
			_ = msg.Term()
			log.Error("message dead-lettered", "error", f.Err, "error_class", f.Class, "delivery", delivered, "outcome", "dead")
		} else {
			if aerr := msg.Ack(); aerr != nil {
				log.Warn("ack failed; the message will be redelivered and deduplicated", "error", aerr)
			}
			log.Info("recorded as failed", "error", f.Err, "error_class", f.Class, "outcome", "failed")
		}
	}
	r.m.settled.WithLabelValues(name, act.String(), class).Inc()
}

// giveUp publishes, in one wait, h's give-up outcome for msg and, when
// dead is set, its copy to DEAD with the reason. h may be nil (no outcome).
func (r *Runner) giveUp(ctx context.Context, h Handler, msg jetstream.Msg, f *schema.ClassError, dead bool) error {
	dl := &schema.DeadLetter{Subject: msg.Subject(), Reason: schema.Bound(f.Err.Error()), ErrorClass: string(f.Class), Payload: msg.Data(), At: time.Now().UTC()}
	if md, err := msg.Metadata(); err == nil {
		dl.Stream, dl.Sequence, dl.Deliveries = md.Stream, md.Sequence.Stream, md.NumDelivered
	}
	return r.publishGiveUp(ctx, h, dl, f, dead)
}

// publishGiveUp publishes the give-up messages for the payload dl holds:
// h's outcome, and dl itself when dead is set. The settle path, the ordered
// batches and the MaxDeliver advisories share it.
func (r *Runner) publishGiveUp(ctx context.Context, h Handler, dl *schema.DeadLetter, f *schema.ClassError, dead bool) error {
	var out []schema.Out
	if h != nil {
		var err error
		if out, err = h.GiveUp(dl.Payload, f); err != nil {
			r.m.giveUpFailed.WithLabelValues(h.Name()).Inc()
			return fmt.Errorf("%s give-up: %w", h.Name(), err)
		}
	}
	if dead {
		out = append(out, schema.Out{Subject: schema.DeadSubject(dl.Stream), MsgID: schema.DeadMsgID(dl.Stream, dl.Sequence), Msg: dl})
	}
	if len(out) == 0 {
		return nil
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.cfg.Publish(pctx, out); err != nil {
		return err
	}
	if dead {
		r.m.dead.WithLabelValues(string(f.Class)).Inc()
	}
	if g, ok := h.(GaveUpper); ok {
		g.GaveUp()
	}
	return nil
}
