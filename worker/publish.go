package worker

import (
	"context"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
)

// outMsg is one message to publish with its deterministic Nats-Msg-Id.
type outMsg = schema.Out

// publishAll publishes msgs and waits for every acknowledgement (see
// schema.PublishAll), recording latency and duplicates.
func (w *Worker) publishAll(ctx context.Context, msgs []outMsg) error {
	start := time.Now()
	dups, err := schema.PublishAll(ctx, w.cfg.JS, msgs)
	w.m.duplicates.Add(float64(dups))
	if err != nil {
		return err
	}
	w.m.publish.Observe(time.Since(start).Seconds())
	return nil
}
