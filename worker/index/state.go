package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// loadState reads an object's stored state and its revision (nil, 0: none).
// An unreadable state is replaced: nil with its revision.
func (h *Handler) loadState(ctx context.Context, key string) (*schema.ObjectState, uint64, error) {
	e, err := h.objects.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load object state: %w", err)
	}
	var s schema.ObjectState
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return nil, e.Revision(), nil
	}
	return &s, e.Revision(), nil
}

// saveState writes the object state with compare-and-set against the
// revision read before the work: a concurrent writer makes this fail, and
// the redelivered task re-reads and re-decides.
func (h *Handler) saveState(ctx context.Context, key string, s *schema.ObjectState, rev uint64) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = h.objects.Create(ctx, key, data)
	} else {
		_, err = h.objects.Update(ctx, key, data, rev)
	}
	if err != nil {
		return fmt.Errorf("save object state: %w", err)
	}
	return nil
}
