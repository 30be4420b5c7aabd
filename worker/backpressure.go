package worker

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/stevedore-dev/stevedore/schema"
)

// CHUNKS refuses new messages at its byte limit (DiscardNew) instead of
// dropping the oldest ones, which downstream may not have read: nothing is
// lost silently. While it is full, workers stop claiming tasks, and a task
// whose publish is refused waits for room and publishes again (same IDs:
// nothing is doubled). The StevedoreChunksNearLimit alert fires well before.

// headroom is how close to CHUNKS's limit counts as full, so that no task
// starts when its chunks might not fit: 8 MiB, or a sixteenth of a smaller
// limit.
func headroom(maxBytes int64) int64 { return min(8<<20, maxBytes/16) }

// chunksGate says whether CHUNKS has room, from its stream info every
// chunksCheckEvery and from refused publishes at once.
type chunksGate struct {
	full atomic.Bool
}

const chunksCheckEvery = 2 * time.Second

// watch refreshes the gate until ctx ends.
func (g *chunksGate) watch(ctx context.Context, w *Worker) {
	t := time.NewTicker(chunksCheckEvery)
	defer t.Stop()
	for {
		g.check(ctx, w)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (g *chunksGate) check(ctx context.Context, w *Worker) {
	s, err := w.cfg.JS.Stream(ctx, schema.StreamChunks)
	if err != nil {
		return
	}
	info, err := s.Info(ctx)
	if err != nil {
		return
	}
	full := info.Config.MaxBytes > 0 && int64(info.State.Bytes)+headroom(info.Config.MaxBytes) >= info.Config.MaxBytes
	if full && !g.full.Load() {
		w.log.Warn("CHUNKS is full: claiming paused until downstream makes room", "bytes", info.State.Bytes, "max_bytes", info.Config.MaxBytes)
	}
	if !full && g.full.Load() {
		w.log.Info("CHUNKS has room again: claiming resumes")
	}
	g.set(w, full)
}

// set records whether CHUNKS is full, in the gate and its gauge.
func (g *chunksGate) set(w *Worker, full bool) {
	g.full.Store(full)
	v := 0.0
	if full {
		v = 1
	}
	w.m.chunksFull.Set(v)
}

// waitForRoom blocks while CHUNKS is full, until ctx ends.
func (g *chunksGate) waitForRoom(ctx context.Context) error {
	for g.full.Load() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// publishChunks publishes msgs to CHUNKS; a refusal because the stream is
// full marks the gate full and publishes again once there is room.
func (w *Worker) publishChunks(ctx context.Context, msgs []outMsg) error {
	for {
		err := w.publishAll(ctx, msgs)
		if err == nil || !schema.IsBackpressure(err) {
			return err
		}
		w.m.chunksWaits.Inc()
		w.gate.set(w, true)
		if err := w.gate.waitForRoom(ctx); err != nil {
			return err
		}
	}
}
