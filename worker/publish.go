package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// outMsg is one message to publish with its deterministic Nats-Msg-Id.
type outMsg struct {
	subject, id string
	body        any
}

// publishAll publishes msgs asynchronously and waits until JetStream has
// acknowledged every one; a retried call republishes with the same IDs, which
// the stream's duplicate window turns into no-ops.
func (w *Worker) publishAll(ctx context.Context, msgs []outMsg) error {
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		data, err := schema.Encode(m.body)
		if err != nil {
			return permanentf(creds.ClassPermanent, "encode %s: %w", m.subject, err)
		}
		nm := nats.NewMsg(m.subject)
		nm.Data = data
		nm.Header.Set(jetstream.MsgIDHeader, m.id)
		f, err := w.cfg.JS.PublishMsgAsync(nm)
		if err != nil {
			return fmt.Errorf("publish %s: %w", m.subject, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				w.m.duplicates.Inc()
			}
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return fmt.Errorf("publish: %w", ctx.Err())
		}
	}
	w.m.publish.Observe(time.Since(start).Seconds())
	return nil
}
