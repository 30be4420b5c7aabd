package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
)

// NotificationQueue is an SQS queue in a customer's account that receives
// the S3 notifications of their buckets, attached over the API. The SQS
// bridge reads it through the integration's role (with its ExternalId, a
// session scoped to this queue), and its records are routed to the org
// only: the customer can write to their own queue, so it speaks for them
// alone. Bridges pick queues up, and drop removed ones, without a restart.
type NotificationQueue struct {
	ID            string    `json:"id"`
	Org           string    `json:"org"`
	URL           string    `json:"queue_url"`
	IntegrationID string    `json:"integration_id"`
	CreatedAt     time.Time `json:"created_at"`
}

// QueueHealth is what the bridge last saw of a queue (written at most
// every few seconds per queue).
type QueueHealth struct {
	LastReceiveAt *time.Time `json:"last_receive_at,omitempty"` // the last successful ReceiveMessage
	LastRecordAt  *time.Time `json:"last_record_at,omitempty"`  // the last notification record routed
	Records       int64      `json:"records"`                   // records routed since the bridge started
	LastError     string     `json:"last_error,omitempty"`
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
}

func queueKey(org, id string) string  { return "queue." + org + "." + id }
func healthKey(org, id string) string { return "queuehealth." + org + "." + id }

// checkQueueURL accepts an https SQS queue URL (<endpoint>/<account>/<name>),
// or http on a loopback endpoint (local stand-ins).
func checkQueueURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("queue_url %s: not a URL: %w", schema.Quote(raw), ErrInvalid)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || len(parts[0]) != 12 || parts[1] == "" || len(raw) > 1024 {
		return fmt.Errorf("queue_url %s: want https://sqs.<region>.amazonaws.com/<12-digit account>/<queue name>: %w", schema.Quote(raw), ErrInvalid)
	}
	loopback := u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost" || u.Hostname() == "::1"
	if u.Scheme != "https" && !(u.Scheme == "http" && loopback) {
		return fmt.Errorf("queue_url %s: must be https: %w", schema.Quote(raw), ErrInvalid)
	}
	return nil
}

// AddQueue attaches a customer's queue to the org: read through one of the
// org's active role integrations (integrationID; "" picks the org's only
// one). A queue is attached to one org at most.
func (r *Registry) AddQueue(ctx context.Context, actor, org, queueURL, integrationID string) (*NotificationQueue, error) {
	if err := checkQueueURL(queueURL); err != nil {
		return nil, err
	}
	in, err := r.queueIntegration(ctx, org, integrationID)
	if err != nil {
		return nil, err
	}
	all, err := r.Queues(ctx, "")
	if err != nil {
		return nil, err
	}
	if i := slices.IndexFunc(all, func(q *NotificationQueue) bool { return q.URL == queueURL }); i >= 0 {
		r.Audit(ctx, org, actor, "queue.attach", "refused", "already attached: "+queueURL)
		return nil, fmt.Errorf("queue %s is already attached (%s): %w", queueURL, all[i].ID, ErrExists)
	}
	q := &NotificationQueue{ID: "q_" + randHex(8), Org: org, URL: queueURL, IntegrationID: in.ID, CreatedAt: r.now().UTC()}
	if err := r.create(ctx, queueKey(org, q.ID), q); err != nil {
		return nil, fmt.Errorf("attach queue: %w", err)
	}
	r.Audit(ctx, org, actor, "queue.attach", "ok", q.ID+" "+queueURL+" via "+in.ID)
	return q, nil
}

// queueIntegration is the active role integration a queue is read through.
func (r *Registry) queueIntegration(ctx context.Context, org, id string) (*Integration, error) {
	if id != "" {
		in, err := r.Integration(ctx, org, id)
		if err != nil {
			return nil, err
		}
		if in.Kind != KindRole || in.Status != StatusActive {
			return nil, fmt.Errorf("integration %s is a %s integration, %s: queues are read through an active role: %w", in.ID, in.Kind, in.Status, ErrNotUsable)
		}
		return in, nil
	}
	ins, err := r.Integrations(ctx, org)
	if err != nil {
		return nil, err
	}
	var ok []*Integration
	for _, in := range ins {
		if in.Kind == KindRole && in.Status == StatusActive {
			ok = append(ok, in)
		}
	}
	if len(ok) != 1 {
		return nil, fmt.Errorf("%d active role integrations: name the one to read the queue with (integration_id): %w", len(ok), ErrNotUsable)
	}
	return ok[0], nil
}

