package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// classify gives err its class, hint and stable code (creds.ErrorCode), once,
// as the schema's one error type: a *schema.ClassError keeps its class and
// hint, a decode error (schema.ErrPermanent) is permanent, one over a NATS
// limit is ours (ClassInternal), and anything else is classified by the AWS
// error taxonomy (creds.Classify). The result wraps err: its message is
// err's, and errors.Is/As see through it.
func classify(err error) *schema.ClassError {
	f := &schema.ClassError{Err: err, Code: creds.ErrorCode(err)}
	var ce *schema.ClassError
	switch {
	case errors.As(err, &ce):
		f.Class, f.Hint = ce.Class, ce.Hint
	case errors.Is(err, schema.ErrPermanent):
		f.Class = schema.ClassPermanent
	case schema.IsOverLimit(err):
		f.Class, f.Hint = schema.ClassInternal, "a message or record stevedore built is over a NATS size limit: an operator problem, not the customer's"
	default:
		c := creds.Classify(err)
		f.Class, f.Hint = c.Class, c.Hint
	}
	return f
}

// publicReason is a classified error as a customer reads it: the error
// without internals (creds.PublicMessage of the error it wraps) and its
// hint, at most schema.MaxReasonBytes. The raw error is logged by settle.
func publicReason(f *schema.ClassError) string {
	msg := creds.PublicMessage(f.Err)
	if f.Hint != "" {
		msg += " (" + f.Hint + ")"
	}
	return schema.Bound(msg)
}

// stage is one kind of message a worker handles: how to handle it and what
// to publish when it is given up on.
type stage struct {
	name   string // "plan", "index", "track": the stage label of metrics and logs
	handle handler
	// giveUp returns the outcome to publish, together with the dead letter,
	// when a message of this stage is given up on: the planner's failed job,
	// the indexer's failed object. Those keep job counters exact. It may
	// return nothing (an undecodable payload has no job to tell).
	giveUp func(data []byte, f *schema.ClassError) []outMsg
	// onGiveUp runs once the give-up messages are durable (metrics).
	onGiveUp func()
	// maxDeliver is the consumer's MaxDeliver; ≤ 0 means unlimited.
	maxDeliver int
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
// and carried out. Giving up publishes the DEAD copy and the stage's failed
// outcome together and only then terminates; if that publish fails, the
// message is naked with backoff instead: nothing is terminated unrecorded.
func (w *Worker) settle(ctx, work context.Context, msg jetstream.Msg, st stage, err error) {
	log := w.log.With("stage", st.name, "subject", msg.Subject())
	var delivered uint64 = 1
	if md, merr := msg.Metadata(); merr == nil {
		delivered = md.NumDelivered
	}
	shuttingDown := errors.Is(context.Cause(work), errShutdown) || (work.Err() != nil && ctx.Err() != nil)
	var f *schema.ClassError
	if err != nil {
		f = classify(err)
	}
	act := fate(f, shuttingDown, delivered, st.maxDeliver)
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
		if nc := w.cfg.JS.Conn(); nc != nil {
			_ = nc.FlushTimeout(2 * time.Second)
		}
		log.Info("handed back on shutdown")
	case actRetry:
		_ = msg.NakWithDelay(backoff(delivered))
		log.Warn("will retry", "error", f.Err, "error_class", f.Class, "delivery", delivered, "outcome", "nak")
	case actRecord, actDead:
		if perr := w.giveUp(work, st, msg, f, act == actDead); perr != nil {
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
	w.m.settled.WithLabelValues(st.name, act.String(), class).Inc()
}

// giveUp publishes, in one wait, the stage's failed outcome for msg and,
// when dead is set, its copy to DEAD with the reason.
func (w *Worker) giveUp(ctx context.Context, st stage, msg jetstream.Msg, f *schema.ClassError, dead bool) error {
	dl := &schema.DeadLetter{Subject: msg.Subject(), Reason: schema.Bound(f.Err.Error()), ErrorClass: string(f.Class), Payload: msg.Data(), At: time.Now().UTC()}
	if md, err := msg.Metadata(); err == nil {
		dl.Stream, dl.Sequence, dl.Deliveries = md.Stream, md.Sequence.Stream, md.NumDelivered
	}
	return w.publishGiveUp(ctx, st, dl, f, dead)
}

// publishGiveUp publishes the give-up messages for the payload dl holds:
// the stage's outcome, and dl itself when dead is set. The settle path and
// the MaxDeliver advisories share it.
func (w *Worker) publishGiveUp(ctx context.Context, st stage, dl *schema.DeadLetter, f *schema.ClassError, dead bool) error {
	var out []outMsg
	if st.giveUp != nil {
		out = st.giveUp(dl.Payload, f)
	}
	if dead {
		out = append(out, outMsg{Subject: schema.DeadSubject(dl.Stream), MsgID: schema.DeadMsgID(dl.Stream, dl.Sequence), Msg: dl})
	}
	if len(out) == 0 {
		return nil
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := w.publishAll(pctx, out); err != nil {
		return err
	}
	if dead {
		w.m.dead.WithLabelValues(string(f.Class)).Inc()
	}
	if st.onGiveUp != nil {
		st.onGiveUp()
	}
	return nil
}
