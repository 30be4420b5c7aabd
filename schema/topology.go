package schema

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TrackBatch is the most events the tracker folds per batch.
const TrackBatch = 256

// MaxOrgConsumers is the consumer limit of JOBS and TASKS (one consumer per
// org on each, plus a few).
const MaxOrgConsumers = 100_000

// Worker leases (BucketWorkers): how long a worker that stopped renewing
// still counts as live, and how often live workers renew.
const (
	WorkerLeaseTTL   = 6 * time.Second
	WorkerLeaseEvery = 2 * time.Second
)

// TrackerAckWait is the tracker consumer's ack wait (or the fleet's, when
// shorter). After a tracker dies mid-batch the next pinned worker waits for
// that batch's redelivery before it folds on, so this is what a tracker
// crash costs; the tracker sends heartbeats while it folds, so a slow fold
// is not redelivered.
const TrackerAckWait = 6 * time.Second

// Topology sizes the JetStream resources. Zero fields take the defaults in
// their comments.
type Topology struct {
	Replicas        int           // stream and KV replicas; default 1 (use 3 in production)
	WorkQueueBytes  int64         // max bytes of JOBS and TASKS each; default 1 GiB
	ChunksMaxAge    time.Duration // CHUNKS retention; default 7 days
	ChunksMaxBytes  int64         // CHUNKS size limit; default 10 GiB
	EventsMaxAge    time.Duration // EVENTS retention; default 7 days
	DeadMaxAge      time.Duration // DEAD and AUDIT retention; default 365 days
	AuditMaxBytes   int64         // AUDIT size cap (oldest records go first past it); default 1 GiB
	AuditPerOrg     int64         // AUDIT records kept per org (its oldest go first past it), so one org cannot evict another's; default 20,000
	DeadMaxBytes    int64         // DEAD size cap (oldest dead letters go first past it; alerted at 80 %); default 1 GiB
	DuplicateWindow time.Duration // Nats-Msg-Id dedup window, sized to the retry span; default 30 minutes
	AckWait         time.Duration // worker consumers' ack wait; default 60 s (heartbeats extend it)
	MaxDeliver      int           // deliveries before a message is dead-lettered; default 8
	MemoryStorage   bool          // memory instead of file storage (tests only)
	// OrgConsumerIdle is how long an org's planner or indexer consumer may
	// go without a pull before nats-server removes it (its messages stay in
	// the stream; a worker makes the consumer again when the org has work).
	// Without it every org that ever had work would keep two consumers —
	// ~130 KiB of server memory each. Default 1 hour.
	OrgConsumerIdle time.Duration
	// Update lets Ensure rewrite live streams and consumers whose
	// operator-set values (Replicas, AckWait, MaxDeliver) differ from these;
	// without it such a difference is refused (ErrTopologyDrift), so one
	// mis-flagged process cannot change the fleet's claim semantics.
	Update bool
}

// ErrTopologyDrift: the live topology was made with other operator-set
// values than this process's (see Topology.Update).
var ErrTopologyDrift = errors.New("topology drift")

// WithDefaults returns t with every zero field set to its default.
func (t Topology) WithDefaults() Topology {
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if t.Replicas == 0 {
		t.Replicas = 1
	}
	if t.MaxDeliver == 0 {
		t.MaxDeliver = 8
	}
	def(&t.WorkQueueBytes, 1<<30)
	def(&t.ChunksMaxBytes, 10<<30)
	def(&t.AuditMaxBytes, 1<<30)
	def(&t.AuditPerOrg, 20_000)
	def(&t.DeadMaxBytes, 1<<30)
	defD(&t.ChunksMaxAge, 7*24*time.Hour)
	defD(&t.OrgConsumerIdle, time.Hour)
	defD(&t.EventsMaxAge, 7*24*time.Hour)
	defD(&t.DeadMaxAge, 365*24*time.Hour)
	defD(&t.DuplicateWindow, 30*time.Minute)
	defD(&t.AckWait, 60*time.Second)
	return t
}

