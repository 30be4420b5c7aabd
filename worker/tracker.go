package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/schema"
)

// trackStage folds EVENTS; its consumer retries forever (MaxDeliver -1),
// so only an undecodable event is given up on (copied to DEAD).
func (w *Worker) trackStage() stage { return stage{name: "track"} }

// foldable is one decoded EVENTS message.
type foldable struct {
	jobID string
	seq   uint64
	event any // *schema.ObjectEvent or *schema.JobEvent
}

func decodeEvent(msg jetstream.Msg) (*foldable, error) {
	md, err := msg.Metadata()
	if err != nil {
		return nil, schema.Errorf(schema.ClassPermanent, "event metadata: %w", err) // never readable: dead-letter it, fold the rest
	}
	jobID, ev, err := schema.DecodeEvent(msg.Subject(), msg.Data())
	if err != nil {
		return nil, err
	}
	return &foldable{jobID: jobID, seq: md.Sequence.Stream, event: ev}, nil
}

// serveTracker folds EVENTS into job records. The tracker consumer has a
// pinned priority group: one worker of the fleet pulls at a time, in stream
// order, batches of up to TrackBatch events; each job in a batch costs one
// read and one compare-and-set, trackConcurrency jobs at a time. The whole batch is acknowledged at once
// (AckAll). Exactness: events are folded in stream order and each job
// records the last sequence folded into it, so a batch redelivered after a
// crash skips what was already folded; and a batch is folded only when no
// other events are outstanding, so a worker pinned after a crash waits for
// the dead worker's events (redelivered first) instead of folding past them.
func (w *Worker) serveTracker(claimCtx, work context.Context, cons jetstream.Consumer) error {
	tr := newTracking()
	for claimCtx.Err() == nil {
		// A short wait: Fetch returns when the batch is full or the wait is over.
		batch, err := cons.Fetch(w.cfg.TrackBatch, jetstream.FetchMaxWait(200*time.Millisecond), jetstream.FetchPriorityGroup(schema.TrackerGroup))
		if err != nil {
			if claimCtx.Err() == nil {
				w.log.Warn("claim failed", "stage", "track", "error", err)
				sleep(claimCtx, time.Second)
			}
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if len(msgs) == 0 {
			continue
		}
		// Redelivered events may come in any order: fold only the run of
		// consecutive sequences that starts right after the acknowledged
		// floor, and hand the rest back. After a crash the dead worker's
		// events are redelivered once its AckWait runs out; folding newer
		// events first would make the per-job sequence guard skip them.
		msgs, rest := w.inOrder(claimCtx, cons, msgs, tr.acked)
		for _, m := range rest {
			_ = m.Nak()
		}
		if len(msgs) == 0 {
			sleep(claimCtx, 200*time.Millisecond)
			continue
		}
		w.m.claimed.WithLabelValues("track").Add(float64(len(msgs)))
		start := time.Now()
		err = fault("before_fold", "tracker")
		if err == nil {
			stopBeats := heartbeats(msgs, w.trackerAckWait()/3)
			err = w.foldBatch(work, tr, msgs)
			stopBeats()
			w.m.duration.WithLabelValues("track").Observe(time.Since(start).Seconds())
		}
		if err == nil {
			err = fault("before_ack", "tracker")
		}
		if errors.Is(err, errCrashed) {
			// A simulated crash (test builds): the batch stays unsettled, as
			// after kill -9, and this tracker is gone long enough for the
			// pin to move on.
			sleep(claimCtx, 4*time.Second)
			continue
		}
		if err != nil {
			// Hand the batch back at once: redeliveries come before newer
			// events, so folding stays in stream order; then back off.
			w.log.Warn("fold failed; the batch is redelivered", "events", len(msgs), "error", err)
			for _, m := range msgs {
				_ = m.Nak()
			}
			w.m.settled.WithLabelValues("track", "nak", string(classify(err).Class)).Add(float64(len(msgs)))
			tr.acked = 0
			sleep(claimCtx, time.Second)
			continue
		}
		if err := msgs[len(msgs)-1].Ack(); err != nil { // AckAll: every earlier event too
			w.log.Warn("ack failed; the batch will be redelivered and skipped", "error", err)
			tr.acked = 0
		} else if md, err := msgs[len(msgs)-1].Metadata(); err == nil {
			tr.acked = md.Sequence.Stream
		}
		w.m.settled.WithLabelValues("track", "ack", "").Add(float64(len(msgs)))
	}
	return nil
}

// tracking is what one tracker keeps between batches.
type tracking struct {
	// acked is the last event this tracker acknowledged (0: unknown): a
	// batch that continues it needs no look at the consumer's floor.
	acked uint64
	// records holds the job records this tracker last wrote, with their
	// revisions: folding a job's next events needs no read while nobody
	// else wrote it (the compare-and-set still checks; on a mismatch the
	// record is read again).
	records *lru.LRU[string, record]
}

func newTracking() *tracking {
	return &tracking{records: lru.NewLRU[string, record](trackCacheSize, nil, trackCacheIdle)}
}

type record struct {
	data     []byte
	revision uint64
}

const (
	trackCacheSize = 10_000
	trackCacheIdle = 10 * time.Minute
)

// trackerAckWait is the tracker consumer's ack wait (schema.Topology.Consumers).
func (w *Worker) trackerAckWait() time.Duration {
	return min(w.cfg.Topology.WithDefaults().AckWait, schema.TrackerAckWait)
}

// heartbeats tells JetStream every interval that msgs are still being
// worked on, until the returned stop is called.
func heartbeats(msgs []jetstream.Msg, interval time.Duration) (stop func()) {
	// A timer that re-arms itself, not a goroutine with a ticker: a task of
	// a few milliseconds never wakes anything. stop waits for a beat being
	// sent, so no InProgress follows the message's settlement.
	var mu sync.Mutex
	stopped := false
	mu.Lock()
	defer mu.Unlock()
	var t *time.Timer
	t = time.AfterFunc(interval, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		for _, m := range msgs {
			_ = m.InProgress()
		}
		t.Reset(interval)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// inOrder sorts msgs by stream sequence and splits them into the run that
// continues the consumer's acknowledged floor (or starts at the stream's
// first message, when the floor aged out) and the rest.
func (w *Worker) inOrder(ctx context.Context, cons jetstream.Consumer, msgs []jetstream.Msg, acked uint64) (run, rest []jetstream.Msg) {
	seqs := make(map[jetstream.Msg]uint64, len(msgs))
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return nil, msgs
		}
		seqs[m] = md.Sequence.Stream
	}
	slices.SortFunc(msgs, func(a, b jetstream.Msg) int { return cmp.Compare(seqs[a], seqs[b]) })
	if acked == 0 || seqs[msgs[0]] != acked+1 {
		if !w.continuesFloor(ctx, cons, seqs[msgs[0]]) {
			return nil, msgs
		}
	}
	n := 1
	for n < len(msgs) && seqs[msgs[n]] == seqs[msgs[n-1]]+1 {
		n++
	}
	return msgs[:n], msgs[n:]
}

// continuesFloor reports whether first is the event right after the
// consumer's acknowledged floor (or the stream's first, when the floor aged
// out).
func (w *Worker) continuesFloor(ctx context.Context, cons jetstream.Consumer, first uint64) bool {
	info, err := cons.Info(ctx)
	if err != nil {
		return false
	}
	next := info.AckFloor.Stream + 1
	if first == next {
		return true
	}
	stream, err := w.cfg.JS.Stream(ctx, schema.StreamEvents)
	if err != nil {
		return false
	}
	si, err := stream.Info(ctx)
	return err == nil && first == max(next, si.State.FirstSeq)
}

// foldBatch folds msgs (in stream order) into their jobs.
func (w *Worker) foldBatch(ctx context.Context, tr *tracking, msgs []jetstream.Msg) error {
	byJob := map[string][]*foldable{}
	var order []string
	for _, m := range msgs {
		f, err := decodeEvent(m)
		if err != nil {
			fl := classify(err)
			if fate(fl, false, 1, w.trackStage().maxDeliver) != actDead {
				return err // the whole batch is handed back
			}
			// Unreadable: keep a copy in DEAD and fold the rest. If the copy
			// cannot be published, the whole batch is handed back.
			if perr := w.giveUp(ctx, w.trackStage(), m, fl, true); perr != nil {
				return fmt.Errorf("dead-letter an unreadable event: %w", perr)
			}
			w.m.settled.WithLabelValues("track", actDead.String(), string(fl.Class)).Inc()
			continue
		}
		if f.jobID == "" {
			continue // from an S3 notification: no job to fold into
		}
		if _, ok := byJob[f.jobID]; !ok {
			order = append(order, f.jobID)
		}
		byJob[f.jobID] = append(byJob[f.jobID], f)
	}
	// Jobs are separate records: fold them side by side. A batch of
	// thousands of small jobs' events costs a few round trips, not two per
	// job in a row (1,000 busy tenants' jobs put the tracker minutes behind
	// when it folded them one by one). If one fails the whole batch is
	// handed back; the jobs already folded skip those events next time.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(trackConcurrency)
	for _, jobID := range order {
		g.Go(func() error { return w.foldJob(gctx, tr, jobID, byJob[jobID]) })
	}
	return g.Wait()
}

// trackConcurrency is how many job records a batch folds at once.
const trackConcurrency = 64

// foldJob applies one job's events (in stream order) with compare-and-set,
// skipping those at or below the job's last folded sequence.
func (w *Worker) foldJob(ctx context.Context, tr *tracking, jobID string, evs []*foldable) error {
	for attempt := 0; attempt < 5; attempt++ {
		cur, cached := tr.records.Get(jobID)
		if !cached || attempt > 0 {
			e, err := w.jobs.Get(ctx, jobID)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				w.log.Warn("events for unknown job", "job_id", jobID, "events", len(evs))
				tr.records.Remove(jobID)
				return nil
			}
			if err != nil {
				return fmt.Errorf("load job: %w", err)
			}
			cur = record{data: e.Value(), revision: e.Revision()}
		}
		var s schema.JobStatus
		if err := json.Unmarshal(cur.data, &s); err != nil {
			return schema.Errorf(schema.ClassPermanent, "job %s status unreadable: %w", jobID, err)
		}
		changed, wasFinal := false, s.Final()
		now := time.Now().UTC()
		for _, f := range evs {
			if s.Apply(f.seq, f.event, now) {
				changed = true
			}
		}
		if !changed {
			return nil // folded before a crash; do not count twice
		}
		data, err := json.Marshal(&s)
		if err != nil {
			return err
		}
		rev, err := w.jobs.Update(ctx, jobID, data, cur.revision)
		if err != nil {
			// Lost a race with another writer (the producer's cancel, or
			// another tracker), or the cached copy was old: read it again.
			tr.records.Remove(jobID)
			continue
		}
		if s.Final() {
			tr.records.Remove(jobID) // no more events to fold
		} else {
			tr.records.Add(jobID, record{data: data, revision: rev})
		}
		if !wasFinal && s.Final() {
			w.m.jobsFinished.WithLabelValues(s.Status).Inc()
			w.m.jobDuration.WithLabelValues(s.Status).Observe(now.Sub(s.CreatedAt).Seconds())
		}
		return nil
	}
	return fmt.Errorf("update job %s: too many concurrent updates", jobID)
}
