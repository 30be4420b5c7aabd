package sweep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/worker/faults"
)

// An erase job (a document delete, a wipe, a collection delete) removes
// documents: for each, in this order,
//
//  1. its state is marked erasing by the job (compare-and-set), so that a
//     redelivered erase finds what it was doing and index tasks wait;
//  2. its chunks are tombstoned and its deleted outcome (ReasonErased) is
//     published, both with IDs derived from the job and the object — the
//     tracker counts each document once, however often this runs;
//  3. the marked state is purged if it is still that revision (a marker
//     that expires is left: schema.ErasedMarkerTTL).
//
// Killed anywhere, the job is redelivered and starts again: states already
// removed are not seen, marked ones are finished. Its last event (JobPlanned,
// Last) ends the job once every outcome before it was folded.

// erasePassGap is how long a collection delete waits before its second
// pass: longer than collections.CacheTTL, so that a task that saw the
// collection active before the delete has saved its state by then, or will
// see it deleting before its commit.
var erasePassGap = 2*collections.CacheTTL + 500*time.Millisecond

// eraser is one erase job's run.
type eraser struct {
	h   *Handler
	job *schema.Job
}

// ErasePageSize is how many documents one message of an erase job erases
// before it hands the rest to the next page (a new message, with its own
// deliveries): a wipe of millions is never one message redelivered until
// MaxDeliver gives it up.
var ErasePageSize = 10_000

// errPageFull stops a pass that has erased a page's worth.
var errPageFull = errors.New("erase: page full")

// erase runs one page of an erase job: the next page when there is more,
// else the job's end.
func (h *Handler) erase(ctx context.Context, job *schema.Job) error {
	e := &eraser{h: h, job: job}
	done, err := true, error(nil)
	switch job.Kind {
	case schema.JobDeleteDocument:
		err = e.document(ctx)
	case schema.JobDeleteCollection:
		// Two passes: the second erases what tasks claimed before the
		// collection was marked saved after the first had passed it.
		if done, err = e.pass(ctx); err == nil && done {
			time.Sleep(erasePassGap)
			done, err = e.pass(ctx)
		}
		if err == nil && done {
			err = h.cfg.Collections.Remove(ctx, job.Org, job.Collection, job.JobID)
		}
	default:
		done, err = e.pass(ctx)
	}
	if err != nil {
		return err
	}
	if !done {
		return h.nextPage(ctx, job, job.Planned+ErasePageSize)
	}
	ev := &schema.JobEvent{EventID: schema.ErasedEventID(job.JobID), JobID: job.JobID, Org: job.Org, Collection: job.Collection,
		Type: schema.JobPlanned, Page: 0, Last: true, At: time.Now().UTC()}
	if err := h.cfg.Publish(ctx, []schema.Out{{Subject: schema.JobEventSubject(job.Org, job.Collection), MsgID: ev.EventID, Msg: ev}}); err != nil {
		return err
	}
	h.cfg.Metrics.Erases.WithLabelValues(string(job.Kind)).Inc()
	h.cfg.Registry.Audit(ctx, job.Org, "worker", "erase.done", string(job.Kind), "collection "+job.Collection+" job "+job.JobID+" (its counts: GET /v2/jobs/"+job.JobID+")")
	h.log.Info("erase ended", "org", job.Org, "collection", job.Collection, "job_id", job.JobID, "kind", string(job.Kind), "pages", job.Page+1)
	return nil
}

// nextPage publishes the job's next page; erased is how many documents
// the job has erased so far, as far as this page knows.
func (h *Handler) nextPage(ctx context.Context, job *schema.Job, erased int) error {
	next := *job
	next.Page++
	next.Planned = erased
	return h.cfg.Publish(ctx, []schema.Out{{Subject: schema.SweepSubject(job.Org, job.Collection), MsgID: schema.EraseMsgID(job.JobID, next.Page), Msg: &next}})
}

// handOver handles a redelivered page: when the job erased documents
// since the page started (its record counts more than the page's
// Planned), the page made progress before it was interrupted, and the rest
// goes to the next page (moved) — a new message, its deliveries counted
// afresh — rather than this one counting towards MaxDeliver for work that
// got done. A page that made no progress is retried as it is, and given
// up after MaxDeliver deliveries.
func (h *Handler) handOver(ctx context.Context, job *schema.Job) (moved bool, err error) {
	rec, err := h.cfg.Jobs.Get(ctx, job.JobID)
	if err != nil {
		return false, schema.Errorf(schema.ClassTransient, "erase: read the job record: %w", err)
	}
	if rec.FilesDeleted <= int64(job.Planned) {
		return false, nil
	}
	return true, h.nextPage(ctx, job, int(rec.FilesDeleted))
}

// document erases the job's one document, if the collection holds it.
func (e *eraser) document(ctx context.Context) error {
	return e.fromKey(ctx, schema.ObjectKeyPrefix(e.job.Org, e.job.Collection)+e.job.Document, 0)
}

