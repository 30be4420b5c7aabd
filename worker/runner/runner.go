// Package runner claims messages and settles them; it knows nothing of S3,
// chunks or job records. It claims from per-org work queues (one durable
// consumer per org, turns taken fairly between orgs, each org served by a
// few workers of the fleet: turns.go, peers.go), runs a Handler on each
// message with a deadline and InProgress heartbeats (process.go), and
// decides and carries out its fate: ack, retry with backoff, hand back on
// shutdown, or give up with a dead letter and the handler's outcome
// (settle.go). Messages that reached MaxDeliver without being settled are
// moved to DEAD (maxdeliver.go). One stream can also be consumed in order, a
// batch at a time (ordered.go: the tracker).
//
// Reading order: Run (this file) → serveQueue (turns.go) → process
// (process.go) → settle (settle.go).
package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/schema"
)

// A Handler handles the messages of one queue. Handle returns nil or an
// error, never settles the message itself: the runner classifies the error
// (Config.Classify) and decides.
type Handler interface {
	// Name labels the queue's metrics and logs ("plan", "task").
	Name() string
	// Handle processes one message.
	Handle(ctx context.Context, msg jetstream.Msg) error
	// GiveUp returns the outcome to publish, together with the dead letter,
	// when a message is given up on (the planner's failed job, the indexer's
	// failed object), so job counters stay exact. It may return nothing (an
	// undecodable payload has no job to tell). An error (a status it must
	// record could not be written) keeps the message: it is retried with
	// backoff, or, past MaxDeliver, left in its queue for the advisory.
	GiveUp(data []byte, f *schema.ClassError) ([]schema.Out, error)
}

// GaveUpper is a Handler that wants to know when its give-up outcome is
// durable (for its metrics).
type GaveUpper interface {
	GaveUp()
}

// Queue is a work-queue stream claimed per org, and its handler.
type Queue struct {
	Kind     string                                    // "tasks", "jobs": the wake signals' kind (schema.WakeSubject)
	Stream   string                                    // the stream
	Filter   string                                    // every org's subjects
	OrgOf    func(subject string) (string, bool)       // the org of one of them
	Consumer func(org string) jetstream.ConsumerConfig // the org's durable consumer
	PerOrg   int                                       // one org's messages in flight in this worker, at most
	Slots    int                                       // messages in flight in this worker, at most
	// MaxDeliver is the consumers' MaxDeliver (≤ 0: unlimited): the last
	// delivery of a retryable failure is given up on.
	MaxDeliver int
	// HoldOn and HoldAbove: an org's messages wait while it has HoldAbove or
	// more messages waiting in the queue of kind HoldOn (planning pauses
	// for an org whose tasks fill its share of TASKS); 0: never.
	HoldOn    string
	HoldAbove int
	// UpdateConsumers updates an org's existing consumer to Consumer(org)
	// (schema.Topology.Update); otherwise a drift is logged and it is used
	// as it is.
	UpdateConsumers bool
	// Report exports the queue's turn-taking (stevedore_fair_*).
	Report bool
	// Timeout bounds the handling of one of the queue's messages; 0:
	// Config.MessageTimeout.
	Timeout time.Duration
	Handler Handler
}

// Gate pauses claiming while it is shut (CHUNKS full).
type Gate interface {
	Shut() bool
	WaitOpen(ctx context.Context) error
}

// Defaults of Config.
const (
	DiscoverEveryDefault  = 250 * time.Millisecond
	SpillEveryDefault     = 64
	StealAboveDefault     = 16
	MessageTimeoutDefault = 5 * time.Minute
	HeartbeatDefault      = 15 * time.Second
	ShutdownGraceDefault  = 20 * time.Second
	NameDefault           = "worker"
)