// Streams returns the stream configurations, the single definition of the
// stream topology.
func (t Topology) Streams() []jetstream.StreamConfig {
	t = t.WithDefaults()
	storage := jetstream.FileStorage
	if t.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	base := func(name, desc string, subjects ...string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name: name, Description: desc, Subjects: subjects, Storage: storage,
			Replicas: t.Replicas, Duplicates: t.DuplicateWindow, MaxMsgSize: MaxMessageBytes,
		}
	}
	jobs := base(StreamJobs, "index jobs, one page each, and the sweeps of syncs", AllJobs, AllSweeps)
	jobs.Retention, jobs.Discard, jobs.MaxBytes = jetstream.WorkQueuePolicy, jetstream.DiscardNew, t.WorkQueueBytes
	tasks := base(StreamTasks, "one object version each", AllTasks)
	tasks.Retention, tasks.Discard, tasks.MaxBytes = jetstream.WorkQueuePolicy, jetstream.DiscardNew, t.WorkQueueBytes
	// A listing page's tasks go as one fast-ingest batch (PublishAll).
	tasks.AllowBatchPublish = true
	// One consumer per org on each: nats-server ≥ 2.14 caps a stream at
	// 1,000 consumers unless the stream sets its own limit (found by the
	// simulation: the 1,001st org's jobs were never planned).
	jobs.MaxConsumers, tasks.MaxConsumers = MaxOrgConsumers, MaxOrgConsumers
	chunks := base(StreamChunks, "chunks and tombstones for the embedder", "chunks.*.*")
	// At its byte limit CHUNKS refuses new chunks (workers wait for room)
	// rather than dropping old ones downstream may not have read.
	chunks.MaxAge, chunks.MaxBytes, chunks.Discard = t.ChunksMaxAge, t.ChunksMaxBytes, jetstream.DiscardNew
	events := base(StreamEvents, "per-object outcomes and job lifecycle", "events.>")
	events.MaxAge = t.EventsMaxAge
	dead := base(StreamDead, "messages that could not be processed, with reason", "dead.>")
	// DEAD has a byte limit: a tenant's forged or malformed notifications
	// land there, and without one they could fill the server's disk. Past
	// it the oldest dead letters go; StevedoreChunksNearLimit alerts on
	// every stream past 80 % of its limit first.
	dead.MaxAge, dead.MaxBytes = t.DeadMaxAge, t.DeadMaxBytes
	audit := base(StreamAudit, "onboarding, verification, rotation, revocation, denials", "audit.>")
	audit.MaxAge, audit.MaxBytes, audit.DenyDelete, audit.DenyPurge = t.DeadMaxAge, t.AuditMaxBytes, true, true
	// One subject per org (AuditSubject): an org's refusals past its share
	// evict its own oldest records, never another org's. At ~500 bytes a
	// record (details are bounded) an org holds at most ~10 MB of AUDIT.
	audit.MaxMsgsPerSubject = t.AuditPerOrg
	// One message per subject: a schedule replaces the one before, and a
	// tick not yet taken when the next comes is replaced by it (one sync,
	// not a pile-up, after the fleet was down for a while). The server
	// publishes the ticks (message schedules, nats-server ≥ 2.12), from the
	// stream's leader: once per tick, across restarts and leader changes.
	schedules := base(StreamSchedules, "sync schedules of collections and their ticks", "schedules.>")
	schedules.MaxMsgsPerSubject, schedules.AllowMsgSchedules, schedules.AllowRollup = 1, true, true
	return []jetstream.StreamConfig{jobs, tasks, chunks, events, dead, audit, schedules}
}

// ConsumerSpec pairs a durable consumer with its stream.
type ConsumerSpec struct {
	Stream string
	Config jetstream.ConsumerConfig
}

// Consumers returns the durable pull consumers, the single definition of
// claim semantics: explicit ack, AckWait extended by InProgress heartbeats,
// MaxDeliver before dead-lettering, and backoff between redeliveries.
func (t Topology) Consumers() []ConsumerSpec {
	t = t.WithDefaults()
	work := func(name, desc string) jetstream.ConsumerConfig {
		return jetstream.ConsumerConfig{
			Durable: name, Description: desc, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: t.AckWait, MaxDeliver: t.MaxDeliver, MaxAckPending: 10_000,
			MaxWaiting: 512, Replicas: t.Replicas,
		}
	}
	tracker := work(ConsumerTracker, "folds EVENTS into job status, in order, in batches")
	// In stream order, fleet-wide: folding compares the event's stream
	// sequence with the last one folded into the job, which is exact only
	// when events are folded in order. One pinned worker pulls batches and
	// acknowledges each batch at once; a worker folds a batch only when no
	// other events are outstanding (see worker.serveTracker), so after a
	// crash the pin may move on quickly.
	tracker.AckPolicy = jetstream.AckAllPolicy
	tracker.MaxAckPending = 4 * TrackBatch
	tracker.MaxDeliver = -1
	tracker.PriorityGroups = []string{TrackerGroup}
	tracker.PriorityPolicy = jetstream.PriorityPolicyPinned
	tracker.PinnedTTL = 3 * time.Second
	tracker.AckWait = min(t.AckWait, TrackerAckWait)
	return []ConsumerSpec{{StreamEvents, tracker}}
}

