package index

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/chunk"
	"github.com/stevedore-dev/stevedore/worker/extract"
	"github.com/stevedore-dev/stevedore/worker/faults"
	"github.com/stevedore-dev/stevedore/worker/token"
)

// objectVersion is the object version a task is indexing.
type objectVersion struct {
	task          *schema.Task
	etag, version string
	size          int64               // as S3 gave it
	desc          *described          // what every chunk carries besides its text
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
	extractor   string // the extractor's version, with the tokenizer's (part of chunk IDs)
	contentType string // as detected
	// seqs are where CHUNKS stored the chunks (schema.ObjectState.ChunkSeqs);
	// incomplete when a publish function does not report sequences.
	seqs []schema.SeqRun
}

// skipOr records err as the skip it is (the content cannot be indexed) and
// returns nil, or returns err when it is not one (reading failed).
func (res *indexResult) skipOr(err error) error {
	var s *extract.Skip
	if errors.As(err, &s) {
		res.skip = s
		return nil
	}
	return fmt.Errorf("read body: %w", err)
}

// Stream sizes: text is read in parts of partBytes and chunks are published
// in batches of publishBatch, so memory does not grow with the object. Each
// task in flight holds a few copies of a part (the read buffer, its text,
// the splitter's pending text): with 1 MiB parts a worker indexing ten 32
// MiB objects at once peaked at 134 MiB of RSS, with 256 KiB at 81 MiB, at
// the same CPU per object.
const (
	partBytes    = 256 << 10
	publishBatch = 64
)

// indexBody streams the object's body through decompression, extraction
// and chunking, publishing chunks in batches as they become final, then
// commits the version (commit). A skip found midway leaves published
// chunks uncommitted, that is invisible.
func (h *Handler) indexBody(ctx context.Context, v objectVersion, obj *s3.GetObjectOutput) (indexResult, error) {
	var res indexResult
	body := bodyReaders.Get().(*bufio.Reader)
	body.Reset(&countingReader{r: obj.Body, n: &res.bytes})
	defer func() { body.Reset(nil); bodyReaders.Put(body) }() // after x.Close below: nothing reads it then
	r, _, err := extract.Decompress(body, v.task.Key, aws.ToString(obj.ContentEncoding), h.cfg.MaxDecompressedBytes)
	if err != nil {
		return res, res.skipOr(err)
	}
	opts := extract.Options{Structured: v.task.Structured(), PDF: h.cfg.PDF, OCR: h.cfg.OCR, OCRLanguages: v.task.OCRLanguages}
	x, err := opts.Open(r, v.task.Key, aws.ToString(obj.ContentType))
	if err != nil {
		return res, res.skipOr(err)
	}
	defer x.Close()
	res.contentType = x.Type()
	s, err := h.newSink(ctx, v, x.Version(), &res)
	if err != nil {
		return res, err
	}
	start := time.Now()
	err = s.read(x)
	h.m.OCRPages.Add(float64(s.lab.ocrPages))
	if err != nil || res.skip != nil {
		return res, err
	}
	h.m.Stage.WithLabelValues("chunk").Observe(time.Since(start).Seconds())
	if err := faults.At("after_chunks", v.task.Key); err != nil {
		return res, err
	}
	return res, h.commit(ctx, v, &res)
}

// sink takes one object version's chunks to CHUNKS, a batch at a time.
type sink struct {
	h         *Handler
	ctx       context.Context
	v         objectVersion
	res       *indexResult
	subject   string
	lab       *labeler
	encoding  string
	stream    *chunk.Stream
	splitter  *chunk.Splitter
	prev      string // the last chunk's own text (its overlap comes from it)
	batch     []schema.Out
	published bool // a batch was published before the last
}

// newSink prepares the chunk stream of v: its tokenizer's splitter, the
// labels, the custom metadata every chunk carries.
func (h *Handler) newSink(ctx context.Context, v objectVersion, extractor string, res *indexResult) (*sink, error) {
	// With an overlap, a chunk's own text leaves room for the overlap.
	splitter, err := h.splitterFor(v.task.Encoding, v.task.ChunkTokens-v.task.ChunkOverlap)
	if err != nil {
		return nil, schema.Errorf(schema.ClassPermanent, "%w", err)
	}
	res.extractor = schema.IDChunking(schema.IDExtractor(extractor, v.task.Encoding), v.task.ChunkTokens, v.task.ChunkOverlap)
	s := &sink{h: h, ctx: ctx, v: v, res: res, subject: schema.ChunkSubject(v.task.Org, v.task.Collection),
		lab: &labeler{headings: v.task.Structured(), csv: isTable(res.contentType)}, encoding: splitter.Encoding(), batch: make([]schema.Out, 0, publishBatch)}
	s.splitter = splitter
	s.stream = splitter.Stream(s.add)
	return s, nil
}

