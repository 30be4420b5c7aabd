package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// maxDeliverSubject is where JetStream announces a message that reached its
// consumer's MaxDeliver without being settled (the worker holding it crashed
// or timed out on every delivery, so settle never saw its last delivery).
const maxDeliverSubject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.*"

type maxDeliverAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// watchMaxDeliveries moves messages that reached MaxDeliver from the work
// queues to DEAD, with reason max_deliver, and publishes the give-up
// outcome their handler never published (a failed object or job), so job
// counters stay exact. One worker of the fleet handles each advisory (a queue group); the
// message stays in its work queue until it is moved, so a lost advisory can
// be replayed by hand (stevedore dlq).
func (r *Runner) watchMaxDeliveries(ctx context.Context) error {
	nc := r.cfg.JS.Conn()
	sub, err := nc.QueueSubscribe(maxDeliverSubject, "stevedore-max-deliveries", func(m *nats.Msg) {
		var a maxDeliverAdvisory
		if err := json.Unmarshal(m.Data, &a); err != nil {
			r.log.Warn("unreadable max-deliveries advisory", "error", err)
			return
		}
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := r.moveToDeadRetrying(hctx, a); err != nil {
			r.log.Error("could not move a message that reached MaxDeliver to DEAD; it stays in its work queue", "stream", a.Stream, "seq", a.StreamSeq, "error", err)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe to max-deliveries advisories: %w", err)
	}
	<-ctx.Done()
	return sub.Unsubscribe()
}

// moveToDeadRetrying is moveToDead tried three times, a second more
// between each (a NATS node restarting, a status write failing): the
// advisory is not redelivered, so this is the message's last chance.
func (r *Runner) moveToDeadRetrying(ctx context.Context, a maxDeliverAdvisory) error {
	err := r.moveToDead(ctx, a)
	for try := 1; err != nil && try < 3; try++ {
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(try) * time.Second):
		}
		err = r.moveToDead(ctx, a)
	}
	return err
}

func (r *Runner) moveToDead(ctx context.Context, a maxDeliverAdvisory) error {
	q := r.byStream[a.Stream]
	if q == nil {
		return nil // not a work queue of this runner (the ordered stream retries forever)
	}
	stream, err := r.cfg.JS.Stream(ctx, a.Stream)
	if err != nil {
		return err
	}
	raw, err := stream.GetMsg(ctx, a.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // settled or moved already
	}
	if err != nil {
		return err
	}
	reason := fmt.Sprintf("max_deliver: delivered %d times without being settled (the worker crashed or timed out each time)", a.Deliveries)
	dl := &schema.DeadLetter{Stream: a.Stream, Subject: raw.Subject, Sequence: a.StreamSeq, Deliveries: a.Deliveries, Reason: schema.Bound(reason),
		ErrorClass: string(schema.ClassMaxDeliver), Payload: raw.Data, At: time.Now().UTC()}
	if err := r.publishGiveUp(ctx, q.Handler, dl, r.cfg.Classify(schema.Errorf(schema.ClassMaxDeliver, "%s", reason)), true); err != nil {
		return err
	}
	if err := stream.DeleteMsg(ctx, a.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return err
	}
	r.log.Error("message reached MaxDeliver: moved to DEAD", "stream", a.Stream, "seq", a.StreamSeq, "deliveries", a.Deliveries, "outcome", "dead")
	return nil
}
