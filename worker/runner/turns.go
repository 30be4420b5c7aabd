package runner

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/schema"
)

// turns takes turns between orgs when claiming from a Queue (TASKS, or JOBS
// for planning). Each org has its own consumer (Queue.Consumer); a slot
// that is free pulls one message from the next org among orgs with
// messages waiting, fewer than the queue's per-org limit in flight here,
// and served by this worker (tenant affinity, peers.go). A 100,000-task
// backlog of one org — or forty of its jobs — therefore delays another
// org's work by at most one turn.
type turns struct {
	cfg    *Config
	log    *slog.Logger
	q      *Queue
	stream jetstream.Stream
	peers  *peers // nil: every org is served here (NoAffinity)
	// hold, when set, keeps an org's messages waiting (planning pauses for
	// an org whose tasks fill more than its share of TASKS).
	hold func(org string) bool
	mu   sync.Mutex
	cons map[string]jetstream.Consumer
	// pending is an org's task count from the last discovery, zeroed when a
	// pull finds nothing.
	pending  map[string]uint64
	inflight map[string]int
	lastWake map[string]time.Time // when the org's last wake signal came
	// served is each org's virtual time: messages handed to it here. The
	// pickable org with the least goes next (start-time fair queuing, as
	// Linux's CFS picks the least vruntime); vtime is the tag of the last
	// pick, which only grows.
	served map[string]int64
	vtime  int64
	// lastCredited: the last pick used an org's sleeper credit.
	lastCredited bool
	ranks        map[string]rankEntry // this worker's rank per org, the one cache of it (rank)
	candidates   []int                // scratch: indexes into order of the orgs pick may choose
	order        []string
	next         int
	wake         chan struct{}
	refresh      chan struct{}
}

func newTurns(r *Runner, q *Queue, stream jetstream.Stream, p *peers) *turns {
	return &turns{cfg: &r.cfg, log: r.log, q: q, stream: stream, peers: p, cons: map[string]jetstream.Consumer{}, pending: map[string]uint64{},
		inflight: map[string]int{}, lastWake: map[string]time.Time{}, served: map[string]int64{}, ranks: map[string]rankEntry{}, wake: make(chan struct{}, 1), refresh: make(chan struct{}, 1)}
}