// ErrNotUsable: the request names something that exists but cannot be
// used for it.
var ErrNotUsable = errors.New("not usable")

// ErrInvalid: a value that is not of the shape asked for.
var ErrInvalid = errors.New("invalid")

// Queues lists the org's attached queues ("": every org's).
func (r *Registry) Queues(ctx context.Context, org string) ([]*NotificationQueue, error) {
	filter := "queue.>"
	if org != "" {
		filter = "queue." + org + ".*"
	}
	lister, err := r.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	var out []*NotificationQueue
	for k := range lister.Keys() {
		var q NotificationQueue
		if _, err := r.get(ctx, k, &q); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return nil, err
		}
		out = append(out, &q)
	}
	slices.SortFunc(out, func(a, b *NotificationQueue) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// Queue returns one of the org's queues with its health.
func (r *Registry) Queue(ctx context.Context, org, id string) (*NotificationQueue, *QueueHealth, error) {
	if !schema.ValidID(id) {
		return nil, nil, ErrNotFound
	}
	var q NotificationQueue
	if _, err := r.get(ctx, queueKey(org, id), &q); err != nil {
		return nil, nil, err
	}
	h, err := r.QueueHealth(ctx, &q)
	if err != nil {
		return nil, nil, err
	}
	return &q, h, nil
}

// QueueHealth is what the bridges last saw of q (empty before they wrote).
func (r *Registry) QueueHealth(ctx context.Context, q *NotificationQueue) (*QueueHealth, error) {
	var h QueueHealth
	if _, err := r.get(ctx, healthKey(q.Org, q.ID), &h); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	return &h, nil
}

// RemoveQueue detaches one of the org's queues: bridges stop reading it.
func (r *Registry) RemoveQueue(ctx context.Context, actor, org, id string) error {
	if _, _, err := r.Queue(ctx, org, id); err != nil {
		return err
	}
	if err := r.kv.Delete(ctx, queueKey(org, id)); err != nil {
		return err
	}
	_ = r.kv.Delete(ctx, healthKey(org, id))
	r.Audit(ctx, org, actor, "queue.detach", "ok", id)
	return nil
}

// SetQueueHealth records what a bridge saw of a queue.
func (r *Registry) SetQueueHealth(ctx context.Context, q *NotificationQueue, h *QueueHealth) error {
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	_, err = r.kv.Put(ctx, healthKey(q.Org, q.ID), data)
	return err
}

// QueueSet is a live view of the attached queues, kept current by a KV
// watch; Changed is signalled (without blocking) after every change.
type QueueSet struct {
	mu      sync.Mutex
	all     map[string]*NotificationQueue
	Changed chan struct{}
}

// WatchQueues starts a QueueSet that follows the registry until ctx ends;
// it returns once the current queues are loaded.
func (r *Registry) WatchQueues(ctx context.Context) (*QueueSet, error) {
	w, err := r.kv.Watch(ctx, "queue.>")
	if err != nil {
		return nil, fmt.Errorf("watch queues: %w", err)
	}
	s := &QueueSet{all: map[string]*NotificationQueue{}, Changed: make(chan struct{}, 1)}
	apply := func(e jetstream.KeyValueEntry) {
		s.mu.Lock()
		if e.Operation() != jetstream.KeyValuePut {
			delete(s.all, e.Key())
		} else {
			var q NotificationQueue
			if err := json.Unmarshal(e.Value(), &q); err == nil {
				s.all[e.Key()] = &q
			}
		}
		s.mu.Unlock()
		select {
		case s.Changed <- struct{}{}:
		default:
		}
	}
	if err := schema.Follow(ctx, w, apply, nil, nil); err != nil {
		return nil, err
	}
	return s, nil
}

// List returns the queues now attached.
func (s *QueueSet) List() []*NotificationQueue {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*NotificationQueue, 0, len(s.all))
	for _, q := range s.all {
		out = append(out, q)
	}
	return out
}
