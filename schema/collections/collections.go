// Package collections owns collection records (KV schema.BucketCollections,
// key "<org>.<name>"): created by PUT /v2/collections/{name} or by the first
// index job, route or schedule that names one, with the settings index jobs
// default to; marked deleting while a delete_collection job erases it, and
// removed by that job at its end. What a collection holds (its documents,
// chunks and tokens) is read from the object states (Stats, Each), not
// kept here: the object states are the one record of what is indexed.
package collections

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// Collection statuses.
const (
	StatusActive   = "active"
	StatusDeleting = "deleting" // a delete_collection job (DeleteJob) is erasing it: no new index jobs, tasks skipped
)

// Collection is one collection's record.
type Collection struct {
	Org    string `json:"org"`
	Name   string `json:"collection_name"`
	ID     string `json:"collection_id"`
	Status string `json:"status"`
	// DeleteJob is the delete_collection job erasing it (status deleting).
	DeleteJob string `json:"delete_job_id,omitempty"`
	Settings
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Settings are what an index job into the collection defaults to when its
// request does not say: processing type, tokenizer, custom metadata.
type Settings struct {
	Description string `json:"description,omitempty"`
	// ReadSettings: how its jobs' and notifications' objects are read when
	// they do not say (see schema.Task).
	schema.ReadSettings
	CustomMetadata json.RawMessage `json:"custom_metadata,omitempty"`
	// Filters are what the collection's jobs default to, and what its S3
	// notifications' objects must pass.
	Filters *schema.Filters `json:"filters,omitempty"`
}

// Errors of the store.
var (
	ErrNotFound = errors.New("no such collection")
	ErrDeleting = errors.New("the collection is being deleted")
)

// Store creates, reads and deletes collection records. It is safe for
// concurrent use.
type Store struct {
	kv      jetstream.KeyValue
	objects jetstream.KeyValue
	js      jetstream.JetStream // passes over the object states: Each
	now     func() time.Time
}

// Open binds to the collections and object-state buckets (created by
// schema.Topology.Ensure); now is the clock (nil: time.Now).
func Open(ctx context.Context, js jetstream.JetStream, now func() time.Time) (*Store, error) {
	kv, err := js.KeyValue(ctx, schema.BucketCollections)
	if err != nil {
		return nil, fmt.Errorf("collections: %w", err)
	}
	objects, err := js.KeyValue(ctx, schema.BucketObjects)
	if err != nil {
		return nil, fmt.Errorf("collections: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Store{kv: kv, objects: objects, js: js, now: now}, nil
}

func key(org, name string) string { return org + "." + name }

// ID is a collection's ID: derived from its org, name and creation, so a
// collection deleted and made again has a new one.
func ID(org, name string, created time.Time) string {
	h := sha256.Sum256([]byte(org + "\x00" + name + "\x00" + created.UTC().Format(time.RFC3339Nano)))
	return "col_" + hex.EncodeToString(h[:10])
}

// Get returns org's collection name (ErrNotFound) and its revision.
func (s *Store) Get(ctx context.Context, org, name string) (*Collection, uint64, error) {
	if !schema.ValidID(name) {
		return nil, 0, ErrNotFound
	}
	ctx, cancel := context.WithTimeout(ctx, schema.RequestTimeout)
	defer cancel()
	e, err := s.kv.Get(ctx, key(org, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	var c Collection
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return nil, 0, fmt.Errorf("collection %s/%s unreadable: %w", org, name, err)
	}
	return &c, e.Revision(), nil
}

// Put creates org's collection name with settings, or replaces the
// settings of the existing one; it reports whether it created it. A
// collection being deleted is ErrDeleting.
func (s *Store) Put(ctx context.Context, org, name string, set Settings) (*Collection, bool, error) {
	return s.write(ctx, org, name, set, func(c *Collection) bool {
		c.Settings = set
		return true
	})
}

// Ensure returns org's collection name, creating it with no settings when
// there is none (the first index job, route or schedule that names it),
// and whether it did. A collection being deleted is ErrDeleting, with its
// record.
func (s *Store) Ensure(ctx context.Context, org, name string) (*Collection, bool, error) {
	return s.write(ctx, org, name, Settings{}, func(*Collection) bool { return false })
}

// write creates org's collection name with set when it has none, or else
// applies change to its record, saved with compare-and-set when change
// reports a change; it reports whether it created the collection. One
// being deleted is ErrDeleting, with its record, unchanged.
func (s *Store) write(ctx context.Context, org, name string, set Settings, change func(*Collection) bool) (*Collection, bool, error) {
	for attempt := 0; attempt < 5; attempt++ {
		c, rev, err := s.Get(ctx, org, name)
		switch {
		case errors.Is(err, ErrNotFound):
			if c, err = s.create(ctx, org, name, set); errors.Is(err, jetstream.ErrKeyExists) {
				continue // made meanwhile
			}
			return c, err == nil, err
		case err != nil:
			return nil, false, err
		case c.Status == StatusDeleting:
			return c, false, ErrDeleting
		case !change(c):
			return c, false, nil
		}
		c.UpdatedAt = s.now().UTC()
		if err := s.update(ctx, c, rev); errors.Is(err, jetstream.ErrKeyExists) {
			continue
		} else if err != nil {
			return nil, false, err
		}
		return c, false, nil
	}
	return nil, false, fmt.Errorf("collection %s/%s: too many concurrent writes", org, name)
}

func (s *Store) create(ctx context.Context, org, name string, set Settings) (*Collection, error) {
	if !schema.ValidID(name) {
		return nil, fmt.Errorf("collection name %q: must be 1-64 characters of A-Z a-z 0-9 _ -", name)
	}
	now := s.now().UTC()
	c := &Collection{Org: org, Name: name, ID: ID(org, name, now), Status: StatusActive, Settings: set, CreatedAt: now, UpdatedAt: now}
	data, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if _, err := s.kv.Create(ctx, key(org, name), data); err != nil {
		return nil, err
	}
	return c, nil
}

func (s *Store) update(ctx context.Context, c *Collection, rev uint64) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = s.kv.Update(ctx, key(c.Org, c.Name), data, rev)
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return jetstream.ErrKeyExists
	}
	return err
}

// MarkDeleting marks org's collection name deleting by jobID, unless it is
// already being deleted by a job that is not failed(job): then it returns
// the record with the job that is (DeleteJob), and marked false.
func (s *Store) MarkDeleting(ctx context.Context, org, name, jobID string, failed func(job string) bool) (c *Collection, marked bool, err error) {
	for attempt := 0; attempt < 5; attempt++ {
		c, rev, err := s.Get(ctx, org, name)
		if err != nil {
			return nil, false, err
		}
		if c.Status == StatusDeleting && !failed(c.DeleteJob) {
			return c, false, nil
		}
		c.Status, c.DeleteJob, c.UpdatedAt = StatusDeleting, jobID, s.now().UTC()
		if err := s.update(ctx, c, rev); errors.Is(err, jetstream.ErrKeyExists) {
			continue
		} else if err != nil {
			return nil, false, err
		}
		return c, true, nil
	}
	return nil, false, fmt.Errorf("collection %s/%s: too many concurrent writes", org, name)
}

// Remove deletes org's collection name if jobID is the job deleting it
// (nothing when it is gone already, or made again since).
func (s *Store) Remove(ctx context.Context, org, name, jobID string) error {
	c, rev, err := s.Get(ctx, org, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.Status != StatusDeleting || c.DeleteJob != jobID {
		return nil
	}
	err = s.kv.Delete(ctx, key(org, name), jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil
	}
	return err
}

// List returns org's collections by name.
func (s *Store) List(ctx context.Context, org string) ([]*Collection, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, org+".*")
	if err != nil {
		return nil, err
	}
	var out []*Collection
	for k := range lister.Keys() {
		c, _, err := s.Get(ctx, org, k[len(org)+1:])
		if errors.Is(err, ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *Collection) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Cache reads collection records for the index tasks (is it being
// deleted, what do its filters exclude); each answer is kept a second.
type Cache struct {
	s       *Store
	answers *lru.LRU[string, *Collection]
}

// CacheTTL is how long a Cache keeps an answer: a task claimed within it
// of the delete may still be indexed; the delete's second pass erases it.
const CacheTTL = time.Second

// Cache returns a Cache on the store.
func (s *Store) Cache() *Cache {
	return &Cache{s: s, answers: lru.NewLRU[string, *Collection](10_000, nil, CacheTTL)}
}

// Get returns org's collection name (an empty record when it has none). A
// record that cannot be read is an error (the task is retried).
func (c *Cache) Get(ctx context.Context, org, name string) (*Collection, error) {
	k := key(org, name)
	if v, ok := c.answers.Get(k); ok {
		return v, nil
	}
	rec, _, err := c.s.Get(ctx, org, name)
	if errors.Is(err, ErrNotFound) {
		err, rec = nil, &Collection{}
	}
	if err != nil {
		return nil, err
	}
	c.answers.Add(k, rec)
	return rec, nil
}

// Deleting reports whether org's collection name is being deleted.
func (c *Cache) Deleting(ctx context.Context, org, name string) (bool, error) {
	rec, err := c.Get(ctx, org, name)
	if err != nil {
		return false, err
	}
	return rec.Status == StatusDeleting, nil
}
