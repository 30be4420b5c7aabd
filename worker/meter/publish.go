package meter

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// Publisher publishes and measures: latency and duplicates.
type Publisher struct {
	JS jetstream.JetStream
	M  *Metrics
}

// Publish publishes msgs and waits for every acknowledgement (see
// schema.PublishAll), recording latency and duplicates.
func (p *Publisher) Publish(ctx context.Context, msgs []schema.Out) error {
	start := time.Now()
	dups, err := schema.PublishAll(ctx, p.JS, msgs)
	p.M.duplicates.Add(float64(dups))
	if err != nil {
		return err
	}
	p.M.publish.Observe(time.Since(start).Seconds())
	return nil
}
