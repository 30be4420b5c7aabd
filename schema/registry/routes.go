package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// Route maps S3 notifications for a bucket (and key prefix) to the org,
// collection and integration that index them.
type Route struct {
	ID            string `json:"id"`
	Org           string `json:"org"`
	Collection    string `json:"collection"`
	Bucket        string `json:"bucket"`
	Prefix        string `json:"prefix,omitempty"`
	IntegrationID string `json:"integration_id"`
	// ProcessingType is how the route's objects are extracted: basic
	// (also when empty) or advanced, as in an index request.
	ProcessingType string `json:"processing_type,omitempty"`
	Encoding       string `json:"encoding,omitempty"` // the tokenizer; empty: cl100k_base
	// CustomMetadata is put on every chunk of the route's objects, as an
	// index request's is (a JSON object, at most 16 KiB).
	CustomMetadata json.RawMessage `json:"custom_metadata,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
}

// routeKey: bucket names hold only [A-Za-z0-9._-] (schema.ValidBucket), so
// mapping "." to "=" (which no bucket name holds) keeps the bucket one KV
// token and stays unambiguous. (Versions before legacy bucket names were
// accepted mapped "." to "_"; such keys are still listed and deleted by the
// key they are stored under.)
func routeKey(bucket, id string) string {
	return "route." + strings.ReplaceAll(bucket, ".", "=") + "." + id
}

// AddRoute registers a route. The integration must belong to the org and
// cover the bucket and prefix; without one, the org's only integration that
// does is used. Two routes for the same bucket and prefix are refused.
func (r *Registry) AddRoute(ctx context.Context, actor string, rt Route) (*Route, error) {
	if _, err := r.Org(ctx, rt.Org); err != nil {
		return nil, fmt.Errorf("add route: %w", err)
	}
	refused, err := r.checkRoute(ctx, &rt)
	if refused != nil {
		r.Audit(ctx, rt.Org, actor, "route.create", "refused", refused.Error())
		return nil, fmt.Errorf("add route: %w", refused)
	}
	if err != nil {
		return nil, err
	}
	rt.ID, rt.CreatedAt = "rt_"+randHex(8), r.now().UTC()
	if err := r.create(ctx, routeKey(rt.Bucket, rt.ID), &rt); err != nil {
		return nil, fmt.Errorf("add route: %w", err)
	}
	r.Audit(ctx, rt.Org, actor, "route.create", "ok", fmt.Sprintf("%s s3://%s/%s → %s via %s", rt.ID, rt.Bucket, rt.Prefix, rt.Collection, rt.IntegrationID))
	return &rt, nil
}

// checkRoute checks rt and names its integration when it names none (the
// one that covers its bucket and prefix). refused is why rt is refused (it
// is audited); err is a failure to read the registry.
func (r *Registry) checkRoute(ctx context.Context, rt *Route) (refused, err error) {
	switch {
	case !schema.ValidID(rt.Collection):
		return fmt.Errorf("collection %q must be 1-64 characters of A-Z a-z 0-9 _ -", rt.Collection), nil
	case !schema.ValidBucket(rt.Bucket):
		return fmt.Errorf("bucket %q is not a bucket name", rt.Bucket), nil
	case !schema.ValidProcessingType(rt.ProcessingType):
		return fmt.Errorf("processing type %q must be basic or advanced", rt.ProcessingType), nil
	case !schema.ValidEncoding(rt.Encoding):
		return fmt.Errorf("encoding %q must be cl100k_base or o200k_base", rt.Encoding), nil
	case len(rt.CustomMetadata) > 16<<10 || len(rt.CustomMetadata) > 0 && !json.Valid(rt.CustomMetadata):
		return errors.New("custom metadata must be a JSON object of at most 16 KiB"), nil
	}
	if rt.IntegrationID == "" {
		ins, err := r.Integrations(ctx, rt.Org)
		if err != nil {
			return nil, err
		}
		var ids []string
		for _, in := range ins {
			if in.Status != StatusRevoked && in.Allows(rt.Bucket, rt.Prefix) {
				ids = append(ids, in.ID)
			}
		}
		if len(ids) != 1 {
			return fmt.Errorf("%d integrations of %s cover s3://%s/%s: name one with --integration", len(ids), rt.Org, rt.Bucket, rt.Prefix), nil
		}
		rt.IntegrationID = ids[0]
	}
	in, err := r.Integration(ctx, rt.Org, rt.IntegrationID)
	if err != nil {
		return err, nil
	}
	if !in.Allows(rt.Bucket, rt.Prefix) {
		return fmt.Errorf("integration %s does not cover s3://%s/%s", in.ID, rt.Bucket, rt.Prefix), nil
	}
	routes, err := r.Routes(ctx)
	if err != nil {
		return nil, err
	}
	for _, o := range routes {
		if o.Bucket == rt.Bucket && o.Org != rt.Org {
			// A bucket belongs to one account, so to one org: another org's
			// route for it (at any prefix) would let that org's tenants be
			// spoken for by notifications about someone else's bucket.
			return fmt.Errorf("bucket %s is routed by another organization: %w", rt.Bucket, ErrExists), nil
		}
		if o.Bucket == rt.Bucket && o.Prefix == rt.Prefix {
			return fmt.Errorf("s3://%s/%s is already routed by %s: %w", rt.Bucket, rt.Prefix, o.ID, ErrExists), nil
		}
	}
	return nil, nil
}

// Routes lists every route.
func (r *Registry) Routes(ctx context.Context) ([]*Route, error) {
	keyed, err := r.routes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Route, 0, len(keyed))
	for _, kr := range keyed {
		out = append(out, kr.route)
	}
	return out, nil
}

type keyedRoute struct {
	key   string
	route *Route
}

// routes lists every route with the KV key it is stored under.
func (r *Registry) routes(ctx context.Context) ([]keyedRoute, error) {
	lister, err := r.kv.ListKeysFiltered(ctx, "route.>")
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []keyedRoute
	for k := range lister.Keys() {
		var rt Route
		if _, err := r.get(ctx, k, &rt); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return nil, err
		}
		out = append(out, keyedRoute{k, &rt})
	}
	slices.SortFunc(out, func(a, b keyedRoute) int {
		return strings.Compare(a.route.Bucket+"/"+a.route.Prefix, b.route.Bucket+"/"+b.route.Prefix)
	})
	return out, nil
}

// DeleteRoute removes a route of org.
func (r *Registry) DeleteRoute(ctx context.Context, actor, org, id string) error {
	routes, err := r.routes(ctx)
	if err != nil {
		return err
	}
	for _, kr := range routes {
		if rt := kr.route; rt.ID == id && rt.Org == org {
			if err := r.kv.Delete(ctx, kr.key); err != nil {
				return err
			}
			r.Audit(ctx, org, actor, "route.delete", "ok", id)
			return nil
		}
	}
	return fmt.Errorf("route %s of %s: %w", id, org, ErrNotFound)
}

// RouteTable is a live view of the routes, kept current by a KV watch, for
// matching every notification record without a registry read.
type RouteTable struct {
	mu       sync.RWMutex
	byBucket map[string][]*Route // longest prefix first
}

// WatchRoutes starts a RouteTable that follows the registry until ctx ends.
// It returns once the current routes are loaded.
func (r *Registry) WatchRoutes(ctx context.Context) (*RouteTable, error) {
	w, err := r.kv.Watch(ctx, "route.>")
	if err != nil {
		return nil, fmt.Errorf("watch routes: %w", err)
	}
	t := &RouteTable{byBucket: map[string][]*Route{}}
	all, loaded := map[string]*Route{}, false
	apply := func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut {
			delete(all, e.Key())
		} else {
			var rt Route
			if err := json.Unmarshal(e.Value(), &rt); err == nil {
				all[e.Key()] = &rt
			}
		}
		if loaded {
			t.rebuild(all)
		}
	}
	if err := schema.Follow(ctx, w, apply, func() { loaded = true; t.rebuild(all) }, nil); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *RouteTable) rebuild(all map[string]*Route) {
	by := map[string][]*Route{}
	for _, rt := range all {
		by[rt.Bucket] = append(by[rt.Bucket], rt)
	}
	for _, rs := range by {
		slices.SortFunc(rs, func(a, b *Route) int { return len(b.Prefix) - len(a.Prefix) })
	}
	t.mu.Lock()
	t.byBucket = by
	t.mu.Unlock()
}

// Match returns the route with the longest prefix that key starts with, or nil.
func (t *RouteTable) Match(bucket, key string) *Route {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, rt := range t.byBucket[bucket] {
		if strings.HasPrefix(key, rt.Prefix) {
			return rt
		}
	}
	return nil
}
