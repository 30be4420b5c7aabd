package collections

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// How often Fold tries a fetch that fails, and how many empty fetches in
// a row end it.
const (
	foldTries   = 10
	foldEmpties = 3
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
	// A fetch can fail or come back empty while a cluster settles (a node
	// restarted, a leader moving): tried again, up to foldTries times in a
	// row; several empty fetches in a row mean the rest aged out since the
	// count.
	failures, empties := 0, 0
	for read := 0; read < total && empties < foldEmpties; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			if failures++; failures == foldTries {
				return nil, fmt.Errorf("read %s: %w", subject, err)
			}
			time.Sleep(time.Second)
			continue
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if err := view.Apply(m.Data()); err != nil {
				return nil, err
			}
		}
		if n == 0 {
			empties++
			continue
		}
		read += n
		failures, empties = 0, 0
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return view, nil
}
