package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
// read and one compare-and-set. The whole batch is acknowledged at once
// (AckAll). Exactness: events are folded in stream order and each job
// records the last sequence folded into it, so a batch redelivered after a
// crash skips what was already folded; and a batch is folded only when no
// other events are outstanding, so a worker pinned after a crash waits for
// the dead worker's events (redelivered first) instead of folding past them.
func (w *Worker) serveTracker(claimCtx, work context.Context, cons jetstream.Consumer) error {
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
		msgs, rest := w.inOrder(claimCtx, cons, msgs)
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
			err = w.foldBatch(work, msgs)
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
			w.m.settled.WithLabelValues("track", "nak", string(classify(err).class)).Add(float64(len(msgs)))
			sleep(claimCtx, time.Second)
			continue
		}
		if err := msgs[len(msgs)-1].Ack(); err != nil { // AckAll: every earlier event too
			w.log.Warn("ack failed; the batch will be redelivered and skipped", "error", err)
		}
		w.m.settled.WithLabelValues("track", "ack", "").Add(float64(len(msgs)))
	}
	return nil
}

// trackerAckWait is the tracker consumer's ack wait (schema.Topology.Consumers).
func (w *Worker) trackerAckWait() time.Duration {
	return min(w.cfg.Topology.WithDefaults().AckWait, schema.TrackerAckWait)
}

// heartbeats tells JetStream every interval that msgs are still being
// worked on, until the returned stop is called.
func heartbeats(msgs []jetstream.Msg, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range msgs {
					_ = m.InProgress()
				}
			}
		}
	}()
	return func() { close(done) }
}

// inOrder sorts msgs by stream sequence and splits them into the run that
// continues the consumer's acknowledged floor (or starts at the stream's
// first message, when the floor aged out) and the rest.
func (w *Worker) inOrder(ctx context.Context, cons jetstream.Consumer, msgs []jetstream.Msg) (run, rest []jetstream.Msg) {
	seqs := make(map[jetstream.Msg]uint64, len(msgs))
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return nil, msgs
		}
		seqs[m] = md.Sequence.Stream
	}
	slices.SortFunc(msgs, func(a, b jetstream.Msg) int { return cmp.Compare(seqs[a], seqs[b]) })
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, msgs
	}
	next := info.AckFloor.Stream + 1
	if seqs[msgs[0]] != next {
		stream, err := w.cfg.JS.Stream(ctx, schema.StreamEvents)
		if err != nil {
			return nil, msgs
		}
		si, err := stream.Info(ctx)
		if err != nil || seqs[msgs[0]] != max(next, si.State.FirstSeq) {
			return nil, msgs
		}
	}
	n := 1
	for n < len(msgs) && seqs[msgs[n]] == seqs[msgs[n-1]]+1 {
		n++
	}
	return msgs[:n], msgs[n:]
}

// foldBatch folds msgs (in stream order) into their jobs.
func (w *Worker) foldBatch(ctx context.Context, msgs []jetstream.Msg) error {
	byJob := map[string][]*foldable{}
	var order []string
	for _, m := range msgs {
		f, err := decodeEvent(m)
		if err != nil {
			fl := classify(err)
			if fate(err, false, fl, 1, w.trackStage().maxDeliver) != actDead {
				return err // the whole batch is handed back
			}
			// Unreadable: keep a copy in DEAD and fold the rest. If the copy
			// cannot be published, the whole batch is handed back.
			if perr := w.giveUp(ctx, w.trackStage(), m, fl, true); perr != nil {
				return fmt.Errorf("dead-letter an unreadable event: %w", perr)
			}
			w.m.settled.WithLabelValues("track", actDead.String(), string(fl.class)).Inc()
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
	for _, jobID := range order {
		if err := w.foldJob(ctx, jobID, byJob[jobID]); err != nil {
			return err
		}
	}
	return nil
}

// foldJob applies one job's events (in stream order) with compare-and-set,
// skipping those at or below the job's last folded sequence.
func (w *Worker) foldJob(ctx context.Context, jobID string, evs []*foldable) error {
	for attempt := 0; attempt < 5; attempt++ {
		e, err := w.jobs.Get(ctx, jobID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			w.log.Warn("events for unknown job", "job_id", jobID, "events", len(evs))
			return nil
		}
		if err != nil {
			return fmt.Errorf("load job: %w", err)
		}
		var s schema.JobStatus
		if err := json.Unmarshal(e.Value(), &s); err != nil {
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
		if _, err := w.jobs.Update(ctx, jobID, data, e.Revision()); err != nil {
			continue // lost a race with another writer (the producer); re-read
		}
		if !wasFinal && s.Final() {
			w.m.jobsFinished.WithLabelValues(s.Status).Inc()
			w.m.jobDuration.WithLabelValues(s.Status).Observe(now.Sub(s.CreatedAt).Seconds())
		}
		return nil
	}
	return fmt.Errorf("update job %s: too many concurrent updates", jobID)
}
