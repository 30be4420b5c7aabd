package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
)

// Verdicts is creds.SharedVerdicts on the fleet's KV bucket
// (schema.BucketVerdicts): give it to every broker of the fleet.
type Verdicts struct{ kv jetstream.KeyValue }

// NewVerdicts binds the shared verdicts to js's bucket.
func NewVerdicts(ctx context.Context, js jetstream.JetStream) (*Verdicts, error) {
	kv, err := js.KeyValue(ctx, schema.BucketVerdicts)
	if err != nil {
		return nil, fmt.Errorf("shared STS verdicts: %w", err)
	}
	return &Verdicts{kv: kv}, nil
}

func (v *Verdicts) Load(ctx context.Context, key string) (*creds.Verdict, error) {
	e, err := v.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out creds.Verdict
	if err := json.Unmarshal(e.Value(), &out); err != nil {
		return nil, nil // unreadable: no verdict, STS decides
	}
	return &out, nil
}

func (v *Verdicts) Store(ctx context.Context, key string, x creds.Verdict) error {
	data, err := json.Marshal(x)
	if err != nil {
		return err
	}
	_, err = v.kv.Put(ctx, key, data)
	return err
}

func (v *Verdicts) Clear(ctx context.Context, key string) error {
	err := v.kv.Delete(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}
