package index

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/stevedore-dev/stevedore/schema"
	"github.com/stevedore-dev/stevedore/worker/meter"
)

// headroom is how close to CHUNKS's limit counts as full, so that no task
// starts when its chunks might not fit: 8 MiB, or a sixteenth of a smaller
// limit.
func headroom(maxBytes int64) int64 { return min(8<<20, maxBytes/16) }

// Gate says whether CHUNKS has room, from its stream info every
// gateCheckEvery (Watch) and from refused publishes at once. It is a
// runner.Gate.
type Gate struct {
	js   jetstream.JetStream
	m    *meter.Metrics
	log  *slog.Logger
	full atomic.Bool
}

// NewGate returns an open gate on js's CHUNKS.
func NewGate(js jetstream.JetStream, m *meter.Metrics, log *slog.Logger) *Gate {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gate{js: js, m: m, log: log}
}

const gateCheckEvery = 2 * time.Second

// Watch refreshes the gate until ctx ends.
func (g *Gate) Watch(ctx context.Context) {
	t := time.NewTicker(gateCheckEvery)
	defer t.Stop()
	for {
		g.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (g *Gate) check(ctx context.Context) {
	s, err := g.js.Stream(ctx, schema.StreamChunks)
	if err != nil {
		return
	}
	info, err := s.Info(ctx)
	if err != nil {
		return
	}
	full := info.Config.MaxBytes > 0 && int64(info.State.Bytes)+headroom(info.Config.MaxBytes) >= info.Config.MaxBytes
	if full && !g.full.Load() {
		g.log.Warn("CHUNKS is full: claiming paused until downstream makes room", "bytes", info.State.Bytes, "max_bytes", info.Config.MaxBytes)
	}
	if !full && g.full.Load() {
		g.log.Info("CHUNKS has room again: claiming resumes")
	}
	g.set(full)
}

// set records whether CHUNKS is full, in the gate and its gauge.
func (g *Gate) set(full bool) {
	g.full.Store(full)
	v := 0.0
	if full {
		v = 1
	}
	g.m.ChunksFull.Set(v)
}

// Shut reports whether CHUNKS is full.
func (g *Gate) Shut() bool { return g.full.Load() }

// WaitOpen blocks while CHUNKS is full, until ctx ends.
func (g *Gate) WaitOpen(ctx context.Context) error {
	for g.full.Load() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}