// read streams x's text through the splitter into CHUNKS and publishes
// the last batch. A part the extractor cannot read, or text the splitter
// cannot cut, is recorded as the result's skip.
func (s *sink) read(x *extract.Reader) error {
	for {
		part, err := x.Next(partBytes)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return s.res.skipOr(err)
		}
		if err := s.lab.write(s.stream, part, x.Sections()); err != nil {
			if errors.Is(err, chunk.ErrUnsplittable) {
				return s.res.skipOr(&extract.Skip{Reason: extract.ReasonUnsplittable, Detail: err.Error()})
			}
			return err
		}
	}
	if err := s.stream.Close(); err != nil {
		return err
	}
	total := 0
	if !s.published {
		total = s.res.chunks // every chunk is in this one batch: each can carry the total
	}
	return s.flush(total)
}

// add takes one chunk the splitter made final.
func (s *sink) add(p chunk.Chunk) error {
	task, res := s.v.task, s.res
	own := p.Text
	p = s.overlap(p)
	s.prev = own
	id := schema.ChunkID(task.Org, task.Collection, task.Bucket, task.Key, s.v.idVersion(), res.extractor, res.chunks)
	c := &schema.Chunk{ChunkID: id, Org: task.Org, Collection: task.Collection, JobID: task.JobID, Bucket: task.Bucket, Key: task.Key,
		VersionID: s.v.version, ETag: s.v.etag, Index: res.chunks, ByteOffset: int64(p.Offset), Text: p.Text, TokenCount: p.Tokens,
		Encoding: s.encoding, ExtractorVersion: res.extractor, ContentType: res.contentType, CustomMetadata: s.v.desc.custom, Source: s.v.desc.source, Metadata: s.v.desc.meta}
	s.lab.label(c)
	s.batch = append(s.batch, schema.Out{Subject: s.subject, MsgID: schema.GenMsgID(id, s.v.gen), Msg: c})
	res.chunks++
	res.tokens += int64(p.Tokens)
	if len(s.batch) == publishBatch {
		return s.flush(0) // the total is not known yet: the commit carries it
	}
	return nil
}

// overlap is p preceded by the end of the chunk before it — at most
// ChunkOverlap tokens of whole pre-tokens, fewer when the two together would
// exceed ChunkTokens — with its exact token count.
func (s *sink) overlap(p chunk.Chunk) chunk.Chunk {
	task := s.v.task
	if task.ChunkOverlap == 0 || s.prev == "" {
		return p
	}
	for max := task.ChunkOverlap; max > 0; {
		tail := s.splitter.Tail(s.prev, max)
		if tail == "" {
			break
		}
		text := tail + p.Text
		if n := s.splitter.Count(text); n <= task.ChunkTokens {
			return chunk.Chunk{Offset: p.Offset - len(tail), Text: text, Tokens: n}
		}
		max = s.splitter.Count(tail) - 1
	}
	return p
}

// flush publishes the batch; total, when not 0, is the object's chunk count.
func (s *sink) flush(total int) error {
	if len(s.batch) == 0 {
		return nil
	}
	seqs := make([]uint64, len(s.batch))
	for i := range s.batch {
		s.batch[i].Msg.(*schema.Chunk).Total = total
		s.batch[i].Seq = &seqs[i]
	}
	start := time.Now()
	err := s.h.publishChunks(s.ctx, s.batch)
	s.h.m.Stage.WithLabelValues("publish").Observe(time.Since(start).Seconds())
	s.batch, s.published = s.batch[:0], true
	s.res.appendSeqs(seqs)
	return err
}

// appendSeqs records where CHUNKS stored the next chunks (0: not reported).
func (res *indexResult) appendSeqs(seqs []uint64) {
	for _, seq := range seqs {
		if seq != 0 && len(res.seqs) <= schema.MaxSeqRuns {
			res.seqs = schema.AppendSeq(res.seqs, seq)
		}
	}
}

// completeSeqs is res.seqs when they record every chunk in at most
// schema.MaxSeqRuns runs, else nil.
func (res *indexResult) completeSeqs() []schema.SeqRun {
	if len(res.seqs) <= schema.MaxSeqRuns && schema.SeqCount(res.seqs) == res.chunks {
		return res.seqs
	}
	return nil
}

