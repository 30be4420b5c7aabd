package jobs

import (
	"context"
	"encoding/json"
	"time"

	lru "github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/stevedore-dev/stevedore/schema"
)

// Record is what a job's tasks read of its record.
type Record struct {
	Cancelled bool
	// CustomMetadata is the request's custom metadata: kept on the record,
	// not in every task.
	CustomMetadata json.RawMessage
	// FilesDeleted is how many objects the job deleted (erase jobs: the
	// documents erased so far).
	FilesDeleted int64
	// Lanes: the record keeps the bookkeeping of a listing in lanes
	// (schema.JobStatus.Lanes), so the planner may split the job's listing.
	Lanes bool
	// LiveLanes is how many of the job's lanes are not yet wholly planned
	// (as of the record's last fold).
	LiveLanes int
}

// Cache reads Records for a job's tasks, each kept for a second: a cancel
// takes effect at once fleet-wide, and a job's tasks cost one read a second.
type Cache struct {
	store *Store
	lru   *lru.LRU[string, Record]
}

const (
	cacheSize = 10_000
	cacheTTL  = time.Second
)

// Cache returns a new Cache on the store.
func (j *Store) Cache() *Cache {
	return &Cache{store: j, lru: lru.NewLRU[string, Record](cacheSize, nil, cacheTTL)}
}

// Get returns job jobID's Record (jetstream.ErrKeyNotFound when it has none).
func (c *Cache) Get(ctx context.Context, jobID string) (Record, error) {
	if r, ok := c.lru.Get(jobID); ok {
		return r, nil
	}
	ctx, cancel := context.WithTimeout(ctx, schema.RequestTimeout)
	defer cancel()
	e, err := c.store.kv.Get(ctx, jobID)
	if err != nil {
		return Record{}, err
	}
	var st struct { // the record's fields its tasks read, not its error list
		Status         string                     `json:"status"`
		CustomMetadata json.RawMessage            `json:"custom_metadata"`
		FilesDeleted   int64                      `json:"files_deleted"`
		Lanes          map[string]json.RawMessage `json:"lanes"`
		LanesDone      int                        `json:"lanes_done"`
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return Record{}, err
	}
	r := Record{Cancelled: st.Status == schema.JobStatusCancelled, CustomMetadata: st.CustomMetadata, FilesDeleted: st.FilesDeleted,
		Lanes: len(st.Lanes) > 0 || st.LanesDone > 0, LiveLanes: len(st.Lanes)}
	c.lru.Add(jobID, r)
	return r, nil
}

// Cancelled reports whether job jobID was cancelled. No job (""), or a
// record that cannot be read now, counts as not cancelled: the work goes on
// and the tracker reports it.
func (c *Cache) Cancelled(ctx context.Context, jobID string) bool {
	if jobID == "" {
		return false
	}
	r, _ := c.Get(ctx, jobID)
	return r.Cancelled
}