// Config configures a Runner.
type Config struct {
	JS     jetstream.JetStream // required
	Queues []Queue
	// Ordered, when set, is consumed in stream order a batch at a time.
	Ordered *Ordered
	// Classify gives a handler's error its class, once; nil: the error's
	// own class (schema.ClassError), ErrPermanent as permanent, anything
	// else transient.
	Classify func(error) *schema.ClassError
	// Publish publishes give-up outcomes and dead letters and waits for
	// their acknowledgements; nil: schema.PublishAll on JS.
	Publish func(ctx context.Context, msgs []schema.Out) error
	// Gate, when set, pauses claiming while it is shut.
	Gate Gate
	// DiscoverEvery is how often the runner looks for orgs with messages; default 250 ms.
	DiscoverEvery time.Duration
	// SpillEvery: an org is served by one worker (by rendezvous hashing
	// over the live workers) plus one more per SpillEvery of its messages
	// waiting; default 64. See peers.go.
	SpillEvery int
	// StealAbove: a worker with nothing of its own orgs waiting helps
	// other orgs that have at least this many messages waiting; default 16.
	StealAbove int
	// NoAffinity makes every worker serve every org (AssumeRole calls grow
	// with the workers); for measurements.
	NoAffinity bool
	// MessageTimeout bounds the handling of one message; default 5 minutes.
	MessageTimeout time.Duration
	// Heartbeat is the InProgress interval while a message is handled; default 15 s.
	Heartbeat time.Duration
	// ShutdownGrace is how long in-flight work may finish after Run's context
	// is cancelled before it is handed back; default 20 s.
	ShutdownGrace time.Duration
	// Name names this worker in its lease and logs; default "worker".
	Name string
	// Registerer receives the runner's metrics; nil means none.
	Registerer prometheus.Registerer
	// Logger; nil discards.
	Logger *slog.Logger
}

func (cfg Config) withDefaults() Config {
	cfg.DiscoverEvery = cmp.Or(cfg.DiscoverEvery, DiscoverEveryDefault)
	cfg.SpillEvery = cmp.Or(cfg.SpillEvery, SpillEveryDefault)
	cfg.StealAbove = cmp.Or(cfg.StealAbove, StealAboveDefault)
	cfg.MessageTimeout = cmp.Or(cfg.MessageTimeout, MessageTimeoutDefault)
	cfg.Heartbeat = cmp.Or(cfg.Heartbeat, HeartbeatDefault)
	cfg.ShutdownGrace = cmp.Or(cfg.ShutdownGrace, ShutdownGraceDefault)
	cfg.Name = cmp.Or(cfg.Name, NameDefault)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Classify == nil {
		cfg.Classify = Classify
	}
	if cfg.Publish == nil {
		js := cfg.JS
		cfg.Publish = func(ctx context.Context, msgs []schema.Out) error {
			_, err := schema.PublishAll(ctx, js, msgs)
			return err
		}
	}
	return cfg
}

// Runner claims, handles and settles messages. Create with New, run with Run.
type Runner struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	byStream map[string]*Queue     // the MaxDeliver advisories' handler, by stream
	live     atomic.Pointer[peers] // the live workers as Run sees them (nil: NoAffinity, or not running)
}

// New validates cfg and returns a Runner.
func New(cfg Config) (*Runner, error) {
	if cfg.JS == nil {
		return nil, errors.New("runner: JS is required")
	}
	cfg = cfg.withDefaults()
	r := &Runner{cfg: cfg, log: cfg.Logger, m: newMetrics(cfg.Registerer), byStream: map[string]*Queue{}}
	for i := range cfg.Queues {
		q := &cfg.Queues[i]
		if q.Handler == nil || q.Stream == "" || q.Slots <= 0 || q.PerOrg <= 0 {
			return nil, fmt.Errorf("runner: queue %q needs a handler, a stream, slots and a per-org limit", q.Kind)
		}
		r.byStream[q.Stream] = q
		r.m.known(q.Handler.Name())
	}
	if cfg.Ordered != nil {
		r.m.known(cfg.Ordered.Handler.Name())
	}
	return r, nil
}