// commit makes the version's chunks visible. The replaced version's chunks
// that are not reused are tombstoned first, every part acknowledged: a
// replace that fails midway leaves the object briefly absent downstream
// (the redelivered task completes it), never both versions visible.
func (h *Handler) commit(ctx context.Context, v objectVersion, res *indexResult) error {
	task := v.task
	if deleting, err := h.cfg.Collections.Deleting(ctx, task.Org, task.Collection); err != nil {
		return schema.Errorf(schema.ClassTransient, "read the collection record: %w", err)
	} else if deleting {
		return errCollectionDeleted
	}
	subject := schema.ChunkSubject(task.Org, task.Collection)
	if ts := v.replaced(res); ts != nil {
		if err := h.publishChunks(ctx, ts.Msgs(schema.TombstoneID(ts.ChunkIDs[0]), v.gen)); err != nil {
			return err
		}
	}
	c := &schema.Commit{Org: task.Org, Collection: task.Collection, JobID: task.JobID, Bucket: task.Bucket, Key: task.Key, VersionID: v.version,
		ETag: v.etag, ExtractorVersion: res.extractor, ContentType: res.contentType, Chunks: res.chunks, Tokens: res.tokens, At: time.Now().UTC()}
	id := schema.CommitID(task.Org, task.Collection, task.Bucket, task.Key, v.idVersion(), res.extractor)
	if err := h.publishChunks(ctx, []schema.Out{{Subject: subject, MsgID: schema.GenMsgID(id, v.gen), Msg: c}}); err != nil {
		return err
	}
	h.m.Chunks.Add(float64(res.chunks))
	h.m.Tokens.Add(float64(res.tokens))
	return nil
}

// errCollectionDeleted: the collection was marked deleting while the task
// ran; its chunks are left uncommitted.
var errCollectionDeleted = errors.New("the collection is being deleted")

// replaced is the tombstone of the previous version's chunks that the new
// version (res) does not reuse, or nil when there are none.
func (v objectVersion) replaced(res *indexResult) *schema.Tombstone {
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

// bodyReaders are the 64 KiB read buffers of object bodies, reused: a new
// one per task would be a tenth of a small object's allocations.
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

// Splitter returns the splitter for a tokenizer (its name; "" is the
// handler's default) at the handler's chunk size.
func (h *Handler) Splitter(encoding string) (*chunk.Splitter, error) {
	return h.splitterFor(encoding, 0)
}

// splitterFor returns the splitter for a tokenizer and chunk size (0: the
// handler's), made on first use.
func (h *Handler) splitterFor(encoding string, maxTokens int) (*chunk.Splitter, error) {
	key := encoding
	if maxTokens > 0 {
		key += "/" + strconv.Itoa(maxTokens)
	}
	h.splitMu.Lock()
	defer h.splitMu.Unlock()
	if sp := h.splitters[key]; sp != nil {
		return sp, nil
	}
	enc, err := token.Get(encoding)
	if err != nil {
		return nil, err
	}
	sp, err := chunk.New(enc, cmp.Or(maxTokens, h.cfg.ChunkTokens))
	if err != nil {
		return nil, err
	}
	h.splitters[key] = sp
	return sp, nil
}

// customMetadata is what a task's chunks carry: the task's own (a route's
// or, for a notification, its collection's: collectionGate), else its job
// record's. A record that cannot be read now is retried, not indexed
// without its metadata.
func (h *Handler) customMetadata(ctx context.Context, task *schema.Task) (json.RawMessage, error) {
	if len(task.CustomMetadata) > 0 || task.JobID == "" {
		return task.CustomMetadata, nil
	}
	rec, err := h.cfg.Jobs.Get(ctx, task.JobID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		h.log.Warn("the job record is gone: chunks are published without its custom metadata", "job_id", task.JobID)
		return nil, nil
	}
	if err != nil {
		return nil, schema.Errorf(schema.ClassTransient, "read the job record for its custom metadata: %w", err)
	}
	return rec.CustomMetadata, nil
}

// publishChunks publishes msgs to CHUNKS; a refusal because the stream is
// full shuts the gate and publishes again once there is room.
func (h *Handler) publishChunks(ctx context.Context, msgs []schema.Out) error {
	for {
		err := h.cfg.Publish(ctx, msgs)
		if err == nil || !schema.IsBackpressure(err) {
			return err
		}
		h.m.ChunksWaits.Inc()
		h.cfg.Gate.set(true)
		if err := h.cfg.Gate.WaitOpen(ctx); err != nil {
			return err
		}
	}
}