// pass erases the documents of the job's scope that the collection holds
// as of its start, up to Concurrency at once; done is false when it
// stopped at ErasePageSize.
func (e *eraser) pass(ctx context.Context) (done bool, err error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.h.cfg.Concurrency)
	n := 0
	err = collections.Each(gctx, e.h.cfg.JS, e.job.Org, e.job.Collection, func(entry jetstream.KeyValueEntry, st *schema.ObjectState) error {
		if e.job.IntegrationID != "" && st.IntegrationID != e.job.IntegrationID {
			return nil
		}
		if n == ErasePageSize {
			return errPageFull
		}
		n++
		key, rev := entry.Key(), entry.Revision()
		g.Go(func() error { return e.one(gctx, key, rev, st) })
		return nil
	})
	if werr := g.Wait(); werr != nil {
		err = werr // the first failure, rather than the cancel it caused
	}
	if errors.Is(err, errPageFull) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("erase: %w", err)
	}
	return true, nil
}

// one erases the document whose state (at rev) is st.
func (e *eraser) one(ctx context.Context, key string, rev uint64, st *schema.ObjectState) error {
	return e.oneTry(ctx, key, rev, st, 0)
}

// maxMarkTries bounds how often marking a state loses to another writer
// before the erase is retried as a whole (a transient error).
const maxMarkTries = 5

// oneTry is one with tries failed marks behind it.
func (e *eraser) oneTry(ctx context.Context, key string, rev uint64, st *schema.ObjectState, tries int) error {
	switch {
	case st.Status == schema.ObjectDeleted:
		// Gone from S3 before: nothing downstream; only the record goes.
		return e.remove(ctx, key, rev)
	case st.Status == schema.ObjectErasing && st.JobID != e.job.JobID:
		return nil // another erase job has it, and counts it
	case st.Status != schema.ObjectErasing:
		marked := *st
		marked.Status, marked.JobID, marked.UpdatedAt = schema.ObjectErasing, e.job.JobID, time.Now().UTC()
		data, err := json.Marshal(&marked)
		if err != nil {
			return err
		}
		uctx, cancel := context.WithTimeout(ctx, schema.RequestTimeout)
		rev, err = e.h.objects.Update(uctx, key, data, rev)
		cancel()
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			if tries+1 == maxMarkTries {
				return schema.Errorf(schema.ClassTransient, "erase: the state of %s kept changing while it was marked", key)
			}
			return e.fromKey(ctx, key, tries+1)
		}
		if err != nil {
			return fmt.Errorf("mark the state erasing: %w", err)
		}
		st = &marked
	}
	if err := faults.At("erase_marked", st.Key); err != nil {
		return err
	}
	if err := e.h.cfg.Publish(ctx, e.outs(st, rev)); err != nil {
		return err
	}
	if err := faults.At("erase_published", st.Key); err != nil {
		return err
	}
	e.h.cfg.Metrics.Erased.WithLabelValues(string(e.job.Kind)).Inc()
	return e.remove(ctx, key, rev)
}

// fromKey erases key as its state is now (read again after tries lost
// marks), if there is one.
func (e *eraser) fromKey(ctx context.Context, key string, tries int) error {
	entry, err := e.h.objects.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("erase: read the state: %w", err)
	}
	st, ok := collections.DecodeState(entry)
	if !ok {
		return e.remove(ctx, key, entry.Revision())
	}
	return e.oneTry(ctx, key, entry.Revision(), st, tries)
}

// outs are the tombstones of a marked document's chunks and its outcome.
func (e *eraser) outs(st *schema.ObjectState, rev uint64) []schema.Out {
	job, now := e.job, time.Now().UTC()
	var out []schema.Out
	if st.Chunks > 0 {
		ts := &schema.Tombstone{Org: job.Org, Collection: job.Collection, Bucket: st.Bucket, Key: st.Key, VersionID: st.VersionID,
			ETag: st.ETag, ChunkIDs: st.ChunkIDs(job.Org, job.Collection), Reason: "deleted", At: now}
		out = ts.Msgs(schema.TombstoneIDPrefix+schema.EraseEventID(job.JobID, st.Bucket, st.Key, rev), rev)
	}
	ev := &schema.ObjectEvent{EventID: schema.EraseEventID(job.JobID, st.Bucket, st.Key, rev), JobID: job.JobID, Org: job.Org,
		Collection: job.Collection, Bucket: st.Bucket, Key: st.Key, ETag: st.ETag, Outcome: schema.OutcomeDeleted,
		Reason: schema.ReasonErased, Chunks: st.Chunks, Tokens: st.Tokens, At: now}
	return append(out, schema.Out{Subject: schema.ObjectEventSubject(job.Org, job.Collection), MsgID: ev.EventID, Msg: ev})
}

// remove purges key's state if it is still revision rev (one written
// since is left alone), leaving a marker that expires after
// schema.ErasedMarkerTTL.
func (e *eraser) remove(ctx context.Context, key string, rev uint64) error {
	uctx, cancel := context.WithTimeout(ctx, schema.RequestTimeout)
	defer cancel()
	err := e.h.objects.Purge(uctx, key, jetstream.LastRevision(rev), jetstream.PurgeTTL(schema.ErasedMarkerTTL))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("remove the state: %w", err)
	}
	return nil
}