// PlannerConfig is the JOBS consumer of one org (PlannerConsumer): the same
// claim semantics as the others, filtered to the org's subjects. Workers
// create it when they first see the org's job pages.
func (t Topology) PlannerConfig(org string) jetstream.ConsumerConfig {
	t = t.WithDefaults()
	return jetstream.ConsumerConfig{
		Durable: PlannerConsumer(org), Description: "plans the index jobs of " + org + " page by page", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: t.AckWait, MaxDeliver: t.MaxDeliver, MaxAckPending: 10_000, MaxWaiting: 512, Replicas: t.Replicas,
		FilterSubject:     OrgJobs(org),
		InactiveThreshold: t.OrgConsumerIdle,
	}
}

// SweeperConfig is the consumer of one org's sweeps (SweeperConsumer).
func (t Topology) SweeperConfig(org string) jetstream.ConsumerConfig {
	c := t.PlannerConfig(org)
	c.Durable, c.Description, c.FilterSubject = SweeperConsumer(org), "sweeps the syncs of "+org+" for deleted objects", OrgSweeps(org)
	return c
}

// TickerConfig is the consumer of one org's schedule ticks (TickerConsumer).
func (t Topology) TickerConfig(org string) jetstream.ConsumerConfig {
	c := t.PlannerConfig(org)
	c.Durable, c.Description, c.FilterSubject = TickerConsumer(org), "starts the scheduled syncs of "+org, OrgTicks(org)
	return c
}

// IndexerConfig is the TASKS consumer of one org (IndexerConsumer): the same
// claim semantics as the others, filtered to the org's subjects. Workers
// create it when they first see the org's tasks.
func (t Topology) IndexerConfig(org string) jetstream.ConsumerConfig {
	t = t.WithDefaults()
	return jetstream.ConsumerConfig{
		Durable: IndexerConsumer(org), Description: "indexes or deletes one object of " + org, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: t.AckWait, MaxDeliver: t.MaxDeliver, MaxAckPending: 10_000, MaxWaiting: 512, Replicas: t.Replicas,
		FilterSubject:     OrgTasks(org),
		InactiveThreshold: t.OrgConsumerIdle,
	}
}

// ConsumerDrift reports how a live consumer's operator-set values (AckWait,
// MaxDeliver, Replicas) differ from want, or nil.
func ConsumerDrift(live, want jetstream.ConsumerConfig) error {
	if live.AckWait != want.AckWait || live.MaxDeliver != want.MaxDeliver || live.Replicas != want.Replicas {
		return fmt.Errorf("consumer %s has ack wait %s, max deliver %d, %d replicas; this process wants %s, %d, %d",
			live.Durable, live.AckWait, live.MaxDeliver, live.Replicas, want.AckWait, want.MaxDeliver, want.Replicas)
	}
	return nil
}

// ErasedMarkerTTL is how long the purge marker of an erased document's
// object state stays (watches and gets already skip it); then the server
// removes it, so erased collections leave nothing behind.
const ErasedMarkerTTL = time.Hour

