package worker

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/chunk"
	"github.com/stevedore-dev/stevedore/worker/creds"
	"github.com/stevedore-dev/stevedore/worker/extract"
)

// indexStage indexes or deletes one object per TASKS message; giving a task
// up records a failed object in its job.
func (w *Worker) indexStage() stage {
	return stage{name: "task", handle: w.index, giveUp: w.objectFailed, maxDeliver: w.cfg.Topology.MaxDeliver,
		onGiveUp: func() { w.m.objects.WithLabelValues(string(schema.OutcomeFailed)).Inc() }}
}

// index handles one task: assume → get → extract → chunk → count → publish
// chunks → record object state → publish the outcome event. Errors go back
// to settle, which decides; a task given up on still gets a "failed" outcome
// (objectFailed), so the job's counters stay exact and the job completes.
func (w *Worker) index(ctx context.Context, msg jetstream.Msg) error {
	task, err := schema.DecodeTask(msg.Data())
	if err != nil {
		return err
	}
	ev, err := w.runTask(ctx, task)
	if err != nil {
		return err
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

// objectFailed is the indexer's give-up outcome: the object failed, with
// the reason and hint.
func (w *Worker) objectFailed(data []byte, f *schema.ClassError) []outMsg {
	task, err := schema.DecodeTask(data)
	if err != nil {
		return nil // undecodable: no job to tell
	}
	ev := w.event(task, schema.OutcomeFailed)
	ev.Reason, ev.ErrorClass, ev.ErrorCode = publicReason(f), string(f.Class), f.Code
	return []outMsg{eventMsg(ev)}
}

// verdict is what a task's stored object state decides before any work.
type verdict int

const (
	proceed      verdict = iota // fetch and index, or delete
	stale                       // an event with a later sequencer for this key was applied: skip
	alreadySaved                // a redelivery whose first attempt saved the state: report that outcome again
	unchanged                   // skip_existing, and the state covers this ETag: skip without fetching
)

// decide is the pure decision a task's stored state makes. etag is the
// object's ETag as known so far (the listing's, before GetObject; S3's own
// after it), "" when unknown.
func decide(task *schema.Task, state *schema.ObjectState, etag string) verdict {
	if state == nil {
		return proceed
	}
	// Notifications arrive out of order: an event older than the one the
	// state already reflects changes nothing.
	if task.Sequencer != "" && state.Sequencer != "" && schema.SequencerLess(task.Sequencer, state.Sequencer) {
		return stale
	}
	if task.Op == schema.OpDelete {
		return proceed // deleting is idempotent: a deleted state publishes nothing again
	}
	saved := state.Status == schema.ObjectIndexed || state.Status == schema.ObjectSkipped
	// The same job's task (or the same notification) already got as far as
	// saving the state: its chunks are durable, report the same outcome.
	sameTask := (task.JobID != "" && state.JobID == task.JobID) || (task.JobID == "" && task.Sequencer != "" && state.Sequencer == task.Sequencer)
	if saved && sameTask && (etag == "" || state.ETag == etag) {
		return alreadySaved
	}
	// Unchanged only if read the same way: a basic index does not stand in
	// for an advanced one, nor the other way round.
	if saved && task.SkipExisting && !task.OverwriteExisting && etag != "" && state.ETag == etag && state.ProcessingType == processingType(task) &&
		state.Encoding == encodingOf(task) {
		return unchanged
	}
	return proceed
}

// processingType is what the object state records of the task's
// processing type: "advanced", or empty for basic.
func processingType(task *schema.Task) string {
	if task.Structured() {
		return schema.ProcessingAdvanced
	}
	return ""
}

// encodingOf is what the object state records of the task's tokenizer:
// its name, or empty for the default.
func encodingOf(task *schema.Task) string {
	if task.Encoding == schema.DefaultEncoding {
		return ""
	}
	return task.Encoding
}

// skipEvent is the "skipped" outcome for an object decide found unchanged.
func (w *Worker) skipEvent(task *schema.Task, state *schema.ObjectState) *schema.ObjectEvent {
	ev := w.event(task, schema.OutcomeSkipped)
	ev.ETag, ev.Reason = state.ETag, schema.ReasonAlreadyIndexed
	if state.Status == schema.ObjectSkipped {
		ev.Reason = schema.ReasonUnchangedSinceSkipped
	}
	return ev
}

// savedEvent reports again the outcome a state saved by this same task records.
func (w *Worker) savedEvent(task *schema.Task, state *schema.ObjectState) *schema.ObjectEvent {
	if state.Status == schema.ObjectSkipped {
		ev := w.event(task, schema.OutcomeSkipped)
		ev.ETag, ev.Reason = state.ETag, state.Reason
		return ev
	}
	ev := w.event(task, schema.OutcomeIndexed)
	ev.ETag, ev.Chunks, ev.Tokens = state.ETag, state.Chunks, state.Tokens
	return ev
}

func (w *Worker) event(t *schema.Task, o schema.Outcome) *schema.ObjectEvent {
	return &schema.ObjectEvent{EventID: schema.ObjectEventID(t.JobID, t.Op, t.Bucket, t.Key, t.VersionID+t.Sequencer), JobID: t.JobID,
		Org: t.Org, Collection: t.Collection, Bucket: t.Bucket, Key: t.Key, ETag: t.ETag, Outcome: o, At: time.Now().UTC()}
}

func eventMsg(ev *schema.ObjectEvent) outMsg {
	return outMsg{Subject: schema.ObjectEventSubject(ev.Org, ev.Collection), MsgID: ev.EventID, Msg: ev}
}

// runTask does the work and returns the outcome event to publish.
func (w *Worker) runTask(ctx context.Context, task *schema.Task) (*schema.ObjectEvent, error) {
	log := w.log.With("org", task.Org, "collection", task.Collection, "job_id", task.JobID, "bucket", task.Bucket, "key", task.Key)
	if w.jobCancelled(ctx, task.JobID) {
		ev := w.event(task, schema.OutcomeSkipped)
		ev.Reason = schema.ReasonCancelled
		return ev, nil
	}
	t, err := w.res.Tenant(ctx, task.Org, task.IntegrationID, task.Bucket, task.Key)
	if err != nil {
		return nil, err
	}
	t.CredentialRef = task.CredentialRef
	stateKey := schema.ObjectKey(task.Org, task.Collection, task.Bucket, task.Key)
	state, rev, err := w.loadState(ctx, stateKey)
	if err != nil {
		return nil, err
	}
	var now *s3Now // what S3 said of the object, once asked
	overrides := false
	switch decide(task, state, task.ETag) {
	case stale:
		// A stored sequencer may have come from a forged notification: the
		// event is stale only if S3 agrees with the state (confirm.go).
		if now, err = w.headObject(ctx, t, task); err != nil {
			return nil, err
		}
		if now.agreesWithStale(task, state) {
			ev := w.event(task, schema.OutcomeSkipped)
			ev.Reason = "stale: an event with a later sequencer for this key was already applied"
			return ev, nil
		}
		overrides = true
		w.unconfirmed(ctx, task, reasonStaleOverridden)
		log.Warn("a stored sequencer contradicted S3; the newer event is applied", "outcome", "overridden")
	case alreadySaved:
		return w.savedEvent(task, state), nil
	case unchanged:
		return w.skipEvent(task, state), nil
	}
	if task.Op == schema.OpDelete {
		return w.deleteObject(ctx, t, task, state, stateKey, rev, now, overrides)
	}
	scope := task.JobID
	if scope == "" {
		scope = "events"
	}
	req, err := w.res.Request(t, scope, task.Bucket, task.ScopePrefix)
	if err != nil {
		return nil, err
	}
	stageStart := time.Now()
	in := &s3.GetObjectInput{Bucket: aws.String(task.Bucket), Key: aws.String(task.Key), ExpectedBucketOwner: t.Owner()}
	if task.VersionID != "" {
		in.VersionId = aws.String(task.VersionID)
	}
	obj, err := w.res.GetObject(ctx, t, req, task.Region, in)
	w.m.s3("get", err)
	w.m.stage.WithLabelValues("get").Observe(time.Since(stageStart).Seconds())
	if err != nil {
		return w.goneSinceIndexed(ctx, t, task, state, stateKey, rev, overrides, err)
	}
	defer obj.Body.Close()
	etag, version := aws.ToString(obj.ETag), aws.ToString(obj.VersionId)
	ev := w.event(task, schema.OutcomeSkipped)
	ev.ETag = etag
	if size := aws.ToInt64(obj.ContentLength); size > w.cfg.MaxObjectBytes {
		ev.Reason = fmt.Sprintf("%s: object is %d bytes, over the %d-byte cap", extract.ReasonTooLarge, size, w.cfg.MaxObjectBytes)
		w.m.skipped(extract.ReasonTooLarge)
		return ev, nil
	}
	switch decide(task, state, etag) {
	case alreadySaved:
		return w.savedEvent(task, state), nil
	case unchanged:
		return w.skipEvent(task, state), nil
	}
	if err := fault("after_download", task.Key); err != nil {
		return nil, err
	}
	// The notification's claim is confirmed when S3 returned the version it
	// names (same ETag, and version ID when it gives one); only then may its
	// sequencer be stored.
	confirmed := task.ETag != "" && sameETag(task.ETag, etag) && (task.VersionID == "" || task.VersionID == version)
	if task.Sequencer != "" && !confirmed {
		w.unconfirmed(ctx, task, reasonCreateNotAsClaimed)
	}
	v := objectVersion{task: task, etag: etag, version: version, state: state, gen: rev}
	res, err := w.indexBody(ctx, v, obj)
	ev.Bytes = res.bytes
	w.m.bytes.Add(float64(res.bytes))
	if err != nil {
		return nil, err
	}
	if res.skip != nil {
		ev.Reason = res.skip.Error() // bounded: a detail can carry the tenant's bytes
		w.m.skipped(res.skip.Reason)
		log.Info("object skipped", "outcome", "skipped", "reason", ev.Reason)
		if state != nil && state.Status == schema.ObjectIndexed {
			return ev, nil // keep the indexed version's state; its chunks stay valid
		}
		// Remember the version, so skip_existing does not fetch it again.
		skipped := &schema.ObjectState{Bucket: task.Bucket, Key: task.Key, ETag: etag, VersionID: version, Sequencer: sequencer(task, state, confirmed, overrides),
			ExtractorVersion: cmp.Or(res.extractor, extract.Version), ContentType: res.contentType, ProcessingType: processingType(task), Encoding: encodingOf(task), Status: schema.ObjectSkipped, Reason: ev.Reason,
			JobID: task.JobID, UpdatedAt: time.Now().UTC()}
		if err := w.saveState(ctx, stateKey, skipped, rev); err != nil {
			return nil, err
		}
		return ev, nil
	}
	newState := &schema.ObjectState{Bucket: task.Bucket, Key: task.Key, ETag: etag, VersionID: version, Sequencer: sequencer(task, state, confirmed, overrides),
		Chunks: res.chunks, Tokens: res.tokens, ExtractorVersion: res.extractor, ContentType: res.contentType, ProcessingType: processingType(task), Encoding: encodingOf(task), Status: schema.ObjectIndexed, JobID: task.JobID, UpdatedAt: time.Now().UTC()}
	if err := w.saveState(ctx, stateKey, newState, rev); err != nil {
		return nil, err
	}
	if err := fault("after_state", task.Key); err != nil {
		return nil, err
	}
	ev.Outcome, ev.Reason, ev.Chunks, ev.Tokens = schema.OutcomeIndexed, "", res.chunks, res.tokens
	log.Debug("object indexed", "outcome", "indexed", "chunks", res.chunks, "tokens", res.tokens)
	return ev, nil
}

// goneSinceIndexed handles a GetObject that failed with err. An object that
// was indexed and is now gone (a job names a key deleted since: S3 answers
// NoSuchKey) has its chunks tombstoned once a HEAD confirms it is gone, as a
// delete notification would: outcome deleted, not a failure that leaves its
// chunks searchable. Anything else is err, for settle to decide.
func (w *Worker) goneSinceIndexed(ctx context.Context, t *creds.Tenant, task *schema.Task, state *schema.ObjectState, stateKey string, rev uint64, overrides bool, err error) (*schema.ObjectEvent, error) {
	if creds.Classify(err).Class != schema.ClassNotFound || state == nil || state.Status != schema.ObjectIndexed {
		return nil, err
	}
	now, herr := w.headObject(ctx, t, task)
	if herr != nil {
		return nil, herr
	}
	if !now.gone {
		// Written again between the GET and the HEAD: read it again.
		return nil, schema.Errorf(schema.ClassTransient, "s3://%s/%s reappeared while it was read: %w", task.Bucket, task.Key, err)
	}
	return w.deleteObject(ctx, t, task, state, stateKey, rev, now, overrides)
}

// objectVersion is the object version a task is indexing.
type objectVersion struct {
	task          *schema.Task
	etag, version string
	state         *schema.ObjectState // before this task
	gen           uint64              // the state's revision read before this task (0: none): see schema.GenMsgID
}

// idVersion is the version part of chunk IDs: the S3 version ID, else the ETag.
func (v objectVersion) idVersion() string {
	if v.version != "" {
		return v.version
	}
	return v.etag
}

type indexResult struct {
	chunks      int
	tokens      int64
	bytes       int64
	skip        *extract.Skip
	extractor   string // the extractor's version (part of chunk IDs)
	contentType string // as detected
}

// Stream sizes: text is read in parts of partBytes and chunks are published
// in batches of publishBatch, so memory does not grow with the object.
const (
	partBytes    = 1 << 20
	publishBatch = 64
)

// indexBody streams the object's body through decompression, extraction
// and chunking, publishing chunks in batches as they become final, then the
// commit record that makes them visible, then a tombstone for the replaced
// version's chunks. A skip found midway leaves published chunks uncommitted,
// that is invisible.
func (w *Worker) indexBody(ctx context.Context, v objectVersion, obj *s3.GetObjectOutput) (indexResult, error) {
	task := v.task
	var res indexResult
	body := bodyReaders.Get().(*bufio.Reader)
	body.Reset(&countingReader{r: obj.Body, n: &res.bytes})
	defer func() { body.Reset(nil); bodyReaders.Put(body) }() // after x.Close below: nothing reads it then
	asSkip := func(err error) (indexResult, error) {
		var s *extract.Skip
		if errors.As(err, &s) {
			res.skip = s
			return res, nil
		}
		return res, fmt.Errorf("read body: %w", err)
	}
	r, _, err := extract.Decompress(body, task.Key, aws.ToString(obj.ContentEncoding), w.cfg.MaxDecompressedBytes)
	if err != nil {
		return asSkip(err)
	}
	opts := extract.Options{Structured: task.Structured(), PDF: w.cfg.PDF}
	x, err := opts.Open(r, task.Key, aws.ToString(obj.ContentType))
	if err != nil {
		return asSkip(err)
	}
	defer x.Close()
	res.extractor, res.contentType = x.Version(), x.Type()
	meta, err := w.customMetadata(ctx, task)
	if err != nil {
		return res, err
	}
	lab := &labeler{headings: task.Structured(), csv: isTable(res.contentType)}
	subject := schema.ChunkSubject(task.Org, task.Collection)
	batch := make([]outMsg, 0, publishBatch)
	published := false
	flush := func(total int) error {
		if len(batch) == 0 {
			return nil
		}
		for _, m := range batch {
			m.Msg.(*schema.Chunk).Total = total
		}
		start := time.Now()
		err := w.publishChunks(ctx, batch)
		w.m.stage.WithLabelValues("publish").Observe(time.Since(start).Seconds())
		batch, published = batch[:0], true
		return err
	}
	splitter, err := w.splitterFor(task.Encoding)
	if err != nil {
		return res, schema.Errorf(schema.ClassPermanent, "%w", err)
	}
	res.extractor = schema.IDExtractor(res.extractor, task.Encoding)
	idExtractor := res.extractor
	stream := splitter.Stream(func(p chunk.Chunk) error {
		id := schema.ChunkID(task.Org, task.Collection, task.Bucket, task.Key, v.idVersion(), idExtractor, res.chunks)
		c := &schema.Chunk{ChunkID: id, Org: task.Org, Collection: task.Collection, JobID: task.JobID, Bucket: task.Bucket, Key: task.Key,
			VersionID: v.version, ETag: v.etag, Index: res.chunks, ByteOffset: int64(p.Offset), Text: p.Text, TokenCount: p.Tokens,
			Encoding: splitter.Encoding(), ExtractorVersion: res.extractor, ContentType: res.contentType, CustomMetadata: meta}
		lab.label(c)
		batch = append(batch, outMsg{Subject: subject, MsgID: schema.GenMsgID(id, v.gen), Msg: c})
		res.chunks++
		res.tokens += int64(p.Tokens)
		if len(batch) == publishBatch {
			return flush(0) // the total is not known yet: the commit carries it
		}
		return nil
	})
	stageStart := time.Now()
	for {
		part, err := x.Next(partBytes)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return asSkip(err)
		}
		if err := lab.write(stream, part, x.Sections()); err != nil {
			if errors.Is(err, chunk.ErrUnsplittable) {
				return asSkip(&extract.Skip{Reason: extract.ReasonUnsplittable, Detail: err.Error()})
			}
			return res, err
		}
	}
	if err := stream.Close(); err != nil {
		return res, err
	}
	w.m.stage.WithLabelValues("chunk").Observe(time.Since(stageStart).Seconds())
	total := 0
	if !published {
		total = res.chunks // every chunk is in this one batch: each can carry the total
	}
	if err := flush(total); err != nil {
		return res, err
	}
	if err := fault("after_chunks", task.Key); err != nil {
		return res, err
	}
	// The replaced version's chunks that are not reused are tombstoned,
	// every part acknowledged, before the new version's commit: a replace
	// that fails midway leaves the object briefly absent downstream (the
	// redelivered task completes it), never both versions visible.
	if ts := v.replaced(res); ts != nil {
		if err := w.publishChunks(ctx, tombstoneMsgs(subject, ts, schema.TombstoneID(ts.ChunkIDs[0]), v.gen)); err != nil {
			return res, err
		}
	}
	commit := &schema.Commit{Org: task.Org, Collection: task.Collection, JobID: task.JobID, Bucket: task.Bucket, Key: task.Key, VersionID: v.version,
		ETag: v.etag, ExtractorVersion: res.extractor, ContentType: res.contentType, Chunks: res.chunks, Tokens: res.tokens, At: time.Now().UTC()}
	commitID := schema.CommitID(task.Org, task.Collection, task.Bucket, task.Key, v.idVersion(), idExtractor)
	if err := w.publishChunks(ctx, []outMsg{{Subject: subject, MsgID: schema.GenMsgID(commitID, v.gen), Msg: commit}}); err != nil {
		return res, err
	}
	w.m.chunks.Add(float64(res.chunks))
	w.m.tokens.Add(float64(res.tokens))
	return res, nil
}

// replaced is the tombstone of the previous version's chunks that the new
// version (res) does not reuse, or nil when there are none.
func (v objectVersion) replaced(res indexResult) *schema.Tombstone {
	st, task := v.state, v.task
	if st == nil || st.Status != schema.ObjectIndexed || (st.ETag == v.etag && st.VersionID == v.version && st.ExtractorVersion == res.extractor) {
		return nil
	}
	newState := schema.ObjectState{Bucket: task.Bucket, Key: task.Key, ETag: v.etag, VersionID: v.version, Chunks: res.chunks, ExtractorVersion: res.extractor}
	stale := minus(st.ChunkIDs(task.Org, task.Collection), newState.ChunkIDs(task.Org, task.Collection))
	if len(stale) == 0 {
		return nil
	}
	return &schema.Tombstone{Org: task.Org, Collection: task.Collection, Bucket: task.Bucket, Key: task.Key, VersionID: st.VersionID,
		ETag: st.ETag, ChunkIDs: stale, Reason: "replaced", At: time.Now().UTC()}
}

// tombstoneMsgs are the messages of ts, split into parts that fit a
// message (schema.Tombstone.Split), each with its own deterministic ID.
func tombstoneMsgs(subject string, ts *schema.Tombstone, id string, gen uint64) []outMsg {
	parts := ts.Split()
	out := make([]outMsg, len(parts))
	for i, p := range parts {
		out[i] = outMsg{Subject: subject, MsgID: schema.GenMsgID(schema.TombstonePartID(id, p.Part), gen), Msg: p}
	}
	return out
}

// bodyReaders are the 64 KiB read buffers of object bodies, reused: a new
// one per task was a tenth of a small object's allocations.
var bodyReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
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
