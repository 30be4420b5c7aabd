package index

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/extract"
	"github.com/stevedore-dev/stevedore/worker/faults"
)

// object is one task's object as this task found it: the tenant that
// reads it, its stored state and that state's revision, and what S3 said
// of it once asked.
type object struct {
	task   *schema.Task
	tenant *creds.Tenant
	key    string              // the object-state key
	state  *schema.ObjectState // before this task (nil: none)
	rev    uint64              // the state's revision (0: none): see schema.GenMsgID
	now    *s3Now              // what S3 said of the object, once asked
	custom json.RawMessage     // the custom metadata its chunks carry (customMetadata), read once
	// overrides is set when S3 showed the stored sequencer to be wrong (a
	// later genuine event judged stale by it).
	overrides bool
}

// runTask does the work and returns the outcome event to publish.
func (h *Handler) runTask(ctx context.Context, task *schema.Task) (*schema.ObjectEvent, error) {
	if h.cfg.Jobs.Cancelled(ctx, task.JobID) {
		ev := event(task, schema.OutcomeSkipped)
		ev.Reason = schema.ReasonCancelled
		return ev, nil
	}
	if ev, err := h.collectionGate(ctx, task); ev != nil || err != nil {
		return ev, err
	}
	o, err := h.load(ctx, task)
	if err != nil {
		return nil, err
	}
	if o.state != nil && o.state.Status == schema.ObjectErasing {
		// An erase job is removing the document: once it has, this task
		// indexes the object anew.
		return nil, schema.Errorf(schema.ClassTransient, "s3://%s/%s is being erased by job %s: retried once it is", task.Bucket, task.Key, o.state.JobID)
	}
	if o.custom, err = h.customMetadata(ctx, task); err != nil {
		return nil, err
	}
	d := decide(task, o.state, fingerprint(o.custom))
	switch d.now {
	case stale:
		if ev, err := h.checkStale(ctx, o); ev != nil || err != nil {
			return ev, err
		}
	case alreadySaved, unchanged:
		return h.seen(ctx, o, report(d.now, task, o.state))
	case refresh:
		return h.refresh(ctx, o)
	}
	if task.Op == schema.OpDelete {
		return h.deleteObject(ctx, o)
	}
	return h.fetchAndIndex(ctx, o, d)
}

// collectionGate returns the skipped outcome of a task whose collection
// is being deleted, or of a notification's object the collection's filters
// exclude (nil when neither); a notification's task takes the collection's
// settings (chunking, custom metadata, tags, OCR languages). A job's tasks
// were filtered and set when planned.
func (h *Handler) collectionGate(ctx context.Context, task *schema.Task) (*schema.ObjectEvent, error) {
	c, err := h.cfg.Collections.Get(ctx, task.Org, task.Collection)
	if err != nil {
		return nil, schema.Errorf(schema.ClassTransient, "read the collection record: %w", err)
	}
	if task.JobID == "" {
		// A notification takes its collection's settings where its route
		// gave none.
		if task.ChunkTokens == 0 {
			task.ChunkTokens, task.ChunkOverlap = c.ChunkTokens, c.ChunkOverlap
		}
		if len(task.CustomMetadata) == 0 {
			task.CustomMetadata = c.CustomMetadata
		}
		task.ObjectTags = task.ObjectTags || c.ObjectTags
		task.OCRLanguages = cmp.Or(task.OCRLanguages, c.OCRLanguages)
	}
	reason := ""
	switch {
	case c.Status == collections.StatusDeleting:
		reason = schema.ReasonCollectionDeleted
	case task.JobID == "" && task.Op == schema.OpIndex:
		var modified time.Time
		if task.EventTime != nil {
			modified = *task.EventTime
		}
		if why := c.Filters.Excludes(task.Key, task.Size, modified); why != "" {
			reason = schema.ReasonExcluded + ": " + why
		}
	}
	if reason == "" {
		return nil, nil
	}
	ev := event(task, schema.OutcomeSkipped)
	ev.Reason = reason
	return ev, nil
}

// load resolves the task's tenant and reads its object's stored state.
func (h *Handler) load(ctx context.Context, task *schema.Task) (*object, error) {
	t, err := h.cfg.Resolver.Tenant(ctx, task.Org, task.IntegrationID, task.Bucket, task.Key)
	if err != nil {
		return nil, err
	}
	t.CredentialRef = task.CredentialRef
	o := &object{task: task, tenant: t, key: schema.ObjectKey(task.Org, task.Collection, task.Bucket, task.Key)}
	if o.state, o.rev, err = h.loadState(ctx, o.key); err != nil {
		return nil, err
	}
	return o, nil
}

