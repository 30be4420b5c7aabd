package registry

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeEntry is a watched KV entry.
type fakeEntry struct {
	jetstream.KeyValueEntry
	key string
	val []byte
	rev uint64
	op  jetstream.KeyValueOp
}

func (e fakeEntry) Key() string                     { return e.key }
func (e fakeEntry) Value() []byte                   { return e.val }
func (e fakeEntry) Revision() uint64                { return e.rev }
func (e fakeEntry) Operation() jetstream.KeyValueOp { return e.op }

// A direct read can be ahead of the watch: a later delivery of an older
// revision must not undo it; a delete at a later revision removes it.
func TestViewKeepsTheNewestRevision(t *testing.T) {
	v := &View{now: time.Now, entries: map[string]viewEntry{}}
	k := integrationKey("org_a", "int_1")
	v.apply(fakeEntry{key: k, val: []byte(`{"id":"int_1","status":"revoked"}`), rev: 9, op: jetstream.KeyValuePut})
	v.apply(fakeEntry{key: k, val: []byte(`{"id":"int_1","status":"active"}`), rev: 7, op: jetstream.KeyValuePut})
	if got := v.entries[k]; got.in.Status != "revoked" || got.rev != 9 {
		t.Fatalf("an older revision replaced a newer one: %+v", got.in)
	}
	v.apply(fakeEntry{key: k, rev: 10, op: jetstream.KeyValueDelete})
	if got := v.entries[k]; !got.gone {
		t.Fatal("a delete was not applied")
	}
	v.apply(fakeEntry{key: k, val: []byte(`not json`), rev: 11, op: jetstream.KeyValuePut})
	if got := v.entries[k]; !got.gone {
		t.Fatal("an unreadable value is served instead of read from the registry")
	}
}
