package collections

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// Fold reads org's collection's CHUNKS subject from its first message to
// its last as of the call, and folds it with schema.View — the commit and
// tombstone rules every downstream consumer applies: what the view holds
// is what a consumer that read CHUNKS sees. keep makes the view keep the
// visible chunks (memory grows with them); without it, only their IDs.
func Fold(ctx context.Context, js jetstream.JetStream, org, collection string, keep bool) (*schema.View, error) {
	subject := schema.ChunkSubject(org, collection)
	stream, err := js.Stream(ctx, schema.StreamChunks)
	if err != nil {
		return nil, err
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return nil, err
	}
	view := schema.NewView()
	if keep {
		view.KeepChunks()
	}
	total := int(info.State.Subjects[subject])
	if total == 0 {
		return view, nil
	}
	cons, err := js.OrderedConsumer(ctx, schema.StreamChunks, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, err
	}
	for read := 0; read < total; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", subject, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if err := view.Apply(m.Data()); err != nil {
				return nil, err
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read %s: %w", subject, err)
		}
		if n == 0 {
			break // nothing for FetchMaxWait: the rest aged out since the count
		}
		read += n
	}
	return view, nil
}