// checkStale handles a task the stored sequencer calls stale. A stored
// sequencer may have come from a forged notification: the event is stale
// only if S3 agrees with the state (confirm.go); then it returns the
// skipped outcome. Otherwise the task goes on, overriding the sequencer.
func (h *Handler) checkStale(ctx context.Context, o *object) (*schema.ObjectEvent, error) {
	var err error
	if o.now, err = h.headObject(ctx, o.tenant, o.task); err != nil {
		return nil, err
	}
	if o.now.agreesWithStale(o.task, o.state) {
		ev := event(o.task, schema.OutcomeSkipped)
		ev.Reason = "stale: an event with a later sequencer for this key was already applied"
		return ev, nil
	}
	o.overrides = true
	h.unconfirmed(ctx, o.task, reasonStaleOverridden)
	h.log.Warn("a stored sequencer contradicted S3; the newer event is applied", "org", o.task.Org, "bucket", o.task.Bucket, "key", o.task.Key, "outcome", "overridden")
	return nil, nil
}

// fetchAndIndex fetches the object and indexes it, unless S3's answer
// settles it (d.onFetch) or it is too large.
func (h *Handler) fetchAndIndex(ctx context.Context, o *object, d decision) (*schema.ObjectEvent, error) {
	task := o.task
	obj, err := h.get(ctx, o)
	if err != nil {
		return h.goneSinceIndexed(ctx, o, err)
	}
	defer obj.Body.Close()
	hdr := getHeader(obj)
	v := objectVersion{task: task, etag: hdr.etag, version: hdr.version, size: hdr.size, state: o.state, gen: o.rev}
	ev := event(task, schema.OutcomeSkipped)
	ev.ETag = v.etag
	if v.size > h.cfg.MaxObjectBytes {
		ev.Reason = fmt.Sprintf("%s: object is %d bytes, over the %d-byte cap", extract.ReasonTooLarge, v.size, h.cfg.MaxObjectBytes)
		h.m.Skipped(extract.ReasonTooLarge)
		return h.seen(ctx, o, ev)
	}
	got := d.onFetch(v.etag)
	if got == alreadySaved {
		return h.seen(ctx, o, report(got, task, o.state))
	}
	if v.desc, err = h.describe(ctx, o, hdr); err != nil {
		return nil, err
	}
	if got == unchanged {
		return h.applyMeta(ctx, o, v.desc)
	}
	if err := faults.At("after_download", task.Key); err != nil {
		return nil, err
	}
	// The notification's claim is confirmed when S3 returned the version it
	// names (same ETag, and version ID when it gives one); only then may its
	// sequencer be stored.
	confirmed := task.ETag != "" && sameETag(task.ETag, v.etag) && (task.VersionID == "" || task.VersionID == v.version)
	if task.Sequencer != "" && !confirmed {
		h.unconfirmed(ctx, task, reasonCreateNotAsClaimed)
	}
	res, err := h.indexBody(ctx, v, obj)
	ev.Bytes = res.bytes
	h.m.Bytes.Add(float64(res.bytes))
	if errors.Is(err, errCollectionDeleted) {
		// Its chunks were published but never committed: invisible.
		ev.Reason = schema.ReasonCollectionDeleted
		return ev, nil
	}
	if err != nil {
		return nil, err
	}
	return h.record(ctx, o, v, res, ev, sequencer(task, o.state, confirmed, o.overrides))
}

// get is GetObject of the task's object (its version, when it names one)
// with the tenant's role.
func (h *Handler) get(ctx context.Context, o *object) (*s3.GetObjectOutput, error) {
	start := time.Now()
	obj, err := h.getObject(ctx, o, o.task.Key, o.task.VersionID)
	h.m.S3("get", err)
	h.m.Stage.WithLabelValues("get").Observe(time.Since(start).Seconds())
	return obj, err
}

// record saves the object state the indexed (or skipped) version leaves,
// and completes ev, the outcome. A skipped version of an object indexed
// before keeps that state: its chunks stay valid.
func (h *Handler) record(ctx context.Context, o *object, v objectVersion, res indexResult, ev *schema.ObjectEvent, seq string) (*schema.ObjectEvent, error) {
	task := o.task
	st := &schema.ObjectState{Bucket: task.Bucket, Key: task.Key, ETag: v.etag, VersionID: v.version, Sequencer: seq, ExtractorVersion: res.extractor,
		ContentType: res.contentType, ProcessingType: processingType(task), Encoding: encodingOf(task), JobID: task.JobID,
		IntegrationID: task.IntegrationID, Size: v.size, LastModified: v.desc.source.LastModified, Chunking: schema.Chunking(task.ChunkTokens, task.ChunkOverlap),
		SidecarETag: v.desc.sidecarETag, MetaHash: v.desc.hash, CustomHash: v.desc.customHash, UpdatedAt: time.Now().UTC()}
	markSeen(st, task, o.state)
	if res.skip != nil {
		ev.Reason = res.skip.Error() // bounded: a detail can carry the tenant's bytes
		h.m.Skipped(res.skip.Reason)
		h.log.Info("object skipped", "org", task.Org, "bucket", task.Bucket, "key", task.Key, "outcome", "skipped", "reason", ev.Reason)
		if o.state != nil && o.state.Status == schema.ObjectIndexed {
			return h.seen(ctx, o, ev)
		}
		// Remember the version, so skip_existing does not fetch it again.
		st.Status, st.Reason = schema.ObjectSkipped, ev.Reason
		if st.ExtractorVersion == "" {
			st.ExtractorVersion = extract.Version
		}
		return ev, h.saveState(ctx, o.key, st, o.rev)
	}
	st.Status, st.Chunks, st.Tokens = schema.ObjectIndexed, res.chunks, res.tokens
	st.ChunkSeqs = res.completeSeqs()
	if err := h.saveState(ctx, o.key, st, o.rev); err != nil {
		return nil, err
	}
	if err := faults.At("after_state", task.Key); err != nil {
		return nil, err
	}
	ev.Outcome, ev.Reason, ev.Chunks, ev.Tokens = schema.OutcomeIndexed, "", res.chunks, res.tokens
	return ev, nil
}

