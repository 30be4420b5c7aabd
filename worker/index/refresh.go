package index

import (
	"context"
	"errors"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/schema/collections"
)

// A metadata-only change — the same bytes (S3 keeps the ETag) under new
// user metadata, a new, changed or removed sidecar, new tags or new custom
// metadata — re-publishes what the chunks carry without fetching or
// extracting the object again: the chunks are read back from CHUNKS by the
// sequences the object state recorded, published again under the same IDs
// with their new source and metadata, and committed again. By the CHUNKS
// contract a committed version's chunk that arrives again replaces the one
// shown (schema.View). Chunks CHUNKS no longer holds as recorded are
// indexed again from S3 instead.

// republishPage is how many chunks are read back at once.
const republishPage = 1024

// refresh settles an indexed object whose listing (or sidecar's change)
// says its metadata may have changed: a HEAD tells whether S3 still holds
// the version the state records; if so its metadata is checked (applyMeta);
// if it is gone its chunks are tombstoned as a confirmed delete's; else it
// is indexed as it is now.
func (h *Handler) refresh(ctx context.Context, o *object) (*schema.ObjectEvent, error) {
	now, err := h.headObject(ctx, o.tenant, o.task)
	if err != nil {
		return nil, err
	}
	if now.gone {
		o.now = now
		return h.deleteObject(ctx, o)
	}
	if !sameETag(now.hdr.etag, o.state.ETag) {
		return h.fetchAndIndex(ctx, o, decision{now: proceed})
	}
	desc, err := h.describe(ctx, o, now.hdr)
	if err != nil {
		return nil, err
	}
	return h.applyMeta(ctx, o, desc)
}

// applyMeta settles an object S3 holds with the ETag its state records:
// unchanged when desc fingerprints as its chunks were published (the state
// learns the time and sidecar the next listing will show), else its chunks
// are published again with desc.
func (h *Handler) applyMeta(ctx context.Context, o *object, desc *described) (*schema.ObjectEvent, error) {
	st := o.state
	ev := report(unchanged, o.task, st)
	if st.Status != schema.ObjectIndexed {
		return h.seen(ctx, o, ev)
	}
	if desc.hash != st.MetaHash {
		return h.republish(ctx, o, desc)
	}
	next := *st
	next.LastModified, next.SidecarETag, next.CustomHash = desc.source.LastModified, desc.sidecarETag, desc.customHash
	markSeen(&next, o.task, st)
	if sameTime(next.LastModified, st.LastModified) && next.SidecarETag == st.SidecarETag && next.CustomHash == st.CustomHash && next.SeenBy == st.SeenBy {
		return ev, nil
	}
	next.UpdatedAt = time.Now().UTC()
	return ev, h.saveState(ctx, o.key, &next, o.rev)
}

func sameTime(a, b *time.Time) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Equal(*b)
}

// republish publishes the indexed version's chunks again with desc, and
// its commit, then records the new fingerprints: outcome indexed, reason
// metadata_updated.
func (h *Handler) republish(ctx context.Context, o *object, desc *described) (*schema.ObjectEvent, error) {
	task, st := o.task, o.state
	v := objectVersion{task: task, etag: st.ETag, version: st.VersionID, size: st.Size, desc: desc, state: st, gen: o.rev}
	res := indexResult{chunks: st.Chunks, tokens: st.Tokens, extractor: st.ExtractorVersion, contentType: st.ContentType}
	subject := schema.ChunkSubject(task.Org, task.Collection)
	for off := 0; off < st.Chunks; off += republishPage {
		chunks, why, err := collections.Chunks(ctx, h.cfg.JS, task.Org, task.Collection, st, off, republishPage)
		if err != nil {
			return nil, schema.Errorf(schema.ClassTransient, "read the chunks back from CHUNKS: %w", err)
		}
		if why != "" {
			h.log.Info("chunks not held as recorded: the object is indexed again", "org", task.Org, "bucket", task.Bucket, "key", task.Key, "reason", why)
			return h.fetchAndIndex(ctx, o, decision{now: proceed})
		}
		for batch := range chunkBatches(chunks) {
			msgs := make([]schema.Out, len(batch))
			seqs := make([]uint64, len(batch))
			for i, c := range batch {
				c.JobID, c.Source, c.CustomMetadata, c.Metadata = task.JobID, desc.source, desc.custom, desc.meta
				msgs[i] = schema.Out{Subject: subject, MsgID: schema.GenMsgID(c.ChunkID, o.rev), Msg: c, Seq: &seqs[i]}
			}
			if err := h.publishChunks(ctx, msgs); err != nil {
				return nil, err
			}
			res.appendSeqs(seqs)
		}
	}
	ev := event(task, schema.OutcomeSkipped)
	ev.ETag = st.ETag
	if err := h.commit(ctx, v, &res); errors.Is(err, errCollectionDeleted) {
		ev.Reason = schema.ReasonCollectionDeleted
		return ev, nil
	} else if err != nil {
		return nil, err
	}
	next := *st
	next.JobID, next.LastModified, next.SidecarETag, next.MetaHash, next.CustomHash = task.JobID, desc.source.LastModified,
		desc.sidecarETag, desc.hash, desc.customHash
	markSeen(&next, task, st)
	next.ChunkSeqs, next.UpdatedAt = res.completeSeqs(), time.Now().UTC()
	if err := h.saveState(ctx, o.key, &next, o.rev); err != nil {
		return nil, err
	}
	h.m.MetadataUpdates.Inc()
	ev.Outcome, ev.Reason, ev.Chunks, ev.Tokens = schema.OutcomeIndexed, schema.ReasonMetadataUpdated, st.Chunks, st.Tokens
	return ev, nil
}

// chunkBatches yields chunks in publish batches.
func chunkBatches(chunks []*schema.Chunk) func(func([]*schema.Chunk) bool) {
	return func(yield func([]*schema.Chunk) bool) {
		for len(chunks) > 0 {
			n := min(len(chunks), publishBatch)
			if !yield(chunks[:n]) {
				return
			}
			chunks = chunks[n:]
		}
	}
}
