package schema

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// Follow keeps a copy of a KV bucket current: it hands every entry of w to
// apply, in the watch's own goroutine, until ctx ends. It returns once the
// current values have been delivered — loaded (when set) runs then, before
// any later entry — or with ctx's error. If the watch stops before ctx ends,
// ended (when set) is told: the copy is frozen from then on.
func Follow(ctx context.Context, w jetstream.KeyWatcher, apply func(jetstream.KeyValueEntry), loaded, ended func()) error {
	ready := make(chan struct{})
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					if ended != nil && ctx.Err() == nil {
						ended()
					}
					return
				}
				if e == nil { // the current values are delivered
					if loaded != nil {
						loaded()
					}
					close(ready)
					continue
				}
				apply(e)
			}
		}
	}()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
