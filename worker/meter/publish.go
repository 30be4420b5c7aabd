package meter

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// Publisher publishes and measures: latency, duplicates and batches
// the server would not take as batches.
type Publisher struct {
	JS jetstream.JetStream
	M  *Metrics
}

// Publish publishes msgs and waits for every acknowledgement (see
// schema.PublishAll), recording latency, duplicates and unbatched batches.
func (p *Publisher) Publish(ctx context.Context, msgs []schema.Out) error {
	start := time.Now()
	published, err := schema.PublishAll(ctx, p.JS, msgs)
	p.M.duplicates.Add(float64(published.Duplicates))
	p.M.unbatched.Add(float64(published.Unbatched))
	if err != nil {
		return err
	}
	p.M.publish.Observe(time.Since(start).Seconds())
	return nil
}