// discover refreshes which orgs have tasks, creating their consumers on first
// sight, every DiscoverEvery until ctx ends. Between refreshes, the
// publishers' wake signals (schema.WakeSubject: one small message per batch
// of an org's tasks, not the tasks themselves) wake a free slot at once, so a
// new task waits for no timer.
func (t *turns) discover(ctx context.Context) {
	sub, err := t.cfg.JS.Conn().Subscribe(schema.AllWakes(t.q.Kind), func(m *nats.Msg) {
		org, ok := schema.OrgOfWakeSubject(t.q.Kind, m.Subject)
		n, err := strconv.ParseUint(string(m.Data), 10, 32)
		if !ok || err != nil {
			return
		}
		t.mu.Lock()
		_, known := t.cons[org]
		if known {
			t.pending[org] += n
		}
		t.lastWake[org] = time.Now()
		// An org this worker does not know yet: look for its consumer now
		// only if this worker would serve it (or help it); the others'
		// wake-ups must not set every worker's discovery running.
		look := !known && t.mayServe(org, n)
		t.mu.Unlock()
		signal(t.wake)
		if look {
			signal(t.refresh)
		}
	})
	if err != nil {
		t.log.Warn("no wake subscription; relying on discovery alone", "queue", t.q.Kind, "error", err)
	} else {
		defer func() { _ = sub.Unsubscribe() }()
	}
	peersChanged := t.peers.changes()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-t.refresh:
		case <-peersChanged: // orgs may have moved to or from this worker
		}
		if err := t.discoverOnce(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("discovery failed", "queue", t.q.Kind, "error", err)
		}
		timer.Reset(t.cfg.DiscoverEvery)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (t *turns) discoverOnce(ctx context.Context) error {
	info, err := t.stream.Info(ctx, jetstream.WithSubjectFilter(t.q.Filter))
	if err != nil {
		return err
	}
	counts := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		if org, ok := t.q.OrgOf(subj); ok {
			counts[org] += n
		}
	}
	// New orgs' consumers are looked up or made side by side: a burst of a
	// thousand new tenants is a thousand JetStream API calls, minutes one at
	// a time. Each org is pickable as soon as its consumer is there.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(discoverConcurrency)
	for org, n := range counts {
		t.mu.Lock()
		_, known := t.cons[org]
		mine := !known && t.mayServe(org, n)
		t.mu.Unlock()
		if !mine {
			continue // known already, or another worker serves it (affinity.go)
		}
		g.Go(func() error {
			c, err := t.consumer(gctx, org)
			if err != nil {
				return err
			}
			t.mu.Lock()
			t.cons[org] = c
			at, _ := slices.BinarySearch(t.order, org)
			t.order = slices.Insert(t.order, at, org)
			if at < t.next {
				t.next++ // the turn stays where it was
			}
			t.pending[org] = n
			t.mu.Unlock()
			signal(t.wake)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	t.mu.Lock()
	t.pending = counts
	t.mu.Unlock()
	signal(t.wake)
	return nil
}

// discoverConcurrency is how many orgs' consumers discovery looks up or
// makes at once.
const discoverConcurrency = 8

// consumer returns org's durable consumer of the queue, made if missing.
func (t *turns) consumer(ctx context.Context, org string) (jetstream.Consumer, error) {
	want := t.q.Consumer(org)
	c, err := t.cfg.JS.Consumer(ctx, t.q.Stream, want.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		c, err = t.cfg.JS.CreateConsumer(ctx, t.q.Stream, want)
		if errors.Is(err, jetstream.ErrConsumerExists) {
			c, err = t.cfg.JS.Consumer(ctx, t.q.Stream, want.Durable) // another worker was first
		}
	case err == nil && t.q.UpdateConsumers:
		c, err = t.cfg.JS.CreateOrUpdateConsumer(ctx, t.q.Stream, want)
	case err == nil:
		if d := schema.ConsumerDrift(c.CachedInfo().Config, want); d != nil {
			t.log.Warn("an org's consumer was made with other settings; it is used as it is", "stream", t.q.Stream, "org", org, "drift", d.Error())
		}
	}
	return c, err
}

// pick returns the next org to pull from, counting it in flight, or "".
func (t *turns) pick() (string, jetstream.Consumer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	share := t.share()
	org := t.fairest(share)
	if org == "" {
		org = t.neediest(share)
	}
	if org == "" {
		return "", nil
	}
	t.inflight[org]++
	return org, t.cons[org]
}

// share is one org's fair share of the slots, after gathering the orgs
// pick may choose (t.candidates: those this worker serves with messages
// waiting and not held; held orgs count as waiting). With many orgs waiting
// each gets an equal part (at least one slot), never more than PerOrg — so
// a thousand small tenants are not left with the quarter of the slots a big
// backlog does not hold (t.mu held).
func (t *turns) share() int {
	t.candidates = t.candidates[:0]
	waitingOrgs := 0
	for i := 0; i < len(t.order); i++ {
		at := (t.next + i) % len(t.order)
		org := t.order[at]
		if t.pending[org] == 0 || !t.serves(org) {
			continue
		}
		waitingOrgs++
		if t.hold == nil || !t.hold(org) {
			t.candidates = append(t.candidates, at)
		}
	}
	share := t.q.PerOrg
	if share > 1 && waitingOrgs > 0 {
		share = max(1, min(share, t.q.Slots/waitingOrgs))
	}
	return share
}

// fairest picks, among the candidates under their share, the org served
// least, ties in turn (start-time fair queuing; Linux's CFS picks the least
// vruntime the same way), and advances the turn (t.mu held). An org that
// starts waiting is placed one message before the others (CFS's sleeper
// credit: its tag is lifted to vtime-1, never further), so a small tenant's
// first message is claimed at the next free slot rather than after a turn
// of every other org — with thousands of orgs a turn is seconds — while an
// org that keeps waiting gets its share, no more. The credit is not given
// twice in a row: right after a pick that used it, the orgs that wait all
// along go first, so orgs that keep starting to wait (a flood of one-file
// jobs) take at most every other pick and cannot starve the others.
func (t *turns) fairest(share int) string {
	chosen, chosenAt, chosenTag, credited := "", -1, int64(0), false
	for _, at := range t.candidates {
		org := t.order[at]
		if t.inflight[org] >= share {
			continue
		}
		tag, starts := t.served[org], t.served[org] < t.vtime
		if starts {
			tag = t.vtime - 1
			if t.lastCredited {
				tag = math.MaxInt64
			}
		}
		if chosen == "" || tag < chosenTag {
			chosen, chosenAt, chosenTag, credited = org, at, tag, starts
		}
	}
	if chosen == "" {
		return ""
	}
	if credited {
		t.served[chosen] = t.vtime - 1
	}
	t.next = (chosenAt + 1) % len(t.order)
	t.lastCredited = credited
	t.vtime = max(t.vtime, t.served[chosen])
	t.served[chosen]++
	return chosen
}

// neediest is the org an idle worker helps when none of its own orgs wait:
// one with a real backlog (StealAbove), so capacity is not left idle — the
// one it ranks highest for, so each org's helpers are the same few workers
// (each helper assumes the org's role once per job) rather than all of them
// (t.mu held).
func (t *turns) neediest(share int) string {
	best, bestRank := "", -1
	for i := 0; i < len(t.order); i++ {
		org := t.order[(t.next+i)%len(t.order)]
		if t.pending[org] < uint64(t.cfg.StealAbove) || t.inflight[org] >= share || (t.hold != nil && t.hold(org)) {
			continue
		}
		if r := t.rank(org); bestRank < 0 || r < bestRank {
			best, bestRank = org, r
		}
	}
	return best
}

// serves is peers.serves with the org's last seen backlog and the rank
// cached here (t.mu held): pick asks for every org on every claim.
func (t *turns) serves(org string) bool {
	return t.peers == nil || servedAt(t.rank(org), t.pending[org], t.cfg.SpillEvery)
}

// mayServe reports whether this worker serves org with pending waiting, or
// would help it (StealAbove) (t.mu held).
func (t *turns) mayServe(org string, pending uint64) bool {
	return t.peers == nil || servedAt(t.rank(org), pending, t.cfg.SpillEvery) || pending >= uint64(t.cfg.StealAbove)
}

// rank is the fleet's rank of this worker for org (0 without affinity),
// cached until the live workers change (t.mu held).
func (t *turns) rank(org string) int {
	if t.peers == nil {
		return 0
	}
	gen := t.peers.gen.Load()
	if r, ok := t.ranks[org]; ok && r.gen == gen {
		return r.rank
	}
	r := rankEntry{gen: gen, rank: t.peers.rank(org)}
	t.ranks[org] = r
	return r.rank
}

// waiting is how many of org's messages this worker last saw waiting.
func (t *turns) waiting(org string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending[org]
}

func (t *turns) done(org string, empty bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inflight[org]--
	if empty {
		t.pending[org] = 0
		// A pull right after a publish can find nothing: the consumer
		// learns of a stored message a moment later. After a recent wake,
		// look again shortly rather than wait for the next discovery.
		if time.Since(t.lastWake[org]) < time.Second {
			time.AfterFunc(50*time.Millisecond, func() { signal(t.refresh) })
		}
	} else {
		signal(t.wake) // another slot may now take this org's next task
	}
}

// Fairness metrics, read at scrape time: per-org series would be one per
// tenant per worker, so the shape of the turn-taking is reported instead.
var (
	fairOrgsWithTasks = prometheus.NewDesc("stevedore_fair_orgs_with_tasks", "Orgs this worker last saw with tasks waiting.", nil, nil)
	fairOrgsInFlight  = prometheus.NewDesc("stevedore_fair_orgs_in_flight", "Orgs with at least one task in flight in this worker.", nil, nil)
	fairBusiestShare  = prometheus.NewDesc("stevedore_fair_busiest_org_share",
		"Share of this worker's tasks in flight held by its busiest org (0–1); at most the tenant concurrency's share while others wait.", nil, nil)
)

func (t *turns) Describe(ch chan<- *prometheus.Desc) {
	ch <- fairOrgsWithTasks
	ch <- fairOrgsInFlight
	ch <- fairBusiestShare
}

func (t *turns) Collect(ch chan<- prometheus.Metric) {
	t.mu.Lock()
	waiting, inFlight, total, busiest := 0, 0, 0, 0
	for _, n := range t.pending {
		if n > 0 {
			waiting++
		}
	}
	for _, n := range t.inflight {
		if n > 0 {
			inFlight++
			total += n
			busiest = max(busiest, n)
		}
	}
	t.mu.Unlock()
	share := 0.0
	if total > 0 {
		share = float64(busiest) / float64(total)
	}
	ch <- prometheus.MustNewConstMetric(fairOrgsWithTasks, prometheus.GaugeValue, float64(waiting))
	ch <- prometheus.MustNewConstMetric(fairOrgsInFlight, prometheus.GaugeValue, float64(inFlight))
	ch <- prometheus.MustNewConstMetric(fairBusiestShare, prometheus.GaugeValue, share)
}

// serveQueue runs the queue's slots: claim loops over its orgs' consumers.
func (r *Runner) serveQueue(claimCtx, work context.Context, t *turns) error {
	go t.discover(claimCtx)
	var wg sync.WaitGroup
	for i := 0; i < t.q.Slots; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pl := newPuller(r.cfg.JS, pullWait)
			defer pl.close()
			for claimCtx.Err() == nil {
				if g := r.cfg.Gate; g != nil && g.Shut() { // downstream is full: nothing new until it makes room
					_ = g.WaitOpen(claimCtx)
					continue
				}
				org, cons := t.pick()
				if cons == nil {
					select {
					case <-claimCtx.Done():
					case <-t.wake:
					case <-time.After(r.cfg.DiscoverEvery):
					}
					continue
				}
				pulled := time.Now()
				msg, err := pl.pull(claimCtx, t.q.Stream, cons.CachedInfo().Name)
				if err != nil {
					t.done(org, true)
					if consumerGone(err) {
						// Removed by nats-server after an idle hour
						// (Topology.OrgConsumerIdle): forget it, and let
						// discovery make it again.
						t.forget(org)
						signal(t.refresh)
						continue
					}
					if claimCtx.Err() == nil && !errors.Is(err, jetstream.ErrNoMessages) {
						r.log.Warn("claim failed", "stage", t.q.Handler.Name(), "org", org, "error", err)
						sleep(claimCtx, time.Second)
					}
					continue
				}
				r.m.claim.WithLabelValues(t.q.Handler.Name()).Observe(time.Since(pulled).Seconds())
				r.process(work, msg, t.q)
				t.done(org, false)
			}
		}()
	}
	wg.Wait()
	return nil
}

// consumerGone reports whether a pull failed because the consumer no
// longer exists.
func consumerGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, nats.ErrNoResponders)
}

// forget drops org's consumer, so the next discovery looks it up or makes
// it again.
func (t *turns) forget(org string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.cons, org)
	if at, found := slices.BinarySearch(t.order, org); found {
		t.order = slices.Delete(t.order, at, at+1)
		if at < t.next {
			t.next--
		}
		if t.next >= len(t.order) {
			t.next = 0
		}
	}
}
