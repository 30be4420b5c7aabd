package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/extract"
)

// index handles one task: assume → get → extract → chunk → count → publish
// chunks → record object state → publish the outcome event. A failure that
// will not be retried still publishes a "failed" outcome, so the job's
// counters stay exact and the job completes.
func (w *Worker) index(ctx context.Context, msg jetstream.Msg) error {
	task, err := schema.DecodeTask(msg.Data())
	if err != nil {
		return err
	}
	ev, err := w.runTask(ctx, task)
	if err != nil {
		f := classify(err)
		if !f.permanent && !w.lastDelivery(msg) {
			return f
		}
		ev = w.event(task, schema.OutcomeFailed)
		ev.Reason, ev.ErrorClass = f.err.Error(), string(f.class)
		if f.hint != "" {
			ev.Reason += " (" + f.hint + ")"
		}
		if perr := w.publishAll(ctx, []outMsg{eventMsg(ev)}); perr != nil {
			return perr
		}
		w.m.objects.WithLabelValues(string(schema.OutcomeFailed)).Inc()
		if f.class == creds.ClassNotFound {
			return nil // that object only: recorded in the job, nothing to dead-letter
		}
		return f
	}
	if err := w.publishAll(ctx, []outMsg{eventMsg(ev)}); err != nil {
		return err
	}
	w.m.objects.WithLabelValues(string(ev.Outcome)).Inc()
	if task.EventTime != nil && (ev.Outcome == schema.OutcomeIndexed || ev.Outcome == schema.OutcomeDeleted) {
		w.m.lag.WithLabelValues(string(ev.Outcome)).Observe(time.Since(*task.EventTime).Seconds())
	}
	return nil
}

// unchanged returns a "skipped" event when skip_existing is set and the stored
// state already covers this ETag (indexed, or skipped as unsupported).
func (w *Worker) unchanged(task *schema.Task, state *schema.ObjectState, etag string) *schema.ObjectEvent {
	if !task.SkipExisting || task.OverwriteExisting || state == nil || etag == "" || state.ETag != etag {
		return nil
	}
	if state.Status != "indexed" && state.Status != "skipped" {
		return nil
	}
	ev := w.event(task, schema.OutcomeSkipped)
	ev.ETag, ev.Reason = etag, "already_indexed"
	if state.Status == "skipped" {
		ev.Reason = "unchanged_since_skipped"
	}
	return ev
}

func (w *Worker) event(t *schema.Task, o schema.Outcome) *schema.ObjectEvent {
	return &schema.ObjectEvent{EventID: schema.ObjectEventID(t.JobID, t.Bucket, t.Key, t.VersionID+t.Sequencer), JobID: t.JobID,
		Org: t.Org, Collection: t.Collection, Bucket: t.Bucket, Key: t.Key, ETag: t.ETag, Outcome: o, At: time.Now().UTC()}
}

func eventMsg(ev *schema.ObjectEvent) outMsg {
	return outMsg{schema.ObjectEventSubject(ev.Org, ev.Collection), ev.EventID, ev}
}