// seen returns ev, the outcome of a task that leaves the object's state as
// it was, once the state records that the task's sync saw the object (the
// sweep leaves it alone). Tasks of other jobs write nothing.
func (h *Handler) seen(ctx context.Context, o *object, ev *schema.ObjectEvent) (*schema.ObjectEvent, error) {
	if !o.task.Sync || o.state == nil || o.state.SeenBy == o.task.JobID {
		return ev, nil
	}
	st := *o.state
	markSeen(&st, o.task, o.state)
	if err := h.saveState(ctx, o.key, &st, o.rev); err != nil {
		return nil, err
	}
	return ev, nil
}

// markSeen sets the sync mark (SeenBy, SeenAt) of next, the state task
// writes over state: its job's, now, if it is a sync's, else what state had
// (a notification's task does not undo a sync's mark).
func markSeen(next *schema.ObjectState, task *schema.Task, state *schema.ObjectState) {
	switch {
	case task.Sync:
		now := time.Now().UTC()
		next.SeenBy, next.SeenAt = task.JobID, &now
	case state != nil:
		next.SeenBy, next.SeenAt = state.SeenBy, state.SeenAt
	default:
		next.SeenBy, next.SeenAt = "", nil
	}
}

// goneSinceIndexed handles a GetObject that failed with err. An object
// stevedore holds that is now gone (a job names a key deleted since: S3
// answers NoSuchKey) has its chunks tombstoned once a HEAD confirms it is
// gone, as a delete notification would: outcome deleted, not a failure that
// leaves its chunks searchable (one deleted before is deleted again: the
// same outcome). A key stevedore never held is err: the caller named a key
// that does not exist. Anything else is err, for the runner to decide.
func (h *Handler) goneSinceIndexed(ctx context.Context, o *object, err error) (*schema.ObjectEvent, error) {
	notFound := creds.Classify(err).Class == schema.ClassNotFound
	if notFound && o.task.ViaSidecar != "" && (o.state == nil || o.state.Status == schema.ObjectFailed) {
		ev := event(o.task, schema.OutcomeSkipped)
		ev.Reason = schema.ReasonSidecarWithoutDocument
		return ev, nil
	}
	if !notFound || o.state == nil || o.state.Status == schema.ObjectFailed {
		return nil, err // never held (a failed state held nothing): the caller named a key that is not there
	}
	now, herr := h.headObject(ctx, o.tenant, o.task)
	if herr != nil {
		return nil, herr
	}
	if !now.gone {
		// Written again between the GET and the HEAD: read it again.
		return nil, schema.Errorf(schema.ClassTransient, "s3://%s/%s reappeared while it was read: %w", o.task.Bucket, o.task.Key, err)
	}
	o.now = now
	return h.deleteObject(ctx, o)
}

// loadState reads an object's stored state and its revision (nil, 0: none).
// An unreadable state is replaced: nil with its revision.
func (h *Handler) loadState(ctx context.Context, key string) (*schema.ObjectState, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, schema.RequestTimeout)
	defer cancel()
	e, err := h.objects.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load object state: %w", err)
	}
	var s schema.ObjectState
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return nil, e.Revision(), nil
	}
	return &s, e.Revision(), nil
}

// saveState writes the object state with compare-and-set against the
// revision read before the work: a concurrent writer makes this fail, and
// the redelivered task re-reads and re-decides.
func (h *Handler) saveState(ctx context.Context, key string, s *schema.ObjectState, rev uint64) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, schema.RequestTimeout)
	defer cancel()
	if rev == 0 {
		_, err = h.objects.Create(ctx, key, data)
	} else {
		_, err = h.objects.Update(ctx, key, data, rev)
	}
	if err != nil {
		return fmt.Errorf("save object state: %w", err)
	}
	return nil
}
