package collections

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
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
//
// It reads them with an ordered consumer of the states' last revisions and
// ends after as many messages as the consumer counted pending when it was
// made: those come first (a stream delivers in order), so every state held
// at the start has been given by then, whatever is written meanwhile — a
// state rewritten before its turn comes later, as it is then. nats.go's KV
// watcher is not used for this: it ends its initial values at the first
// message that reports nothing more pending, and under concurrent writes
// that count can read zero before the last initial values arrive (a wipe
// erased 1,998 of 2,000 documents and ended; TestEachSeesEveryStateUnderWrites).
//
// Nothing for WatchStall (checked every WatchStall, so seen within twice
// that; a consumer lost with a NATS node, a request lost
// while a leader changes) ends the pass with a transient error, to be tried
// again.
func Each(ctx context.Context, js jetstream.JetStream, org, collection string, fn func(jetstream.KeyValueEntry, *schema.ObjectState) error) error {
	prefix := "$KV." + schema.BucketObjects + "."
	cctx, cancel := context.WithTimeout(ctx, WatchStall)
	cons, err := js.OrderedConsumer(cctx, statesStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{prefix + schema.ObjectKeyPrefix(org, collection) + "*"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy, InactiveThreshold: time.Minute})
	cancel()
	if err != nil {
		return schema.Errorf(schema.ClassTransient, "read the object states: %w", err)
	}
	defer deleteConsumer(js, cons)
	initial := cons.CachedInfo().NumPending // as the consumer was made: a reset changes its info
	msgs, err := cons.Messages(jetstream.PullMaxMessages(eachBatch))
	if err != nil {
		return schema.Errorf(schema.ClassTransient, "read the object states: %w", err)
	}
	defer msgs.Stop()
	var got atomic.Int64
	done := make(chan struct{})
	defer close(done)
	stalled := watchdog(ctx, msgs, &got, done)
	for left := initial; left > 0; left-- {
		m, err := msgs.Next()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case stalled.Load():
				return schema.Errorf(schema.ClassTransient, "the pass over the object states stalled (nothing for %s)", WatchStall)
			}
			return schema.Errorf(schema.ClassTransient, "read the object states: %w", err)
		}
		got.Add(1)
		e := &stateEntry{m: m, key: strings.TrimPrefix(m.Subject(), prefix)}
		if e.Operation() != jetstream.KeyValuePut {
			continue // a delete or purge marker: counted, not a state
		}
		if st, ok := DecodeState(e); ok {
			if err := fn(e, st); err != nil {
				return err
			}
		}
	}
	return nil
}

// statesStream is the object-state bucket's stream.
const statesStream = "KV_" + schema.BucketObjects

// deleteConsumer deletes a pass's consumer at once, so that passes asked
// for often (Stats, document lists) leave none behind; one not deleted
// (NATS unreachable) goes after its InactiveThreshold.
func deleteConsumer(js jetstream.JetStream, cons jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), schema.RequestTimeout)
	defer cancel()
	_ = js.DeleteConsumer(ctx, statesStream, cons.CachedInfo().Name)
}

// eachBatch is how many messages a pass asks for at once (the default,
// 500, made a pass slower).
const eachBatch = 4096

// watchdog stops msgs when ctx ends, or when got has not moved for
// WatchStall (then the flag it returns is set), until done closes: a
// timer per message would cost more than the message.
func watchdog(ctx context.Context, msgs jetstream.MessagesContext, got *atomic.Int64, done <-chan struct{}) *atomic.Bool {
	var stalled atomic.Bool
	go func() {
		tick := time.NewTicker(WatchStall)
		defer tick.Stop()
		last := int64(-1)
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				msgs.Stop()
				return
			case <-tick.C:
				n := got.Load()
				if n == last {
					stalled.Store(true)
					msgs.Stop()
					return
				}
				last = n
			}
		}
	}()
	return &stalled
}

// stateEntry is a message of the object-state bucket's stream as a KV entry.
type stateEntry struct {
	m   jetstream.Msg
	key string
}

func (e *stateEntry) Bucket() string     { return schema.BucketObjects }
func (e *stateEntry) Key() string        { return e.key }
func (e *stateEntry) Value() []byte      { return e.m.Data() }
func (e *stateEntry) Revision() uint64   { return e.meta().Sequence.Stream }
func (e *stateEntry) Created() time.Time { return e.meta().Timestamp }
func (e *stateEntry) Delta() uint64      { return e.meta().NumPending }

// meta is the message's JetStream metadata (zero when unreadable): parsed
// when asked, as most passes never ask.
func (e *stateEntry) meta() jetstream.MsgMetadata {
	md, err := e.m.Metadata()
	if err != nil {
		return jetstream.MsgMetadata{}
	}
	return *md
}

// Operation is the entry's KV operation: a delete or purge by its
// KV-Operation header, or by the marker a limit or a TTL leaves.
func (e *stateEntry) Operation() jetstream.KeyValueOp {
	h := e.m.Headers()
	switch h.Get("KV-Operation") {
	case "DEL":
		return jetstream.KeyValueDelete
	case "PURGE":
		return jetstream.KeyValuePurge
	}
	switch h.Get(jetstream.MarkerReasonHeader) {
	case "MaxAge", "Purge":
		return jetstream.KeyValuePurge
	case "Remove":
		return jetstream.KeyValueDelete
	}
	return jetstream.KeyValuePut
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
	err := Each(ctx, s.js, org, name, func(_ jetstream.KeyValueEntry, st *schema.ObjectState) error {
		out.Count(st)
		return nil
	})
	return &out, err
}