// runTask does the work and returns the outcome event to publish.
func (w *Worker) runTask(ctx context.Context, task *schema.Task) (*schema.ObjectEvent, error) {
	log := w.log.With("org", task.Org, "collection", task.Collection, "job_id", task.JobID, "bucket", task.Bucket, "key", task.Key)
	t, err := w.resolve(ctx, task.Org, task.IntegrationID, task.Bucket, task.Key)
	if err != nil {
		return nil, err
	}
	stateKey := schema.ObjectKey(task.Org, task.Collection, task.Bucket, task.Key)
	state, rev, err := w.loadState(ctx, stateKey)
	if err != nil {
		return nil, err
	}
	// Notifications arrive out of order: an event older than the one the
	// state already reflects changes nothing.
	if task.Sequencer != "" && state != nil && state.Sequencer != "" && schema.SequencerLess(task.Sequencer, state.Sequencer) {
		ev := w.event(task, schema.OutcomeSkipped)
		ev.Reason = "stale: an event with a later sequencer for this key was already applied"
		return ev, nil
	}
	if task.Op == schema.OpDelete {
		return w.deleteObject(ctx, task, state, stateKey, rev)
	}
	// A redelivered task whose first attempt got as far as saving the state
	// reports the same outcome again (its chunks are already durable).
	if state != nil && task.JobID != "" && state.JobID == task.JobID && (task.ETag == "" || state.ETag == task.ETag) {
		switch state.Status {
		case "indexed":
			ev := w.event(task, schema.OutcomeIndexed)
			ev.ETag, ev.Chunks, ev.Tokens = state.ETag, state.Chunks, state.Tokens
			return ev, nil
		case "skipped":
			ev := w.event(task, schema.OutcomeSkipped)
			ev.ETag, ev.Reason = state.ETag, state.Reason
			return ev, nil
		}
	}
	if ev := w.unchanged(task, state, task.ETag); ev != nil {
		return ev, nil
	}
	scope := task.JobID
	if scope == "" {
		scope = "events"
	}
	req, err := w.credRequest(t, scope, task.Bucket, task.ScopePrefix)
	if err != nil {
		return nil, err
	}
	var (
		data    []byte
		etag    string
		version string
		tooBig  bool
	)
	stageStart := time.Now()
	err = w.withS3(ctx, t, req, task.Region, func(c *s3.Client) error {
		in := &s3.GetObjectInput{Bucket: aws.String(task.Bucket), Key: aws.String(task.Key), ExpectedBucketOwner: t.owner()}
		if task.VersionID != "" {
			in.VersionId = aws.String(task.VersionID)
		}
		out, err := c.GetObject(ctx, in)
		w.m.s3("get", err)
		if err != nil {
			return err
		}
		defer out.Body.Close()
		etag, version = aws.ToString(out.ETag), aws.ToString(out.VersionId)
		if aws.ToInt64(out.ContentLength) > w.cfg.MaxObjectBytes {
			tooBig = true
			return nil
		}
		data, err = io.ReadAll(io.LimitReader(out.Body, w.cfg.MaxObjectBytes+1))
		if err != nil {
			return fmt.Errorf("read body: %w", err)
		}
		if int64(len(data)) > w.cfg.MaxObjectBytes {
			tooBig, data = true, nil
		}
		return nil
	})
	w.m.stage.WithLabelValues("get").Observe(time.Since(stageStart).Seconds())
	if err != nil {
		return nil, err
	}
	w.m.bytes.Add(float64(len(data)))
	ev := w.event(task, schema.OutcomeSkipped)
	ev.ETag, ev.Bytes = etag, int64(len(data))
	if tooBig {
		ev.Reason = fmt.Sprintf("%s: object is larger than %d bytes", extract.ReasonTooLarge, w.cfg.MaxObjectBytes)
		return ev, nil
	}
	if prior := w.unchanged(task, state, etag); prior != nil {
		return prior, nil
	}
	stageStart = time.Now()
	res := extract.Text(data)
	if res.SkipReason != "" {
		ev.Reason = res.SkipReason + ": " + res.Detail
		log.Info("object skipped", "outcome", "skipped", "reason", ev.Reason)
		// Remember the version, so skip_existing does not fetch it again.
		skipped := &schema.ObjectState{Bucket: task.Bucket, Key: task.Key, ETag: etag, VersionID: version, Sequencer: task.Sequencer,
			ExtractorVersion: extract.Version, Status: "skipped", Reason: ev.Reason, JobID: task.JobID, UpdatedAt: time.Now().UTC()}
		if state != nil && state.Status == "indexed" {
			return ev, nil // keep the indexed version's state; its chunks stay valid
		}
		if err := w.saveState(ctx, stateKey, skipped, rev); err != nil {
			return nil, err
		}
		return ev, nil
	}
	pieces := w.splitter.Split(res.Text)
	w.m.stage.WithLabelValues("chunk").Observe(time.Since(stageStart).Seconds())
	versionForID := version
	if versionForID == "" {
		versionForID = etag
	}
	out := make([]outMsg, 0, len(pieces)+1)
	var tokens int64
	var chunkIDs []string
	for i, p := range pieces {
		id := schema.ChunkID(task.Org, task.Collection, task.Bucket, task.Key, versionForID, extract.Version, i)
		chunkIDs = append(chunkIDs, id)
		c := &schema.Chunk{ChunkID: id, Org: task.Org, Collection: task.Collection, JobID: task.JobID, Bucket: task.Bucket, Key: task.Key,
			VersionID: version, ETag: etag, Index: i, Total: len(pieces), ByteOffset: int64(p.Offset), Text: p.Text, TokenCount: p.Tokens,
			Encoding: w.cfg.Encoding.Name(), ExtractorVersion: extract.Version, CustomMetadata: task.CustomMetadata}
		out = append(out, outMsg{schema.ChunkSubject(task.Org, task.Collection), id, c})
		tokens += int64(p.Tokens)
	}
	// The previous version's chunks are replaced: tombstone the IDs that are
	// not reused, so downstream drops them.
	if state != nil && state.Status == "indexed" && (state.ETag != etag || state.VersionID != version || state.ExtractorVersion != extract.Version) {
		if stale := minus(state.ChunkIDs(task.Org, task.Collection), chunkIDs); len(stale) > 0 {
			ts := &schema.Tombstone{Org: task.Org, Collection: task.Collection, Bucket: task.Bucket, Key: task.Key, VersionID: state.VersionID,
				ETag: state.ETag, ChunkIDs: stale, Reason: "replaced", At: time.Now().UTC()}
			out = append(out, outMsg{schema.ChunkSubject(task.Org, task.Collection), "tomb:" + stale[0], ts})
		}
	}
	stageStart = time.Now()
	if err := w.publishAll(ctx, out); err != nil {
		return nil, err
	}
	w.m.stage.WithLabelValues("publish").Observe(time.Since(stageStart).Seconds())
	w.m.chunks.Add(float64(len(pieces)))
	w.m.tokens.Add(float64(tokens))
	newState := &schema.ObjectState{Bucket: task.Bucket, Key: task.Key, ETag: etag, VersionID: version, Sequencer: task.Sequencer,
		Chunks: len(pieces), Tokens: tokens, ExtractorVersion: extract.Version, Status: "indexed", JobID: task.JobID, UpdatedAt: time.Now().UTC()}
	if err := w.saveState(ctx, stateKey, newState, rev); err != nil {
		return nil, err
	}
	ev.Outcome, ev.Reason, ev.Chunks, ev.Tokens = schema.OutcomeIndexed, "", len(pieces), tokens
	log.Debug("object indexed", "outcome", "indexed", "chunks", len(pieces), "tokens", tokens)
	return ev, nil
}