// errShutdown is the cause attached to in-flight work cancelled because the
// grace period after shutdown ran out: such messages are handed back at once.
var errShutdown = errors.New("worker shutting down")

// Run claims and handles messages until ctx is cancelled, then stops
// claiming, lets in-flight work finish for up to ShutdownGrace, and hands
// back what is left. It returns nil after a clean shutdown.
func (r *Runner) Run(ctx context.Context) error {
	queues, ordered, err := r.bind(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started: a clean shutdown
		}
		return err
	}
	work, stop := r.graceful(ctx)
	defer stop(nil)
	g := new(errgroup.Group)
	for _, t := range queues {
		if t.q.Report && r.cfg.Registerer != nil {
			if err := r.cfg.Registerer.Register(t); err != nil {
				r.log.Warn("fairness metrics not registered", "error", err)
			} else {
				defer r.cfg.Registerer.Unregister(t)
			}
		}
		g.Go(func() error { return r.serveQueue(ctx, work, t) })
	}
	if o := r.cfg.Ordered; o != nil {
		g.Go(func() error { return r.serveOrdered(ctx, work, o, ordered) })
	}
	g.Go(func() error { return r.watchMaxDeliveries(ctx) })
	r.log.Info("worker started")
	err = g.Wait()
	r.log.Info("worker stopped")
	return err
}

// bind finds the queues' streams and the ordered stream's consumer, joins
// the fleet (unless NoAffinity) and returns a turn-taker per queue, holds
// wired.
func (r *Runner) bind(ctx context.Context) ([]*turns, jetstream.Consumer, error) {
	streams := make([]jetstream.Stream, len(r.cfg.Queues))
	for i, q := range r.cfg.Queues {
		stream, err := r.cfg.JS.Stream(ctx, q.Stream)
		if err != nil {
			return nil, nil, fmt.Errorf("runner: stream %s: %w", q.Stream, err)
		}
		streams[i] = stream
	}
	var ordered jetstream.Consumer
	if o := r.cfg.Ordered; o != nil {
		var err error
		if ordered, err = r.cfg.JS.Consumer(ctx, o.Stream, o.Consumer); err != nil {
			return nil, nil, fmt.Errorf("runner: consumer %s/%s: %w", o.Stream, o.Consumer, err)
		}
	}
	var p *peers
	if !r.cfg.NoAffinity {
		var err error
		if p, err = r.joinPeers(ctx); err != nil {
			return nil, nil, err
		}
		r.live.Store(p)
	}
	byKind := map[string]*turns{}
	out := make([]*turns, len(r.cfg.Queues))
	for i := range r.cfg.Queues {
		out[i] = newTurns(r, &r.cfg.Queues[i], streams[i], p)
		byKind[out[i].q.Kind] = out[i]
	}
	for _, t := range out {
		if on := byKind[t.q.HoldOn]; on != nil && t.q.HoldAbove > 0 {
			t.hold = func(org string) bool { return on.waiting(org) >= uint64(t.q.HoldAbove) }
		}
	}
	return out, ordered, nil
}

// graceful returns the context in-flight work runs in: it outlives ctx by
// ShutdownGrace, then is cancelled with errShutdown.
func (r *Runner) graceful(ctx context.Context) (context.Context, context.CancelCauseFunc) {
	work, stop := context.WithCancelCause(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-ctx.Done():
		case <-work.Done():
			return
		}
		t := time.NewTimer(r.cfg.ShutdownGrace)
		defer t.Stop()
		select {
		case <-t.C:
			stop(errShutdown)
		case <-work.Done():
		}
	}()
	return work, stop
}

// Live returns the number of live workers this one sees, or 0 without
// affinity or before Run joined the fleet.
func (r *Runner) Live() int {
	if p := r.live.Load(); p != nil {
		return p.size()
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
