package collections

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// WatchStall is how long a pass over a collection's object states may go
// without one before it is given up as stalled.
var WatchStall = 30 * time.Second

// DecodeState is an entry's object state; false when unreadable.
func DecodeState(e jetstream.KeyValueEntry) (*schema.ObjectState, bool) {
	var st schema.ObjectState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, false
	}
	return &st, true
}

// Each calls fn for every readable object state of org's collection, as of
// the call, streaming: the collection's states are never all in memory.
// Making the watch is a request whose answer can be lost while a stream's
// leader changes, and a watch whose consumer was lost (a NATS node gone)
// can stop without closing: nothing for WatchStall ends the pass with a
// transient error, to be tried again.
func Each(ctx context.Context, objects jetstream.KeyValue, org, collection string, fn func(jetstream.KeyValueEntry, *schema.ObjectState) error) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := watch(wctx, objects, schema.ObjectKeyPrefix(org, collection)+"*")
	if err != nil {
		return err
	}
	defer w.Stop()
	stall := time.NewTimer(WatchStall)
	defer stall.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stall.C:
			return schema.Errorf(schema.ClassTransient, "the object-state watch stalled (nothing for %s)", WatchStall)
		case e, ok := <-w.Updates():
			stall.Reset(WatchStall)
			if !ok {
				return errors.New("the object-state watch ended early")
			}
			if e == nil {
				return nil // every state as of the watch's start
			}
			st, ok := DecodeState(e)
			if !ok {
				continue
			}
			if err := fn(e, st); err != nil {
				return err
			}
		}
	}
}

func watch(ctx context.Context, objects jetstream.KeyValue, filter string) (jetstream.KeyWatcher, error) {
	type made struct {
		w   jetstream.KeyWatcher
		err error
	}
	ch := make(chan made, 1)
	go func() {
		w, err := objects.WatchFiltered(ctx, []string{filter}, jetstream.IgnoreDeletes())
		ch <- made{w, err}
	}()
	select {
	case m := <-ch:
		if m.err != nil {
			return nil, schema.Errorf(schema.ClassTransient, "watch object states: %w", m.err)
		}
		return m.w, nil
	case <-time.After(WatchStall):
		return nil, schema.Errorf(schema.ClassTransient, "no watch of the object states within %s", WatchStall)
	}
}

// Stats is what a collection holds, counted from its object states.
type Stats struct {
	Documents int64 `json:"document_count"` // indexed, skipped or failed (a document stevedore knows of)
	Indexed   int64 `json:"indexed_count"`
	Skipped   int64 `json:"skipped_count"`
	Failed    int64 `json:"failed_count"`
	Erasing   int64 `json:"erasing_count,omitempty"`
	Chunks    int64 `json:"chunk_count"`
	Tokens    int64 `json:"token_count"`
	// LastIndexedAt is the latest state written by an index.
	LastIndexedAt *time.Time `json:"last_indexed_at,omitempty"`
}

// Count is one state counted into s.
func (s *Stats) Count(st *schema.ObjectState) {
	switch st.Status {
	case schema.ObjectIndexed:
		s.Documents++
		s.Indexed++
		s.Chunks += int64(st.Chunks)
		s.Tokens += st.Tokens
	case schema.ObjectSkipped:
		s.Documents++
		s.Skipped++
	case schema.ObjectFailed:
		s.Documents++
		s.Failed++
	case schema.ObjectErasing:
		s.Erasing++
		return
	default:
		return
	}
	if s.LastIndexedAt == nil || st.UpdatedAt.After(*s.LastIndexedAt) {
		t := st.UpdatedAt
		s.LastIndexedAt = &t
	}
}

// Stats counts org's collection from its object states: exact as of the
// call, at the cost of one streaming pass over them (about a second per
// 100,000 documents).
func (s *Store) Stats(ctx context.Context, org, name string) (*Stats, error) {
	var out Stats
	err := Each(ctx, s.objects, org, name, func(_ jetstream.KeyValueEntry, st *schema.ObjectState) error {
		out.Count(st)
		return nil
	})
	return &out, err
}