// deleteObject publishes a tombstone for every chunk of the stored version.
func (w *Worker) deleteObject(ctx context.Context, task *schema.Task, state *schema.ObjectState, key string, rev uint64) (*schema.ObjectEvent, error) {
	ev := w.event(task, schema.OutcomeDeleted)
	if state == nil || state.Status != "indexed" {
		return ev, nil
	}
	ids := state.ChunkIDs(task.Org, task.Collection)
	ts := &schema.Tombstone{Org: task.Org, Collection: task.Collection, Bucket: task.Bucket, Key: task.Key, VersionID: state.VersionID,
		ETag: state.ETag, ChunkIDs: ids, Reason: "deleted", At: time.Now().UTC()}
	id := "tomb:" + schema.TaskMsgID(task.JobID, task.Bucket, task.Key, task.VersionID, task.Sequencer)
	if err := w.publishAll(ctx, []outMsg{{schema.ChunkSubject(task.Org, task.Collection), id, ts}}); err != nil {
		return nil, err
	}
	deleted := *state
	deleted.Status, deleted.Sequencer, deleted.UpdatedAt = "deleted", task.Sequencer, time.Now().UTC()
	if err := w.saveState(ctx, key, &deleted, rev); err != nil {
		return nil, err
	}
	return ev, nil
}

func (w *Worker) loadState(ctx context.Context, key string) (*schema.ObjectState, uint64, error) {
	e, err := w.objects.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load object state: %w", err)
	}
	var s schema.ObjectState
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return nil, e.Revision(), nil // unreadable state is replaced
	}
	return &s, e.Revision(), nil
}

// saveState writes the object state with compare-and-set against the
// revision read before the work: a concurrent writer makes this fail, and
// the redelivered task re-reads and re-decides.
func (w *Worker) saveState(ctx context.Context, key string, s *schema.ObjectState, rev uint64) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = w.objects.Create(ctx, key, data)
	} else {
		_, err = w.objects.Update(ctx, key, data, rev)
	}
	if err != nil {
		return fmt.Errorf("save object state: %w", err)
	}
	return nil
}

func minus(a, b []string) []string {
	keep := make(map[string]bool, len(b))
	for _, s := range b {
		keep[s] = true
	}
	var out []string
	for _, s := range a {
		if !keep[s] {
			out = append(out, s)
		}
	}
	return out
}