// KeyValues returns the KV bucket configurations.
func (t Topology) KeyValues() []jetstream.KeyValueConfig {
	t = t.WithDefaults()
	storage := jetstream.FileStorage
	if t.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	return []jetstream.KeyValueConfig{
		{Bucket: BucketRegistry, Description: "orgs, API key hashes, integrations", History: 5, Storage: storage, Replicas: t.Replicas},
		{Bucket: BucketJobs, Description: "job status", History: 1, Storage: storage, Replicas: t.Replicas},
		// An erased document's state is purged with a marker that expires
		// after ErasedMarkerTTL (per-message TTLs, nats-server ≥ 2.11).
		{Bucket: BucketObjects, Description: "per-object index state", History: 1, Storage: storage, Replicas: t.Replicas, LimitMarkerTTL: ErasedMarkerTTL},
		// A lease per live worker, renewed every WorkerLeaseEvery; a lease
		// not renewed for WorkerLeaseTTL expires with a delete marker that
		// the other workers' watches see (nats-server ≥ 2.11).
		{Bucket: BucketWorkers, Description: "live workers (tenant affinity)", History: 1, TTL: WorkerLeaseTTL, LimitMarkerTTL: WorkerLeaseTTL,
			Storage: jetstream.MemoryStorage, Replicas: t.Replicas},
		// Refusals of tenants' roles (creds.SharedVerdicts); each holds its
		// own end of backoff, the bucket's age limit only clears old ones.
		{Bucket: BucketVerdicts, Description: "AssumeRole refusals shared by the fleet", History: 1, TTL: time.Hour,
			Storage: jetstream.MemoryStorage, Replicas: t.Replicas},
		{Bucket: BucketSchedules, Description: "sync schedules and their last syncs", History: 1, Storage: storage, Replicas: t.Replicas},
		{Bucket: BucketCollections, Description: "collections: settings and status", History: 1, Storage: storage, Replicas: t.Replicas},
	}
}

// Ensure creates or updates every stream, KV bucket and consumer. It is
// idempotent and safe to run from every process at start-up; it fails fast,
// naming the resource, when the server lacks JetStream or a feature.
func (t Topology) Ensure(ctx context.Context, js jetstream.JetStream) error {
	if _, err := js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("ensure topology: the NATS server does not have JetStream enabled (start nats-server with -js): %w", err)
		}
		return fmt.Errorf("ensure topology: %w", err)
	}
	var drift []error
	for _, sc := range t.Streams() {
		if s, err := js.Stream(ctx, sc.Name); err == nil && s.CachedInfo().Config.Replicas != sc.Replicas && !t.Update {
			drift = append(drift, fmt.Errorf("stream %s has %d replicas, this process wants %d", sc.Name, s.CachedInfo().Config.Replicas, sc.Replicas))
			continue
		}
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	for _, kv := range t.KeyValues() {
		if _, err := js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
			return fmt.Errorf("ensure kv %s: %w", kv.Bucket, err)
		}
	}
	for _, c := range t.Consumers() {
		if live, err := js.Consumer(ctx, c.Stream, c.Config.Durable); err == nil && !t.Update {
			cfg := live.CachedInfo().Config
			if c.Config.Durable == ConsumerTracker && cfg.AckWait == t.WithDefaults().AckWait {
				// Made by a version whose tracker waited the fleet's
				// AckWait: take the tracker's own, not drift.
				cfg.AckWait = c.Config.AckWait
			}
			if err := ConsumerDrift(cfg, c.Config); err != nil {
				drift = append(drift, err)
				continue
			}
		}
		if _, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.Config); err != nil {
			return fmt.Errorf("ensure consumer %s/%s: %w", c.Stream, c.Config.Durable, err)
		}
	}
	if len(drift) > 0 {
		return fmt.Errorf("%w: %w; run every process of the fleet with the same --replicas and --ack-wait, or start one with --update-topology to change them", ErrTopologyDrift, errors.Join(drift...))
	}
	// Consumers of earlier versions: the fleet-wide TASKS and JOBS consumers
	// overlap the per-org ones (a work-queue stream refuses that), and the
	// one-at-a-time tracker would fold the same events a second time.
	for _, old := range []ConsumerSpec{{StreamTasks, jetstream.ConsumerConfig{Durable: ConsumerIndexer}}, {StreamEvents, jetstream.ConsumerConfig{Durable: legacyTracker}},
		{StreamJobs, jetstream.ConsumerConfig{Durable: ConsumerPlanner}}} {
		if err := js.DeleteConsumer(ctx, old.Stream, old.Config.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("remove the old consumer %s/%s: %w", old.Stream, old.Config.Durable, err)
		}
	}
	return nil
}

// Present reports whether the topology exists (for /readyz).
func Present(ctx context.Context, js jetstream.JetStream) error {
	for _, name := range []string{StreamJobs, StreamTasks, StreamChunks, StreamEvents, StreamDead, StreamAudit, StreamSchedules} {
		if _, err := js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	return nil
}
