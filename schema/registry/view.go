package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stevedore-dev/stevedore/schema"
)

// ViewMaxAgeDefault bounds how long View trusts an entry the watch has not
// re-confirmed before it reads the registry again.
const ViewMaxAgeDefault = 30 * time.Second

// View is a live, read-only copy of the orgs and integrations, kept current
// by a KV watch, so a worker resolves every task's tenant without two
// registry reads and two JSON decodes. A change (a revocation, a rotated
// ExternalId, a disabled org) reaches the view as soon as the watch delivers
// it — milliseconds — and applies to every task that starts after that, as a
// direct read would. A watch that stopped delivering cannot serve stale
// verdicts for long: an entry not re-confirmed for maxAge is read again from
// the registry. A key the view does not hold is read from the registry (it
// may be newer than the watch) and kept; a revision older than the one held
// never replaces it.
type View struct {
	r      *Registry
	maxAge time.Duration
	now    func() time.Time

	mu      sync.RWMutex
	entries map[string]viewEntry
	reads   int // registry reads (a metric for tests and the bench)
}

type viewEntry struct {
	rev  uint64
	seen time.Time // when the watch or a read last confirmed it
	org  *Org
	in   *Integration
	gone bool // deleted at rev
}

// Watch starts a View that follows the registry until ctx ends; maxAge ≤ 0
// is ViewMaxAgeDefault. It returns once the current values are loaded.
func (r *Registry) Watch(ctx context.Context, maxAge time.Duration) (*View, error) {
	if maxAge <= 0 {
		maxAge = ViewMaxAgeDefault
	}
	w, err := r.kv.WatchFiltered(ctx, []string{orgKey("*"), integrationKey("*", "*")})
	if err != nil {
		return nil, fmt.Errorf("watch registry: %w", err)
	}
	v := &View{r: r, maxAge: maxAge, now: r.now, entries: map[string]viewEntry{}}
	if err := schema.Follow(ctx, w, v.apply, nil, nil); err != nil {
		return nil, err
	}
	return v, nil
}

// apply records one watched change; an older revision than the one held
// (a direct read can be ahead of the watch) changes nothing.
func (v *View) apply(e jetstream.KeyValueEntry) {
	ent := viewEntry{rev: e.Revision(), seen: v.now()}
	if e.Operation() != jetstream.KeyValuePut {
		ent.gone = true
	} else if err := ent.decode(e.Key(), e.Value()); err != nil {
		ent.gone = true // unreadable: lookups read the registry and report its error
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if cur, ok := v.entries[e.Key()]; ok && cur.rev > ent.rev {
		return
	}
	v.entries[e.Key()] = ent
}

func (ent *viewEntry) decode(key string, data []byte) error {
	if strings.HasPrefix(key, "org.") {
		ent.org = new(Org)
		return json.Unmarshal(data, ent.org)
	}
	ent.in = new(Integration)
	return json.Unmarshal(data, ent.in)
}

// Org returns the organization id, as Registry.Org does.
func (v *View) Org(ctx context.Context, id string) (*Org, error) {
	ent, err := v.lookup(ctx, orgKey(id))
	if err != nil {
		return nil, fmt.Errorf("org %s: %w", id, err)
	}
	org := *ent.org
	return &org, nil
}

// Integration returns integration id of orgID, as Registry.Integration does.
func (v *View) Integration(ctx context.Context, orgID, id string) (*Integration, error) {
	ent, err := v.lookup(ctx, integrationKey(orgID, id))
	if err != nil {
		return nil, fmt.Errorf("integration %s: %w", id, err)
	}
	in := *ent.in
	return &in, nil
}

// Reads is how many lookups went to the registry.
func (v *View) Reads() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.reads
}

func (v *View) lookup(ctx context.Context, key string) (viewEntry, error) {
	v.mu.RLock()
	ent, ok := v.entries[key]
	v.mu.RUnlock()
	if ok && !ent.gone && v.now().Sub(ent.seen) < v.maxAge {
		return ent, nil
	}
	// Not held, deleted, or not confirmed for a while: the registry decides.
	e, err := v.r.kv.Get(ctx, key)
	v.mu.Lock()
	v.reads++
	v.mu.Unlock()
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return viewEntry{}, missing{err}
		}
		return viewEntry{}, err
	}
	ent = viewEntry{rev: e.Revision(), seen: v.now()}
	if err := ent.decode(key, e.Value()); err != nil {
		return viewEntry{}, err
	}
	v.mu.Lock()
	if cur, ok := v.entries[key]; !ok || cur.rev <= ent.rev {
		v.entries[key] = ent
	}
	v.mu.Unlock()
	return ent, nil
}
