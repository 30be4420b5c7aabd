package schema

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// View is the reference implementation of the CHUNKS contract for
// downstream consumers: feed it every message of a CHUNKS subject in stream
// order. A chunk is visible once its version's commit record has arrived
// (before or after the chunk), and then only if its index is below the
// commit's chunk count; tombstones remove chunks.
type View struct {
	pending   map[viewVersion][]*Chunk
	committed map[viewVersion]int // chunk count of committed versions
	visible   map[string]bool
	kept      map[string]*Chunk // the visible chunks themselves (KeepChunks)
	// Chunks and Commits count the chunk and commit messages applied.
	Chunks, Commits int
}

type viewVersion struct{ bucket, key, version, extractor string }

func versionOf(bucket, key, versionID, etag, extractor string) viewVersion {
	v := versionID
	if v == "" {
		v = etag
	}
	return viewVersion{bucket, key, v, extractor}
}

// NewView returns an empty View.
func NewView() *View {
	return &View{pending: map[viewVersion][]*Chunk{}, committed: map[viewVersion]int{}, visible: map[string]bool{}}
}

// KeepChunks makes v keep the visible chunks themselves, for
// VisibleChunks (a consumer that exports them: memory grows with them).
func (v *View) KeepChunks() { v.kept = map[string]*Chunk{} }

// show makes ch visible.
func (v *View) show(ch *Chunk) {
	v.visible[ch.ChunkID] = true
	if v.kept != nil {
		v.kept[ch.ChunkID] = ch
	}
}

// Apply folds one CHUNKS message (chunk, commit or tombstone) into the view.
func (v *View) Apply(data []byte) error {
	var kind struct{ Commit, Tombstone bool }
	if err := json.Unmarshal(data, &kind); err != nil {
		return fmt.Errorf("view: %w", err)
	}
	switch {
	case kind.Commit:
		c, err := DecodeCommit(data)
		if err != nil {
			return err
		}
		v.Commits++
		k := versionOf(c.Bucket, c.Key, c.VersionID, c.ETag, c.ExtractorVersion)
		v.committed[k] = c.Chunks
		for _, ch := range v.pending[k] {
			if ch.Index < c.Chunks {
				v.show(ch)
			}
		}
		delete(v.pending, k)
	case kind.Tombstone:
		ts, err := DecodeTombstone(data)
		if err != nil {
			return err
		}
		for _, id := range ts.ChunkIDs {
			delete(v.visible, id)
			delete(v.kept, id)
		}
	default:
		c, err := DecodeChunk(data)
		if err != nil {
			return err
		}
		v.Chunks++
		k := versionOf(c.Bucket, c.Key, c.VersionID, c.ETag, c.ExtractorVersion)
		if n, ok := v.committed[k]; ok {
			if c.Index < n {
				v.show(c)
			}
			return nil
		}
		v.pending[k] = append(v.pending[k], c)
	}
	return nil
}

// Visible returns the IDs of the visible chunks.
func (v *View) Visible() map[string]bool { return v.visible }

// VisibleChunks returns the visible chunks (KeepChunks) in (bucket, key,
// index) order.
func (v *View) VisibleChunks() []*Chunk {
	out := make([]*Chunk, 0, len(v.kept))
	for _, c := range v.kept {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *Chunk) int {
		return cmp.Or(strings.Compare(a.Bucket, b.Bucket), strings.Compare(a.Key, b.Key), cmp.Compare(a.Index, b.Index))
	})
	return out
}
